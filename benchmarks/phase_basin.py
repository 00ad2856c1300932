"""Basin of attraction of the PyNX chain around the true reciprocal-space phase.

How close must a predicted phase be for the chain to finish the job? For each
strain level (Bragg phase range pi, 2 pi, 4 pi) and each noise level sigma, the
start is ``IFT(sqrt(I) exp(i (phi_true + n)))`` where ``phi_true`` is the
simulator's phase label and ``n`` a smooth random field (white noise smoothed by
a Gaussian of ``--corr`` px, scaled to RMS sigma); support from the start's
modulus, as for the DL start; then the chain of ``benchmarks/phase_init.py``'s
DL rows (RAAR + ER, support update every 50, **no detwin**: these starts carry no
twin mixture, and PyNX's ``DetwinRAAR``, which halves the support, was measured to
drive even the true-phase start away; ``--detwin`` puts it back) and its success
criterion (phase RMS < 0.3 rad inside the true support after removing offset,
ramp and twin, modulus error < 0.3).

Each start's distance to the truth is reported as the *effective RMS*
``sqrt(-2 ln C)``, ``C = |sum w exp(i (phi - phi_true))| / sum w`` (the weighted
coherent average of the phase loss, ``w`` the normalised log-intensity, best of
the twin pair): for Gaussian phase errors of RMS sigma, ``C = exp(-sigma^2 / 2)``.
The same number for the shipped DL prediction places the network on the curve. (The log weight is
the loss's; the intensity-weighted coherence predicts the chain's success from a DL start better:
``benchmarks/phase_weight.py``; column ``C_int``.)

``--radii R ...`` adds starts that are *right only near the Bragg peak*: the true phase within R px
(Euclidean distance in pixels from the brightest voxel) and a uniformly random phase beyond (fresh
draws per crystal), refined by the same chain. They say how far out in q a predicted phase must be
right for the chain to finish the job, the question ``phase_weight.py``'s shell table asks of the
network.

    python benchmarks/phase_basin.py --n 6 --sigmas 0 0.5 1 1.5 2
    python benchmarks/phase_basin.py --dims 2 --n 30 --sigmas 0 --radii 4 8 16 32 --no-dl
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from phase_init import LEVELS, SEED_BASE, crystal, run_cases  # noqa: E402  (the same held-out crystals)

from pynx_dlgap.phase.predict import smooth_noise  # noqa: E402


def coherence(phase, label, weight) -> float:
    """C = ``|sum w exp(i(phase - label))| / sum w`` (float64), the best of the twin pair; NaN phases
    count with weight 0."""
    ok = np.isfinite(phase)
    w = np.where(ok, weight, 0).astype(np.float64)
    p = np.where(ok, phase, 0).astype(np.float64)
    label = np.asarray(label, np.float64)
    best = 0.0
    # twin: phi(q) -> -phi(q) (the FT of conj(o(-r)) is conj(F(q)); until 0.7.1 this took -phi(-q),
    # the phase of conj(o(r)), whose intensity is I(-q): DL rows were scored against the wrong pair)
    for lab in (label, -label):
        c = abs(np.sum(w * np.exp(1j * (p - lab)))) / w.sum()
        best = max(best, c)
    return float(best)


def effective_rms(phase, label, weight) -> float:
    """``sqrt(-2 ln C)``, C the weighted coherent average of ``phase - label`` (:func:`coherence`)."""
    return float(math.sqrt(-2 * math.log(max(coherence(phase, label, weight), 1e-12))))


def one_case(args):
    dims, seed, lname, level, sigmas, corr, chain, with_dl, thrs, radii = args
    import torch
    torch.set_num_threads(1)
    from pynx_dlgap.evaluate.align import object_errors
    from pynx_dlgap.evaluate.phasing import phase_pattern
    from pynx_dlgap.phase.inputs import phase_weight
    from pynx_dlgap.phase.predict import (bragg_peak, load_phase_model, predict_phase, start_object,
                                          support_from_object)
    s = crystal(dims, seed, level)
    I = s["intensity"]
    w = phase_weight(I)
    w_int = I.astype(np.float64)
    rng = np.random.default_rng(seed)
    rows = []
    starts = [(f"{sg:g}", s["phase"] + smooth_noise(I.shape, sg, corr, rng)) for sg in sigmas]
    if radii:
        dist = np.sqrt(sum((g - c) ** 2 for g, c in zip(np.indices(I.shape), bragg_peak(I))))
        for R in radii:  # the true phase within R px of the peak, uniformly random beyond
            starts.append((f"r{R:g}", np.where(dist < R, s["phase"], rng.uniform(-np.pi, np.pi, I.shape))))
    if with_dl:
        model, _ = load_phase_model(None, dims)
        starts.append(("dl", predict_phase(I, None, model=model)))
    for name, ph in starts:
        eff = effective_rms(ph, s["phase"], w)
        c_int = coherence(ph, s["phase"], w_int)
        o0 = start_object(I, np.where(np.isfinite(ph), ph, 0))
        for thr in thrs:
            r = phase_pattern(I, None, obj0=o0, support0=support_from_object(o0),
                              chain=dict(chain, support_threshold=thr))
            e = object_errors(r.obj, s["object"], s["support"])
            ok = r.failed is None and e["phase_rms"] < 0.3 and e["modulus_error"] < 0.3
            rows.append(dict(level=lname, start=name, thr=thr, eff=eff, c_int=c_int, success=float(ok),
                             phase_rms=e["phase_rms"]))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dims", type=int, default=3, choices=(2, 3))
    ap.add_argument("--n", type=int, default=6, help="crystals per strain level")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 0.5, 1.0, 1.5, 2.0])
    ap.add_argument("--corr", type=float, default=2.0, help="noise correlation length (px, Gaussian sigma)")
    ap.add_argument("--raar", type=int, default=300)
    ap.add_argument("--er", type=int, default=100)
    ap.add_argument("--support-threshold", type=float, nargs="+", default=[0.25],
                    help="SupportUpdate threshold(s) (relative to the RMS modulus) of the chain; 0.25 = PyNX's "
                         "default; several: every start refined with each, rows per threshold")
    ap.add_argument("--radii", type=float, nargs="+", default=[],
                    help="also starts with the true phase within R px of the Bragg peak, random beyond")
    ap.add_argument("--no-dl", dest="dl", action="store_false", help="skip the DL prediction row")
    ap.add_argument("--detwin", action="store_true", help="keep PyNX's DetwinRAAR step in the chain")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2)))
    ap.add_argument("--levels", nargs="+", default=[n for n, _ in LEVELS])
    a = ap.parse_args(argv)
    chain = dict(n_raar=a.raar, n_er=a.er, detwin=a.detwin)
    thrs = list(dict.fromkeys(a.support_threshold))
    jobs = [(a.dims, SEED_BASE + 1000 * j + i, name, lev, a.sigmas, a.corr, chain, a.dl, thrs, a.radii)
            for j, (name, lev) in enumerate(LEVELS) if name in a.levels for i in range(a.n)]
    t0 = time.perf_counter()
    rows = run_cases(one_case, jobs, a.workers)
    print(f"# basin of attraction, {a.dims}-D: {a.n} held-out crystals per level (the phase_init.py set), start = "
          f"true reciprocal phase + smooth noise (corr {a.corr:g} px) of RMS sigma; chain {a.raar} RAAR + {a.er} ER, detwin {'on' if a.detwin else 'off'}, "
          f"support threshold {' / '.join(f'{t:g}' for t in thrs)}"
          + ("; rows 'true r<R': the true phase within R px of the Bragg peak, random beyond" if a.radii else ""))
    print(f"# python {' '.join(sys.argv)}")
    print()
    hdr = (f"{'level':6} {'start':>10} {'threshold':>9} {'eff. RMS':>9} {'C_int':>6} {'success':>8} {'phase_rms':>9} "
           f"{'n':>3}")
    print(hdr)
    print("-" * len(hdr))
    for name, _ in LEVELS:
        if name not in a.levels:
            continue
        for st in [f"{sg:g}" for sg in a.sigmas] + [f"r{R:g}" for R in a.radii] + (["dl"] if a.dl else []):
            for thr in thrs:
                rr = [r for r in rows if r["level"] == name and r["start"] == st and r["thr"] == thr]
                lab = "DL pred." if st == "dl" else f"true r<{st[1:]}" if st[0] == "r" else f"sigma {st}"
                print(f"{name:6} {lab:>10} {thr:9g} {np.median([r['eff'] for r in rr]):9.2f} "
                      f"{np.median([r['c_int'] for r in rr]):6.3f} "
                      f"{np.mean([r['success'] for r in rr]):8.2f} {np.median([r['phase_rms'] for r in rr]):9.3f} "
                      f"{len(rr):3d}")
        print()
    print("# eff. RMS = sqrt(-2 ln WCA coherence), median; C_int: median intensity-weighted coherence with the true "
          "phase (phase_weight.py's C_int); success = share of crystals; phase_rms = median (rad)")
    print(f"# total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
