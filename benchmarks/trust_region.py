#!/usr/bin/env python
"""Choosing the trust region of the DL fill, on simulated patterns outside the training and held-out sets.

The model adds a learnt correction to the log-linear prefill of each patch
(``pynx_dlgap.inpaint.patches``). On most gap voxels the correction is small and
improves the fill in log space (PCC, MAE of ``log(I+1)``); on a few voxels beside
the Bragg peak it is a large over-estimate (tens to a hundred times the truth), and
those few voxels dominate the relative amplitude error ``sum (sqrt f - sqrt t)^2 /
sum t``, what phasing sees. ``inpaint(trust=T)`` clips each patch's correction to
``±T`` in ``log(I+1)`` (:func:`pynx_dlgap.inpaint.patches.to_counts`), so the fill stays
within a factor ``e^T`` (in ``I + 1``) of log-linear interpolation.

This script fills the same gaps with log-linear interpolation, the model without a
trust region (``dl``) and with each ``T`` of ``--trusts`` (``dl-tT``), on two sets of
simulated 64^3 patterns whose seeds no other set uses:

* ``mixed`` (seeds 1.5e9+): the simulator's whole range, as the gap-fill benchmark's
  held-out set (seeds 2e9+) but other crystals;
* ``measured`` (seeds 1.6e9+): the measured-like end (high counts, background
  floors, fringes to the edges).

Gap cases: planes and crosses of 3/6/9/12 px (``pynx_dlgap.evaluate.gapbench``).
It prints, per set, the metrics in the gap per case and their mean over cases, then
the **selection table**: for each fill, the mean over the two sets of its mean
amplitude error relative to log-linear's (``amp/ll``), and its mean PCC and MAE of
``log(I+1)``. The shipped card's ``inference.trust`` is the ``T`` with the lowest
``amp/ll`` (the model alone counting as ``T = inf``; ties: the larger ``T``), which is
what ``inpaint`` applies by default.

    python benchmarks/trust_region.py                  # the card's choice (~25 min on 2 cores)
    python benchmarks/trust_region.py --n 2 --trusts 0.5 1   # a quick look
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from pynx_dlgap.evaluate import gapbench as gb
from pynx_dlgap.inpaint.baselines import fill_loglinear
from pynx_dlgap.inpaint.infer import inpaint, load_inpaint_model

SETS = {"mixed": 1_500_000_000, "measured": 1_600_000_000}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=8, help="patterns per set (default 8)")
    p.add_argument("--trusts", type=float, nargs="+", default=[0.25, 0.5, 1.0, 1.5, 2.0, 3.0],
                   help="trust regions compared, log(I+1) units")
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    p.add_argument("--widths", type=int, nargs="+", default=[3, 6, 9, 12])
    p.add_argument("--weights", default=None, help="inpainting weights (default: the shipped ones)")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    model, card = load_inpaint_model(a.weights)
    print(f"# trust region of the DL fill: model sha256 {card['sha256'][:12]}, card inference.trust "
          f"{(card.get('inference') or {}).get('trust')}; {a.n} simulated 64^3 patterns per set, "
          f"gaps {a.widths} px (planes, crosses)")
    print(f"# python benchmarks/trust_region.py {' '.join(sys.argv[1:] if argv is None else argv)}".rstrip())
    cases = gb.gap_cases(a.widths, ("plane", "cross"))
    methods = {"loglinear": fill_loglinear,
               "dl": lambda I, m: inpaint(I, m, model=model, progress=False, trust=None)}
    for t in a.trusts:
        methods[f"dl-t{t:g}"] = (lambda t: lambda I, m: inpaint(I, m, model=model, progress=False, trust=t))(t)
    cols = ["pcc_log", "mae_log", "amp"]
    best = {"pcc_log": "max", "mae_log": "min", "amp": "min"}
    per_set = {}
    for name in a.sets:
        samples = gb.make_test_set(a.n, (64,) * 3, name, seed_base=SETS[name])
        rows = gb.detector_rows(samples, cases, methods, ssim=False)
        print(f"\n## set {name!r} (seeds {SETS[name]}..{SETS[name] + a.n - 1}): in the gap, mean over patterns\n")
        print(gb.format_table(gb.summarize(rows, ("case", "method"), cols), ("case", "method"), cols + ["n"],
                              best=best))
        summ = gb.summarize(rows, ("method",), cols)
        print(f"\n## set {name!r}: mean over the {len(cases)} cases\n")
        print(gb.format_table(summ, ("method",), cols, best=best))
        per_set[name] = {g[0]: v for g, v in summ.items()}
    sel = {}
    for meth in methods:
        sel[(meth,)] = {"amp/ll": float(np.mean([per_set[s][meth]["amp"] / per_set[s]["loglinear"]["amp"]
                                                 for s in per_set])),
                        "pcc_log": float(np.mean([per_set[s][meth]["pcc_log"] for s in per_set])),
                        "mae_log": float(np.mean([per_set[s][meth]["mae_log"] for s in per_set]))}
    print(f"\n## selection: mean over the sets {list(per_set)}\n")
    print(gb.format_table(sel, ("method",), ["amp/ll", "pcc_log", "mae_log"],
                          best={"amp/ll": "min", "pcc_log": "max", "mae_log": "min"}))
    cand = {g[0]: float(g[0][4:]) if g[0] != "dl" else float("inf") for g in sel if g[0].startswith("dl")}
    pick = min(cand, key=lambda k: (round(sel[(k,)]["amp/ll"], 4), -cand[k]))
    print(f"\n# lowest amp/ll: trust {cand[pick]:g} ({pick}: amp/ll {sel[(pick,)]['amp/ll']:.3f}; "
          f"model alone {sel[('dl',)]['amp/ll']:.3f}; inf = no trust region)")
    print(f"# total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
