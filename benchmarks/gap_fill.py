#!/usr/bin/env python
"""Gap-fill benchmark: every method side by side, in one run, on a seeded held-out set.

    python benchmarks/gap_fill.py                 # the README's tables (~25 min on 2 cores)
    python benchmarks/gap_fill.py --n 4 --realspace-n 1 --pynx-interp-n 1   # a quick look
    python benchmarks/gap_fill.py --regime measured ...   # table 1 on the measured-like end only

Table 1 (detector space): for gap widths 3, 6, 9, 12, 38 px, as a plane and as
a cross, each fill's Pearson correlation on log(I+1) and on I, SSIM on
log(I+1), R-factor, mean absolute error on log(I+1) and the relative amplitude
error ``sum (sqrt f - sqrt t)^2 / sum t`` (what phasing sees), inside the gap, and its
time, averaged over the held-out simulated 3-D patterns
(``pynx_dlgap.evaluate.gapbench``: seeds from 2e9, the simulator's whole range
of count regimes). PyNX's ``InterpIobsMask`` runs on PyNX's OpenCL backend on
the PoCL CPU platform, which is slow here, so it is evaluated on the first
``--pynx-interp-n`` patterns only (its ``n`` column says so).
``--oracle`` adds an ``expected`` row, the simulator's noise-free intensity used
as the fill: against the Poisson truth, the noise ceiling no fill can pass.
``--truth expected`` scores every fill against the noise-free counts in the gap
instead of the Poisson counts.

Table 2 (real space): 6- and 12-px crosses; each version of a pattern
(gap-free, masked, each fill) is phased by real PyNX with the same chain and
random start (``pynx_dlgap.evaluate.phasing``), aligned to the true object
(sub-pixel shift, phase offset and ramp, twin), and scored inside the true
support; each fill is written as observed intensities. (PyNX can also hold a
fill as *estimated* intensities with a loose 0.5x-1.2x amplitude constraint, as
its own ``mask_interp`` does and as ``pynx-cdi-id01-dl`` and ``pynx-dlgap phase`` store the DL fill:
``--realspace-methods NAME:estimate``, ``--realspace-dl dl:estimate``; but only its
OpenCL/CUDA operators implement that constraint, so run table 2 with
``--realspace-backend opencl`` (PoCL here) or ``cuda``: PyNX 2025.1's CPU
``ApplyAmplitude`` treats estimated pixels exactly as masked ones.
``NAME:release`` writes the fill as observed intensities until the end of the
chain's zero-mask phase, where PyNX holds masked pixels at zero, and masks them
from then on; every backend honours it.) (failed = share of runs where PyNX's support diverged, as PyNX's
runner discards them; errors are averaged over the other runs). These patterns have no background floor (PyNX does not model one; a
floor spoils phasing whatever the fill) and a mild strain (phase range 1
rad) so that random starts converge and the gap is what differs.

With ``--weights`` (a file, or ``shipped``) both tables get the DL rows: ``dl``
(the model's fill, within the trust region of its card, ``inpaint``'s default), ``dl-raw``
(the same without the trust region, when the card has one) and ``dl+check`` (what the package does by default: the
self-check of :mod:`pynx_dlgap.inpaint.selfcheck` picks the model or log-linear
interpolation per pattern). ``--tta K ...`` adds ``dl-ttaK`` rows: the model
averaged over K flip/transposition views of each patch (``inpaint(tta=K)``,
:mod:`pynx_dlgap.inpaint.tta`), in both tables; ``--tta-bright K ...`` adds ``dl-brightK``
rows: K views for the bright patches only (``inpaint(tta_bright=K)``).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time

import numpy as np

from pynx_dlgap.evaluate import gapbench as gb
from pynx_dlgap.inpaint.baselines import BASELINES


def _fill_spec(spec, fills):
    """``NAME`` -> the fill, ``NAME:MODE`` -> ``(fill, MODE)`` (:func:`gapbench.realspace_rows`)."""
    name, _, mode = spec.partition(":")
    return (fills[name], mode) if mode else fills[name]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20, help="held-out patterns for table 1 (default 20)")
    p.add_argument("--size", type=int, default=64, help="pattern size (cube), default 64")
    p.add_argument("--widths", type=int, nargs="+", default=[3, 6, 9, 12, 38])
    p.add_argument("--methods", nargs="+", default=["none", "loglinear", "logcubic", "biharmonic", "pynx_interp"])
    p.add_argument("--pynx-interp-n", type=int, default=3,
                   help="patterns on which PyNX InterpIobsMask (OpenCL on PoCL, slow) is evaluated")
    p.add_argument("--realspace-n", type=int, default=6, help="patterns for table 2 (0 = skip)")
    p.add_argument("--realspace-widths", type=int, nargs="+", default=[6, 12])
    p.add_argument("--realspace-methods", nargs="+",
                   default=["loglinear", "logcubic", "biharmonic", "pynx_interp"],
                   help="fills phased in table 2; NAME:estimate stores the fill as PyNX estimated intensities "
                        "(only PyNX's OpenCL/CUDA operators honour those: on the CPU backend they are masked)")
    p.add_argument("--realspace-dl", nargs="*", default=None, metavar="NAME[:MODE]",
                   help="with --weights: the DL rows phased in table 2 (default: all of table 1's DL rows, as "
                        "observed data); NAME:estimate stores that fill as PyNX estimated intensities, "
                        "NAME:release as observed data until the zero-mask phase ends, then masked")
    p.add_argument("--realspace-backend", choices=["cpu", "opencl", "cuda"], default="cpu",
                   help="PyNX operator family of table 2 (opencl runs on the PoCL CPU platform here, slowly; "
                        "estimated intensities need opencl or cuda)")
    p.add_argument("--regime", default="mixed",
                   help="simulator regime of the table-1 set: 'mixed' (default, the README's table), 'measured' "
                        "(high counts, floors, fringes to the edges: the measured-like end), or a number in [0, 1]")
    p.add_argument("--truth", choices=["measured", "expected"], default="measured",
                   help="table 1 scores the gap against the measured (Poisson) counts (default) or the simulator's "
                        "noise-free expected counts")
    p.add_argument("--oracle", action="store_true",
                   help="table 1 also gets an 'expected' row: the noise-free expected intensity as the fill "
                        "(against the measured truth: the noise ceiling, what a perfect fill scores)")
    p.add_argument("--weights", default=None,
                   help="add the DL model ('dl' rows): a weights file, or 'shipped' for the package's weights")
    p.add_argument("--tta", type=int, nargs="*", default=[],
                   help="with --weights: also the test-time ensembles of these numbers of views ('dl-ttaK' rows)")
    p.add_argument("--tta-bright", type=int, nargs="*", default=[],
                   help="with --weights: also K views for the bright patches only ('dl-brightK' rows, "
                        "inpaint(tta_bright=K))")
    a = p.parse_args(argv)

    t0 = time.perf_counter()
    shape = (a.size,) * 3
    cases = gb.gap_cases(a.widths, ("plane", "cross"))
    print(f"# gap-fill benchmark: {a.n} held-out simulated {a.size}^3 patterns "
          f"(seeds {gb.TEST_SEED_BASE}..{gb.TEST_SEED_BASE + a.n - 1}, regime {a.regime!r})")
    regime = a.regime if a.regime in ("mixed", "measured", "textbook") else float(a.regime)
    samples = gb.make_test_set(a.n, shape, regime)
    from pynx_dlgap.simulate import pattern_stats
    st = [pattern_stats(s["intensity"]) for s in samples]
    print(f"# peak counts {min(s['peak'] for s in st):.3g}..{max(s['peak'] for s in st):.3g}; "
          f"fraction of voxels > 100 photons {np.mean([s['frac_gt_100'] for s in st]):.2f} (mean), "
          f"< 1 photon {np.mean([s['frac_lt_1'] for s in st]):.2f} (mean)")
    fast = {m: BASELINES[m] for m in a.methods if m != "pynx_interp"}
    dl = {}
    if a.weights:
        from pynx_dlgap.inpaint.infer import inpaint, load_inpaint_model
        model, card = load_inpaint_model(None if a.weights == "shipped" else a.weights)
        print(f"# DL model: {card.get('weights_file')} sha256 {card['sha256'][:12]}, "
              f"{card['n_params']} params, widths {card.get('gap_widths_supported')}; wider gaps are refused")

        def fill_dl(I, m):
            return inpaint(I, m, model=model, progress=False)

        def fill_raw(I, m):  # the model's fill without the card's trust region
            return inpaint(I, m, model=model, progress=False, trust=None)

        def fill_checked(I, m):  # what users get by default: the self-check picks DL or log-linear
            with contextlib.redirect_stdout(io.StringIO()):
                return inpaint(I, m, model=model, progress=False, check=True)
        def fill_tta(k):
            return lambda I, m: inpaint(I, m, model=model, progress=False, tta=k)

        def fill_bright(k):
            return lambda I, m: inpaint(I, m, model=model, progress=False, tta_bright=k)
        trust = (card.get("inference") or {}).get("trust")
        print(f"# trust region (card inference.trust): {trust}; 'dl' rows use it"
              + (", 'dl-raw' rows are the model's fill without it" if trust is not None else ""))
        dl = {**({"dl-raw": fill_raw} if trust is not None else {}), "dl": fill_dl,
              **{f"dl-tta{k}": fill_tta(k) for k in a.tta if k > 1},
              **{f"dl-bright{k}": fill_bright(k) for k in a.tta_bright if k > 1}, "dl+check": fill_checked}
        fast.update(dl)
        a.methods = [*a.methods, *dl]
    modes = ("", *gb.FILL_MODES)
    for flag, specs, names, what in (("--realspace-dl", a.realspace_dl or [], dl, "rows"),
                                     ("--realspace-methods", a.realspace_methods, BASELINES, "fills")):
        for m in specs:  # checked before any work
            name, _, mode = m.partition(":")
            if name not in names or mode not in modes:
                p.error(f"{flag} {m}: {what} are {', '.join(names) or 'none (give --weights)'}, "
                        f"modes {', '.join(gb.FILL_MODES)}")
    cols = ["pcc_log", "pcc", "ssim_log", "r_factor", "mae_log", "amp", "seconds"]
    best = {"pcc_log": "max", "pcc": "max", "ssim_log": "max", "r_factor": "min", "mae_log": "min", "amp": "min"}
    fmt = {"seconds": "{:.3f}", "n": "{:.0f}"}
    rows = gb.detector_rows(samples, cases, fast, truth=a.truth, oracle=a.oracle)
    print(f"\n## Table 1: detector space, inside the gap, scored against the {a.truth} intensity "
          f"(mean over patterns; * = best of the case"
          + (", among the fills; 'expected' = the noise-free intensity as the fill: against the measured "
             "truth, the noise ceiling" if a.oracle
             else "") + ")\n")
    print(gb.format_table(gb.summarize(rows, ("case", "method"), cols), ("case", "method"), cols + ["n"],
                          fmt=fmt, best=best, best_exclude=("expected",)))
    if "pynx_interp" in a.methods and a.pynx_interp_n > 0:
        k = a.pynx_interp_n
        with contextlib.redirect_stdout(io.StringIO()):
            prows = gb.detector_rows(samples[:k], cases, {"pynx_interp": BASELINES["pynx_interp"]}, truth=a.truth)
        sub = [r for r in rows if r["sample"] < k] + prows
        order = {m: i for i, m in enumerate([*a.methods, "expected"])}
        sub.sort(key=lambda r: ([str(c) for c in cases].index(r["case"]), order[r["method"]]))
        print(f"\n## Table 1b: the same with PyNX InterpIobsMask (d=8, n=4; OpenCL on the PoCL CPU platform), "
              f"all methods on the same first {k} patterns\n")
        print(gb.format_table(gb.summarize(sub, ("case", "method"), cols), ("case", "method"), cols + ["n"],
                              fmt=fmt, best=best, best_exclude=("expected",)))

    if a.realspace_n > 0:
        rs_samples = gb.make_test_set(a.realspace_n, shape, "measured", seed_base=gb.TEST_SEED_BASE + 10_000,
                                      floor=0.0, diffuse=0.0, phase_range=1.0)
        rs_cases = gb.gap_cases(a.realspace_widths, ("cross",))
        meths = {m: _fill_spec(m, dl) for m in (dl if a.realspace_dl is None else a.realspace_dl)}
        meths.update({m: _fill_spec(m, BASELINES) for m in a.realspace_methods})
        if any(isinstance(f, tuple) and f[1] == "estimate" for f in meths.values()) and a.realspace_backend == "cpu":
            print("# note: PyNX's CPU operators treat estimated intensities as masked (use --realspace-backend opencl)")
        with contextlib.redirect_stdout(io.StringIO()):
            rrows = gb.realspace_rows(rs_samples, rs_cases, meths, seeds=(0,), backend=a.realspace_backend)
        summ2 = gb.summarize(rrows, ("case", "method"),
                             ["phase_rms", "modulus_error", "prtf", "llk", "failed", "seconds"])
        summ2_med = gb.summarize(rrows, ("case", "method"), ["phase_rms"], agg=np.nanmedian)
        for g in summ2:
            summ2[g]["phase_rms_median"] = summ2_med[g]["phase_rms"]
        print(f"\n## Table 2: real space after PyNX phasing ({a.realspace_n} patterns per case, "
              f"measured-like counts, no floor, phase range 1 rad; same chain and seed for every version; "
              f"PyNX {a.realspace_backend} operators)\n")
        print(gb.format_table(summ2, ("case", "method"),
                              ["phase_rms", "phase_rms_median", "modulus_error", "prtf", "llk", "failed", "seconds",
                               "n"],
                              fmt={"llk": "{:.2f}", "seconds": "{:.1f}", "n": "{:.0f}", "failed": "{:.2f}"},
                              best={"phase_rms": "min", "modulus_error": "min"}))
    print(f"\n# total time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
