"""The gap-fill benchmark harness behind ``benchmarks/gap_fill.py``.

Held-out test set
    Simulated 3-D patterns drawn from seeds ``TEST_SEED_BASE + i`` (training
    data use seeds below ``TEST_SEED_BASE``, so the two never overlap), over
    the simulator's whole range of count regimes (``regime='mixed'``: textbook
    low-count crystals to measured-like patterns with a background floor and
    fringes to the edges). The simulator's own random gap layout is ignored:
    each case below draws its own.

Gap cases
    widths 3, 6, 9, 12, 38 px; a single plane (normal to y or x, alternating)
    or a cross. Gap positions are drawn (seeded) within the central half of
    the array, so gaps cross the fringes near the Bragg peak, sometimes
    through it. The truth inside the gap is the simulated *measured* (Poisson)
    intensity, as for experimental crops, or with ``truth='expected'`` the
    simulator's noise-free expected intensity (:func:`detector_rows`).

Detector-space metrics are those of :func:`pynx_dlgap.evaluate.metrics.gap_metrics`,
computed inside the gap only. Real-space metrics phase every version of a
pattern with the same PyNX chain and seed (:mod:`pynx_dlgap.evaluate.phasing`)
and align the result to the true object (:func:`pynx_dlgap.evaluate.align.object_errors`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .._checks import PatternError
from ..simulate import gaps as G

__all__ = ["TEST_SEED_BASE", "GapCase", "make_test_set", "gap_cases", "draw_layout",
           "detector_rows", "realspace_rows", "summarize", "format_table"]

#: first seed of the held-out test set; training data use seeds below it
TEST_SEED_BASE = 2_000_000_000


@dataclass(frozen=True)
class GapCase:
    width: int
    geometry: str  # 'plane' or 'cross'

    def __str__(self):
        return f"{self.geometry}-{self.width}"


def gap_cases(widths=(3, 6, 9, 12, 38), geometries=("plane", "cross")):
    return [GapCase(int(w), g) for w in widths for g in geometries]


def make_test_set(n=20, shape=(64, 64, 64), regime="mixed", seed_base=TEST_SEED_BASE, **knobs):
    """``n`` held-out simulated samples (dicts from :func:`pynx_dlgap.simulate.simulate_3d`)."""
    from ..simulate import simulate_3d
    return [simulate_3d(seed_base + i, shape, regime, **knobs) for i in range(n)]


def draw_layout(case: GapCase, shape, rng: np.random.Generator) -> G.GapLayout:
    """A gap layout for ``case`` on ``shape``, positioned within the central half."""
    def pos(axis):
        n = shape[axis]
        lo, hi = n // 4 - case.width // 2, 3 * n // 4 - (case.width + 1) // 2
        lo, hi = max(lo, 0), max(min(hi, n - case.width), max(lo, 0))
        return int(rng.integers(lo, hi + 1))
    if case.geometry == "cross":
        return G.cross(case.width, pos(G.AXIS_Y), pos(G.AXIS_X))
    axis = G.AXIS_Y if rng.random() < 0.5 else G.AXIS_X
    return G.plane(axis, case.width, pos(axis))


def _case_rng(sample_index, case, salt=0):
    return np.random.default_rng([sample_index, case.width, case.geometry == "cross", salt])


def detector_rows(samples, cases, methods: dict, progress=True, ssim=True, truth: str = "measured",
                  oracle: bool = False):
    """One row per (sample, case, method): detector-space metrics in the gap and time.

    ``methods`` maps a name to ``fill(iobs, mask) -> filled``; every fill sees
    the measured (Poisson) pattern. ``truth`` is what the gap is scored
    against: ``'measured'``, the Poisson counts the detector would have
    recorded there (as for experimental crops), or ``'expected'``, the
    simulator's noise-free expected counts (what a fill can at best recover;
    outside the gap the truth stays the measured pattern).
    ``oracle=True`` adds an ``'expected'`` row whose fill *is* the noise-free
    expected intensity: against the measured truth it is the noise ceiling,
    what a perfect fill would score given the counting noise in the truth.
    """
    from tqdm import tqdm
    from .metrics import gap_metrics
    if truth not in ("measured", "expected"):
        raise ValueError(f"truth must be 'measured' or 'expected', not {truth!r}")
    if (truth == "expected" or oracle) and any("expected" not in s for s in samples):
        raise ValueError("truth='expected' and oracle=True need samples with the simulator's 'expected' array")
    methods = dict(methods)
    if oracle:
        methods["expected"] = None  # filled below from the sample's noise-free intensity
    rows = []
    total = len(samples) * len(cases) * len(methods)
    bar = tqdm(total=total, desc="gap fills", disable=not progress, leave=False)
    for i, s in enumerate(samples):
        I = s["intensity"]
        for case in cases:
            lay = draw_layout(case, I.shape, _case_rng(i, case))
            mask = lay.mask(I.shape)
            # the noise-free counts in the gap, the measured pattern outside it (what every fill keeps,
            # so that SSIM windows across the gap's edge compare like with like): the oracle's fill
            # and the 'expected' truth
            noise_free = np.where(mask, s["expected"], I) if (oracle or truth == "expected") else None
            T = I if truth == "measured" else noise_free
            for name, fill in methods.items():
                t0 = time.perf_counter()
                try:
                    filled = noise_free if fill is None else fill(I, mask)
                except PatternError:  # e.g. a gap wider than the model supports: refused, reported as such
                    filled = None
                dt = time.perf_counter() - t0
                m = gap_metrics(T, filled, mask, ssim=ssim) if filled is not None else \
                    dict(pcc_log=np.nan, pcc=np.nan, ssim_log=np.nan, r_factor=np.nan, mae_log=np.nan, mae=np.nan)
                rows.append(dict(sample=i, case=str(case), width=case.width, geometry=case.geometry,
                                 method=name, seconds=dt, refused=float(filled is None), **m))
                bar.update()
    bar.close()
    return rows


#: how a fill enters the real-space chain (:func:`realspace_rows`)
FILL_MODES = ("observed", "estimate", "release")


def realspace_rows(samples, cases, methods: dict, seeds=(0,), progress=True, chain=None, backend: str = "cpu"):
    """Phase each version of each pattern with the harness's PyNX chain and score it.

    Versions: 'gap-free' (the full pattern), 'masked' (gap pixels free), and one
    per fill in ``methods``: ``name -> fill`` writes the filled values as observed
    intensities; ``name -> (fill, 'estimate')`` stores them as PyNX *estimated*
    intensities (loose amplitude constraint, 0.5x-1.2x, as PyNX's ``mask_interp``
    does; only PyNX's OpenCL and CUDA operators honour it, so pass ``backend='opencl'`` or
    ``'cuda'``: on ``'cpu'`` estimated pixels are masked); ``name -> (fill, 'release')``
    writes them as observed intensities until the end of the chain's zero-mask phase, where
    PyNX would hold masked pixels at zero, and masks them from then on
    (:func:`~pynx_dlgap.evaluate.phasing.phase_pattern`'s ``release``). Returns one row per (sample, case, version, seed)
    with the aligned modulus/phase errors inside the true support, the final LLK,
    and the mean PRTF.
    """
    from tqdm import tqdm
    from .align import object_errors, prtf
    from .phasing import phase_pattern
    rows = []
    versions = ["gap-free", "masked", *methods]
    for v, f in methods.items():
        if isinstance(f, tuple) and f[1] not in FILL_MODES:
            raise ValueError(f"realspace method {v!r}: unknown mode {f[1]!r}; choose one of {FILL_MODES}")
    bar = tqdm(total=len(samples) * len(cases) * len(versions) * len(seeds), desc="PyNX phasing",
               disable=not progress, leave=False)
    for i, s in enumerate(samples):
        I, truth = s["intensity"], s["object"]
        for case in cases:
            mask = draw_layout(case, I.shape, _case_rng(i, case)).mask(I.shape)
            for v in versions:
                if v == "gap-free":
                    data, m = I, None
                elif v == "masked":
                    data, m = I, mask
                else:
                    fill, mode = methods[v] if isinstance(methods[v], tuple) else (methods[v], "observed")
                    data, m = fill(I, mask), None
                filled = v not in ("gap-free", "masked")
                est = mask if filled and mode == "estimate" else None
                rel = mask if filled and mode == "release" else None
                for seed in seeds:
                    r = phase_pattern(data, m, seed=seed, chain=chain, estimate=est, backend=backend, release=rel)
                    row = dict(sample=i, case=str(case), width=case.width, geometry=case.geometry,
                               method=v, seed=seed, seconds=r.seconds, llk=r.llk, failed=float(bool(r.failed)))
                    if r.failed:  # PyNX's support diverged: a failed run, scored as such
                        row.update(prtf=np.nan, phase_rms=np.nan, modulus_error=np.nan, phase_max=np.nan)
                    else:
                        e = object_errors(r.obj, truth)
                        pr = prtf(r.obj, I, mask=mask)
                        row.update(prtf=float(np.nanmean(pr.prtf)), **_scalar(e))
                    rows.append(row)
                    bar.update()
    bar.close()
    return rows


def _scalar(d):
    return {k: float(v) for k, v in d.items() if np.isscalar(v) and not isinstance(v, (str, bool))}


def summarize(rows, keys=("case", "method"), values=None, agg=np.nanmean):
    """Aggregate rows over the other fields: {key tuple: {value: agg}} in first-seen order."""
    groups = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    if values is None:
        values = [k for k, v in rows[0].items() if k not in keys and isinstance(v, float)]
    out = {}
    for g, rs in groups.items():
        out[g] = {"n": len(rs)}
        for v in values:
            vals = np.array([r.get(v, np.nan) for r in rs], dtype=float)
            out[g][v] = float(agg(vals)) if np.isfinite(vals).any() else float("nan")
    return out


def format_table(summary, keys, columns, fmt=None, best=None, best_exclude=()):
    """A plain-text table; ``best`` = {column: 'max'|'min'} marks the best method per case with '*'.

    Rows whose last key is in ``best_exclude`` (e.g. an oracle) are never marked and do not compete.
    """
    fmt = fmt or {}
    head = [*keys, *columns]
    lines = []
    bestmark = {}
    if best:
        bycase = {}
        for g, v in summary.items():
            if g[-1] not in best_exclude:
                bycase.setdefault(g[:-1], []).append((g, v))
        for c, items in bycase.items():
            for col, how in best.items():
                vals = [v[col] for _, v in items]
                b = (max if how == "max" else min)(vals)
                for g, v in items:
                    if v[col] == b:
                        bestmark[(g, col)] = True
    for g, v in summary.items():
        cells = list(map(str, g))
        for c in columns:
            s = (fmt.get(c, "{:.4f}")).format(v[c])
            cells.append(s + ("*" if bestmark.get((g, c)) else ""))
        lines.append(cells)
    w = [max(len(str(h)), *(len(l[j]) for l in lines)) for j, h in enumerate(head)]
    out = ["  ".join(str(h).ljust(w[j]) for j, h in enumerate(head)),
           "  ".join("-" * w[j] for j in range(len(head)))]
    prev = None
    for l in lines:
        if prev is not None and l[0] != prev:
            out.append("")
        prev = l[0]
        out.append("  ".join(c.ljust(w[j]) for j, c in enumerate(l)))
    return "\n".join(out)
