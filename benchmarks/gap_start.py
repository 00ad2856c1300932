"""The DL start on a pattern with a detector gap: how should the chain see the gap's fill?

``pynx-dlgap phase data --mask m --inpaint --fill-as MODE`` fills the gap (DL inpainting
with its self-check), predicts the phase from the filled pattern, and refines the DL
start with the harness's PyNX chain. This script runs that flow on held-out crystals
(the crystals of ``benchmarks/phase_init.py``: 64^3, regime 'measured' without floor or
diffuse scattering, seeds from 1.9e9) with a ``--gap``-px cross cut 3 px beside the
Bragg peak, and compares, on the same crystals and the same DL start:

* ``masked``: no inpainting; the DL start predicted from the masked pattern
  (the model sees the mask) and a chain in which the gap is free;
* ``fill:estimate``: the fill as PyNX estimated values (``phase``'s default; PyNX
  2025.1's CPU ``ApplyAmplitude`` treats estimated pixels as masked, so on these
  CPU operators the chain sees the gap as free, as ``masked`` does, but starts from
  the prediction on the filled pattern);
* ``fill:observed``: the fill as observed intensities for the whole chain;
* ``fill:release``: the fill as observed intensities until the end of PyNX's
  zero-mask phase (60 % of the RAAR cycles), masked after (``ReleaseFill``);
* ``gap-free``: the DL start and chain on the pattern without a gap (the bound).

Chain: ``--raar`` RAAR + ``--er`` ER cycles on PyNX's CPU operators, support update
every 50, zero-mask auto, no detwinning (as ``dl+chain`` of ``phase_init.py``).
Scores after sub-pixel alignment with offset, ramp and twin removed: success (phase
RMS inside the true support < 0.3 rad and modulus error < 0.3), mean and median phase RMS,
median modulus error.

    python benchmarks/gap_start.py --n 10 --levels pi 2pi --workers 2   # 600 RAAR + 200 ER
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

MODES = ("masked", "fill:estimate", "fill:observed", "fill:release", "gap-free")
_MODELS = {}


def one_case(args):
    """Every mode on one crystal: a list of row dicts."""
    seed, lname, level, gap, chain, mod_bound = args
    import torch
    torch.set_num_threads(1)
    from phase_init import crystal
    from pynx_dlgap.evaluate.align import object_errors
    from pynx_dlgap.evaluate.phasing import phase_pattern
    from pynx_dlgap.inpaint.infer import inpaint, load_inpaint_model
    from pynx_dlgap.phase.predict import load_phase_model, predict_phase, start_object, support_from_object
    from pynx_dlgap.simulate.gaps import cross
    if not _MODELS:  # once per worker process
        _MODELS["phase"] = load_phase_model(None, 3)[0]
        _MODELS["inpaint"] = load_inpaint_model(None)[0]
    s = crystal(3, seed, level)
    I = s["intensity"]
    c = I.shape[1] // 2
    g = cross(gap, c - 3 - gap, c + 3).mask(I.shape)
    seen = np.where(g, 0, I).astype(np.float32)
    with contextlib.redirect_stdout(io.StringIO()):  # the self-check's report
        filled, info = inpaint(seen, g, _MODELS["inpaint"], progress=False, check=True, return_info=True)
    none = np.zeros_like(g)
    rows = []

    def dl_start(pattern, mask):
        o = start_object(pattern, predict_phase(pattern, mask, model=_MODELS["phase"]), mask)
        return o, support_from_object(o)

    start_filled = dl_start(filled, none)  # one DL start for the three modes of the filled pattern

    def run(mode, pattern, mask, start=None, **kw):
        o, sup = dl_start(pattern, mask) if start is None else start
        r = phase_pattern(pattern, mask, obj0=o, support0=sup, chain=dict(chain, detwin=False), **kw)
        e = object_errors(r.obj, s["object"], s["support"])
        ok = r.failed is None and e["phase_rms"] < 0.3 and e["modulus_error"] < mod_bound
        rows.append(dict(level=lname, seed=seed, mode=mode, success=float(ok), phase_rms=e["phase_rms"],
                         modulus_error=e["modulus_error"], fill=info["method"]))

    run("masked", seen, g)
    run("fill:estimate", filled, none, start_filled, estimate=g)
    run("fill:observed", filled, none, start_filled)
    run("fill:release", filled, none, start_filled, release=g)
    run("gap-free", I, none)
    return rows


def main(argv=None):
    from phase_init import LEVELS, SEED_BASE, run_cases
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10, help="crystals per strain level")
    ap.add_argument("--gap", type=int, default=6, help="width of the gap cross (px)")
    ap.add_argument("--levels", nargs="+", default=["pi", "2pi"], choices=[n for n, _ in LEVELS])
    ap.add_argument("--raar", type=int, default=600)
    ap.add_argument("--er", type=int, default=200)
    ap.add_argument("--mod-bound", type=float, default=0.3)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args(argv)
    if not 1 <= a.gap <= 12:
        ap.error(f"--gap must be 1-12 px (the inpainting model's range), got {a.gap}")
    chain = dict(n_raar=a.raar, n_er=a.er)
    jobs = [(SEED_BASE + 1000 * j + i, name, lev, a.gap, chain, a.mod_bound)
            for j, (name, lev) in enumerate(LEVELS) if name in a.levels for i in range(a.n)]
    t0 = time.perf_counter()
    rows = run_cases(one_case, jobs, a.workers)
    print(f"# DL start on a pattern with a {a.gap}-px gap cross 3 px beside the Bragg peak: {a.n} held-out 64^3 "
          f"crystals per level (phase_init.py's, seeds {SEED_BASE}+)")
    print(f"# chain: {a.raar} RAAR + {a.er} ER, PyNX CPU operators, no detwin; success: phase RMS < 0.3 rad and "
          f"modulus error < {a.mod_bound}; shipped weights; python {' '.join(sys.argv)}")
    print()
    hdr = f"{'level':6} {'mode':14} {'success':>8} {'phase_rms mean':>15} {'median':>7} {'mod_err':>8} {'n':>4}"
    print(hdr)
    print("-" * len(hdr))
    for name, _ in LEVELS:
        if name not in a.levels:
            continue
        for mode in MODES:
            rr = [r for r in rows if r["level"] == name and r["mode"] == mode]
            p = np.array([r["phase_rms"] for r in rr])
            print(f"{name:6} {mode:14} {np.mean([r['success'] for r in rr]):8.2f} {np.mean(p):15.3f} "
                  f"{np.median(p):7.3f} {np.median([r['modulus_error'] for r in rr]):8.3f} {len(rr):4d}")
        print()
    fills = [r["fill"] for r in rows if r["mode"] == "fill:release"]
    print(f"# the self-check kept the DL fill on {fills.count('dl')} of {len(fills)} patterns (log-linear on the rest)")
    print(f"# total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
