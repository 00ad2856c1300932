"""Which weighting of the DL phase error tells whether the chain will succeed from the DL start?

The phase models are trained on the weighted coherent average (WCA) with ``w`` the normalised
log-intensity (Masto et al. 2025), and ``benchmarks/phase_basin.py`` measures the chain's basin in the
same metric. The chain itself weights each voxel by its amplitude (its projection replaces the modulus
``sqrt(I)``). This benchmark measures, on the held-out crystals of ``benchmarks/phase_init.py`` (same
seeds, levels and chain), how well the coherence of the DL prediction under three weights

* ``log``: ``log(I+1) / log(max I+1)`` (the training loss),
* ``amp``: ``sqrt(I / max I)`` (``pynx-dlgap train-phase --loss-weight amplitude``),
* ``int``: ``I / max I``,

(``C = |sum w exp(i(phi - phi_true))| / sum w``, best of the twin pair, ``I`` the crystal's noise-free
intensity ``|cFT(object)|^2``, ``phi_true`` its phase, measured voxels only) predicts the success of
DL start + chain (phase RMS < 0.3 rad and modulus error < 0.3 after alignment): the AUC of each
coherence as a score for success (1 = it ranks every success above every failure, 0.5 = chance), over
all levels pooled and per level; then, per shell of distance |q| from the Bragg peak, the
intensity-weighted coherence and the shell's share of the intensity: where the prediction is right. With several ``--weights`` files it runs each on the same crystals
(e.g. the shipped model and a candidate trained with another loss weight).

    python benchmarks/phase_weight.py --dims 2 --n 30 --workers 2
    python benchmarks/phase_weight.py --dims 2 --n 30 --weights shipped runs/cand/phase2d.safetensors
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from phase_basin import coherence  # noqa: E402  (twin-min weighted coherent average, float64)
from phase_init import ANALYTIC_SEED_BASE, LEVELS, SEED_BASE, crystal, run_cases  # noqa: E402

KINDS = ("log", "amp", "int")
SHELLS = ((0, 4), (4, 8), (8, 16), (16, 32), (32, 1e9))  # |q| in pixels from the Bragg peak
_MODELS = {}


def weights_of(signal, ok) -> dict:
    """The three weights (float64, 0 where ``ok`` is False) of noise-free intensity ``signal``."""
    a = np.clip(np.asarray(signal, np.float64), 0, None)
    top = a.max()
    return dict(log=np.log1p(a) / np.log1p(top) * ok, amp=np.sqrt(a / top) * ok, int=a / top * ok)


def one_case(args):
    dims, seed, lname, level, weights_list, chain, crystals, mod_bound = args
    import torch
    torch.set_num_threads(1)
    from pynx_dlgap.evaluate.align import object_errors
    from pynx_dlgap.evaluate.phasing import phase_pattern
    from pynx_dlgap.phase.predict import load_phase_model, predict_phase, start_object, support_from_object
    from pynx_dlgap.simulate.diffraction import cfft
    s = crystal(dims, seed, level, crystals)
    I, m = s["intensity"], s["mask"] | s["dead"]
    f = cfft(s["object"].astype(np.complex128))
    truth, signal = np.angle(f), np.abs(f) ** 2
    rows = []
    for wf in weights_list:
        key = (wf, dims)
        if key not in _MODELS:
            _MODELS[key] = load_phase_model(None if wf == "shipped" else wf, dims)[0]
        ph = predict_phase(I, m, model=_MODELS[key])
        ok = np.isfinite(ph) & ~m
        ws = weights_of(signal, ok)
        row = dict(level=lname, seed=seed, weights=wf,
                   **{k: coherence(ph, truth, ws[k]) for k in KINDS})
        q = np.sqrt(sum(g ** 2 for g in np.meshgrid(*[np.arange(n) - n // 2 for n in I.shape], indexing="ij")))
        for r0, r1 in SHELLS:  # where the prediction is right: intensity-weighted coherence and share per shell
            sh = (q >= r0) & (q < r1)
            wi = ws["int"] * sh
            row[f"C{r0}"] = coherence(ph, truth, wi) if wi.sum() > 0 else np.nan
            row[f"S{r0}"] = wi.sum() / ws["int"].sum()
        o0 = start_object(I, ph, m)
        r = phase_pattern(I, m, obj0=o0, support0=support_from_object(o0), chain=dict(chain, detwin=False))
        if r.failed is None:
            e = object_errors(r.obj, s["object"], s["support"])
            row.update(phase_rms=e["phase_rms"], success=float(e["phase_rms"] < 0.3 and e["modulus_error"] < mod_bound))
        else:
            row.update(phase_rms=np.nan, success=0.0)
        rows.append(row)
    return rows


def auc(score, y) -> float:
    """Probability that a success scores above a failure (ties count half); NaN without both."""
    score, y = np.asarray(score, float), np.asarray(y, float)
    pos, neg = score[y > 0], score[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    return float(np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])))


def table(rows, levels):
    hdr = (f"{'level':6s} {'success':>8s} " + " ".join(f"{'C_' + k:>7s}" for k in KINDS) + "  "
           + " ".join(f"{'AUC_' + k:>8s}" for k in KINDS) + f" {'n':>4s}")
    out = [hdr, "-" * len(hdr)]
    for lv in list(levels) + ["all"]:
        rr = [r for r in rows if lv == "all" or r["level"] == lv]
        y = [r["success"] for r in rr]
        out.append(f"{lv:6s} {np.mean(y):8.2f} " + " ".join(f"{np.median([r[k] for r in rr]):7.3f}" for k in KINDS)
                   + "  " + " ".join(f"{auc([r[k] for r in rr], y):8.3f}" for k in KINDS) + f" {len(rr):4d}")
    return out


def shell_table(rows, levels):
    """Median intensity-weighted coherence per |q| shell, and the shell's share of the intensity."""
    names = [f"{r0}-{r1:g}" if r1 < 1e9 else f"{r0}+" for r0, r1 in SHELLS]
    hdr = f"{'level':6s} " + " ".join(f"{n:>13s}" for n in names)
    out = [hdr, "-" * len(hdr)]
    for lv in levels:
        rr = [r for r in rows if r["level"] == lv]
        out.append(f"{lv:6s} " + " ".join(f"{np.nanmedian([r[f'C{r0}'] for r in rr]):6.3f} ({np.median([r[f'S{r0}'] for r in rr]):4.2f})"
                                          for r0, _ in SHELLS))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dims", type=int, choices=(2, 3), default=2)
    ap.add_argument("--n", type=int, default=30, help="crystals per level")
    ap.add_argument("--levels", nargs="+", default=[k for k, _ in LEVELS], choices=[k for k, _ in LEVELS])
    ap.add_argument("--weights", nargs="+", default=["shipped"],
                    help="phase weights files ('shipped': the package's), each run on the same crystals")
    ap.add_argument("--crystals", choices=("simulator", "analytic"), default="simulator")
    ap.add_argument("--raar", type=int, default=300)
    ap.add_argument("--er", type=int, default=100)
    ap.add_argument("--mod-bound", type=float, default=0.3)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args(argv)
    if a.n < 1:
        ap.error("--n must be at least 1")
    for wf in a.weights:  # before any work
        if wf != "shipped" and not os.path.isfile(wf):
            ap.error(f"weights file not found: {wf}")
    base = SEED_BASE if a.crystals == "simulator" else ANALYTIC_SEED_BASE
    chain = dict(n_raar=a.raar, n_er=a.er)
    jobs = [(a.dims, base + 1000 * j + i, name, lev, tuple(a.weights), chain, a.crystals, a.mod_bound)
            for j, (name, lev) in enumerate(LEVELS) if name in a.levels for i in range(a.n)]
    t0 = time.perf_counter()
    rows = run_cases(one_case, jobs, a.workers)
    rows.sort(key=lambda r: (r["weights"], r["level"], r["seed"]))
    print(f"# phase_weight: {a.dims}-D, {a.n} {a.crystals} crystals per level (seeds {base}+, those of "
          f"phase_init.py), DL start + {a.raar} RAAR + {a.er} ER without detwin; success: phase RMS < 0.3 rad and "
          f"modulus error < {a.mod_bound}")
    print("# C_k: median coherence of the DL prediction with the true phase under weight k (log: log(I+1), amp: "
          "sqrt(I), int: I; noise-free I, twin-min); AUC_k: how well C_k ranks successes above failures")
    print("# python benchmarks/phase_weight.py " + " ".join(sys.argv[1:] if argv is None else argv))
    for wf in a.weights:
        from pynx_dlgap.phase.predict import read_phase_card
        card = read_phase_card(None if wf == "shipped" else wf, a.dims)
        print(f"\n## weights {wf} (sha256 {card.get('sha256', '?')[:12]}; loss: "
              f"{card.get('training', {}).get('loss', '?')})")
        lv = [k for k, _ in LEVELS if k in a.levels]
        print("\n".join(table([r for r in rows if r["weights"] == wf], lv)))
        print("# per |q| shell (px from the peak): median C_int (median share of the intensity)")
        print("\n".join(shell_table([r for r in rows if r["weights"] == wf], lv)))
    print(f"\n# total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
