"""DL phase start on patterns larger and more oversampled than the model's box: binning or not.

The phase models see a 64^3 box (2-D: 128^2) and were trained on crystals oversampled 2-8
times per axis. A large pattern of a small crystal is oversampled more, and cutting the box
around the peak does not change that; binning does (:mod:`pynx_dlgap.phase.binning`).
This benchmark phases, in one run, crystals of the independent recipe
(:mod:`pynx_dlgap.evaluate.analytic`: not the simulator the models were trained on; seeds
from 9000, disjoint from ``phase_init.py``'s 7000+) on ``--size``-px patterns (3-D 128^3, 2-D
256^2 by default) at three oversampling ranges, and prints per strain level:

* ``dl bin 1``: the DL start predicted on the 64-box around the peak, unbinned (before 0.7.12);
* ``dl bin auto``: the default since 0.7.12 (binned by ``floor(median estimate / 6)`` where the
  pattern is at least 1.8 times the box; :func:`pynx_dlgap.phase.binning.auto_bin`);
* ``random``: PyNX's random start (``InitObjRandom`` on the autocorrelation support, seed 0)
  with ``DetwinRAAR``, as PyNX runs it;

each refined by the same chain (``--raar`` RAAR + ``--er`` ER, PyNX CPU operators, support
update every 50; no detwin after a DL start, as ``phase_init.py``). Success: phase RMS inside
the true support < 0.3 rad and modulus error < 0.3 after sub-pixel alignment (offset, ramp
and twin removed). ``bins`` is the factor ``'auto'`` chose (most common), ``est`` the median
oversampling estimate against ``true`` (array size / support bounding box, median).

    python benchmarks/phase_bin.py --n 5 --workers 2                # the set the 'auto' rule was chosen on
    python benchmarks/phase_bin.py --n 5 --offset 50 --workers 2    # fresh crystals
    python benchmarks/phase_bin.py --dims 2 --n 10 --workers 2      # 2-D, 256^2 patterns
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter

import numpy as np

SEED_BASE = 9_000
_MODEL = {}


def one_case(job):
    seed, lname, level, size, os_range, raar, er, dims = job
    import torch
    torch.set_num_threads(1)
    from pynx_dlgap.evaluate.align import object_errors
    from pynx_dlgap.evaluate.analytic import analytic_crystal
    from pynx_dlgap.evaluate.phasing import phase_pattern
    from pynx_dlgap.phase.predict import load_phase_model, predict_phase, start_object, support_from_object
    if dims not in _MODEL:
        _MODEL[dims] = load_phase_model(None, dims)[0]
    s = analytic_crystal(seed, dims, size, level, oversampling=os_range)
    I, m = s["intensity"], s["mask"] | s["dead"]
    sup_true = s["support"]
    true_os = [size / max(1, int(sup_true.any(axis=tuple(j for j in range(dims) if j != ax)).sum()))
               for ax in range(dims)]
    rows = []

    def score(method, r, t, extra=None):
        e = object_errors(r.obj, s["object"], sup_true)
        ok = r.failed is None and e["phase_rms"] < 0.3 and e["modulus_error"] < 0.3
        rows.append(dict(level=lname, os=f"{os_range[0]:g}-{os_range[1]:g}", method=method, seed=seed,
                         success=float(ok), phase_rms=e["phase_rms"], seconds=t, true_os=float(np.median(true_os)),
                         **(extra or {})))

    chain = dict(n_raar=raar, n_er=er)
    for b in (1, "auto"):
        t0 = time.perf_counter()
        ph, info = predict_phase(I, m, model=_MODEL[dims], return_info=True, bin=b)
        o0 = start_object(I, ph, m)
        r = phase_pattern(I, m, obj0=o0, support0=support_from_object(o0), chain=dict(chain, detwin=False))
        est = info["oversampling_estimate"]
        score(f"dl bin {b}", r, time.perf_counter() - t0,
              dict(bins="x".join(map(str, info["bin"])), est=float(np.median(est)) if est else np.nan))
    t0 = time.perf_counter()
    r = phase_pattern(I, m, seed=0, chain=dict(chain, detwin=True))
    score("random", r, time.perf_counter() - t0)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8, help="crystals per strain level and oversampling range")
    ap.add_argument("--dims", type=int, default=3, choices=(2, 3))
    ap.add_argument("--size", type=int, default=None, help="pattern side (px; default 128 in 3-D, 256 in 2-D)")
    ap.add_argument("--oversampling", type=float, nargs="+", default=[9, 14, 5, 8, 2.5, 4.5], metavar="LO HI",
                    help="pairs of oversampling ranges (array size / largest extent), default 9-14, 5-8 and 2.5-4.5")
    ap.add_argument("--levels", nargs="+", default=["pi", "2pi"], choices=["pi", "2pi", "4pi"])
    ap.add_argument("--raar", type=int, default=300)
    ap.add_argument("--er", type=int, default=100)
    ap.add_argument("--offset", type=int, default=0,
                    help="added to every seed: another draw of crystals (the 'auto' rule was chosen on offset 0)")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2)))
    a = ap.parse_args(argv)
    if len(a.oversampling) % 2:
        ap.error("--oversampling takes pairs LO HI")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from phase_init import LEVELS, run_cases
    lev = dict(LEVELS)
    ranges = [tuple(a.oversampling[i:i + 2]) for i in range(0, len(a.oversampling), 2)]
    a.size = a.size or (128 if a.dims == 3 else 256)
    jobs = [(SEED_BASE + a.offset + 1000 * li + 100 * ri + i, ln, lev[ln], a.size, rg, a.raar, a.er, a.dims)
            for ri, rg in enumerate(ranges) for li, ln in enumerate(a.levels) for i in range(a.n)]
    t0 = time.time()
    rows = run_cases(one_case, jobs, a.workers)
    print(f"# DL phase start with and without binning: {a.n} analytic-recipe crystals (seeds {SEED_BASE + a.offset}+) per level and "
          f"oversampling range, {a.size}^{a.dims} patterns; chain {a.raar} RAAR + {a.er} ER (PyNX CPU operators)")
    print(f"# python benchmarks/phase_bin.py --dims {a.dims} --n {a.n} --size {a.size} --oversampling "
          f"{' '.join(f'{v:g}' for v in a.oversampling)} --levels {' '.join(a.levels)} --offset {a.offset}")
    print()
    hdr = f"{'level':6s} {'oversampl.':>10s} {'method':12s} {'success':>7s} {'phase_rms':>9s} {'seconds':>7s} " \
          f"{'bins':>6s} {'est':>5s} {'true':>5s} {'n':>3s}"
    print(hdr)
    print("-" * len(hdr))
    for rg in ranges:
        tag = f"{rg[0]:g}-{rg[1]:g}"
        for ln in a.levels:
            for meth in ("dl bin 1", "dl bin auto", "random"):
                sel = [r for r in rows if r["os"] == tag and r["level"] == ln and r["method"] == meth]
                if not sel:
                    continue
                bins = Counter(r.get("bins", "") for r in sel).most_common(1)[0][0] if "bins" in sel[0] else ""
                est = [r["est"] for r in sel if "est" in r and np.isfinite(r["est"])]
                print(f"{ln:6s} {tag:>10s} {meth:12s} {np.mean([r['success'] for r in sel]):7.2f} "
                      f"{np.median([r['phase_rms'] for r in sel]):9.3f} {np.median([r['seconds'] for r in sel]):7.1f} "
                      f"{bins:>6s} {(f'{np.median(est):.1f}' if est else ''):>5s} "
                      f"{np.median([r['true_os'] for r in sel]):5.1f} {len(sel):3d}")
        print()
    print("# success = share of crystals; phase_rms, seconds = medians; bins = the factors 'auto' chose (most common); "
          "est = median oversampling estimate (phase.binning), true = median of size / support extent")
    print(f"# total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
