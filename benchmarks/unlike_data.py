"""Patterns unlike the training data: the model alone, after fine-tuning, log-linear, and the self-check.

The shipped inpainting model trained on the simulator's count regimes. Here each
held-out 64³ pattern (seeds from 1.95e9) is pushed outside them with the
simulator's knobs: very high counts (peak 10^U(7.5, 8.5) photons; training saw
at most 1e7 x its x10 flux augmentation), a flat background floor (10^U(-2.5, -1.5)
of the peak on the whole array; training: at most 1e-2) and fringes to the
edges (crop U(2.5, 3.5) of the bigger pattern; training: at most 2.5). A 6-px gap cross (or ``--gap``) is cut near the Bragg peak.

For every pattern, in one run, the gap is filled by:

* ``loglinear``: log-space linear interpolation;
* ``dl``: the shipped model;
* ``dl-finetuned``: the model after ``pynx-dlgap finetune`` on that pattern
  (:func:`pynx_dlgap.training.finetune.finetune`, default epochs);
* ``self-check``: the fill the self-check chooses (DL or log-linear), with the
  choice and whether it matches the better of the two on the real gap.

Scores inside the real gap against the simulated truth: relative amplitude error
``sum (sqrt f - sqrt t)^2 / sum t`` (what phasing sees; the criterion of
"better"), PCC and MAE of log(I+1).

``--crystals analytic`` takes the crystals from the independent recipe
:mod:`pynx_dlgap.evaluate.analytic` instead (seeds from 17000: ellipsoids, cylinders, rounded cubes,
octahedra with binary supports, so fringes to the edges; Bragg phase range U(0, 2 pi); peak
10^U(5, 8.5) photons; flat floor 10^U(-5, -2) of the peak), the same gap.

    python benchmarks/unlike_data.py --n 6
    python benchmarks/unlike_data.py --n 6 --crystals analytic
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time

import numpy as np

SEED_BASE = 1_950_000_000
ANALYTIC_SEED_BASE = 17_000


def pattern(seed, gap, crystals="simulator"):
    from pynx_dlgap.simulate.gaps import cross
    rng = np.random.default_rng(seed)
    c = 32
    m = cross(gap, c - 3 - gap, c + 3).mask((64,) * 3)
    if crystals == "analytic":
        from pynx_dlgap.evaluate.analytic import analytic_crystal
        s = analytic_crystal(seed, 3, 64, phase_range=float(rng.uniform(0, 2 * np.pi)), log_peak=(5.0, 8.5),
                             floor=float(10 ** rng.uniform(-5, -2)))
        return s["intensity"], m
    from pynx_dlgap.simulate import simulate_3d
    s = simulate_3d(seed, (64,) * 3, "measured", gaps="none", crop_shift=[0, 0, 0],
                    peak=float(10 ** rng.uniform(7.5, 8.5)), floor=float(10 ** rng.uniform(-2.5, -1.5)),
                    crop=float(rng.uniform(2.5, 3.5)))
    return s["intensity"], m


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--gap", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs (default: finetune's)")
    ap.add_argument("--weights", default=None, help="inpainting weights (default: shipped)")
    ap.add_argument("--crystals", choices=["simulator", "analytic"], default="simulator",
                    help="simulator: the simulator pushed out of its training ranges (default); analytic: the "
                         "independent recipe of pynx_dlgap.evaluate.analytic")
    a = ap.parse_args(argv)
    base_seed = SEED_BASE if a.crystals == "simulator" else ANALYTIC_SEED_BASE
    import copy
    from pynx_dlgap.evaluate.metrics import gap_metrics
    from pynx_dlgap.inpaint.baselines import fill_loglinear
    from pynx_dlgap.inpaint.selfcheck import geometric_mean
    from pynx_dlgap.inpaint.infer import inpaint, load_inpaint_model
    from pynx_dlgap.training.finetune import finetune
    base, card = load_inpaint_model(a.weights)
    t0 = time.perf_counter()
    rows = []
    for i in range(a.n):
        I, m = pattern(base_seed + i, a.gap, a.crystals)
        seen = np.where(m, 0, I)  # what a user has: the gap is not measured
        fills = {"loglinear": fill_loglinear(seen, m), "dl": inpaint(seen, m, base, progress=False)}
        with contextlib.redirect_stdout(io.StringIO()):
            checked, info = inpaint(seen, m, base, progress=False, check=True, return_info=True)
        fills["self-check"] = checked
        model = copy.deepcopy(base)
        with contextlib.redirect_stdout(io.StringIO()):
            rep = finetune(seen, m, model, epochs=a.epochs, progress=False)
        fills["dl-finetuned"] = inpaint(seen, m, model, progress=False)
        sc = {k: gap_metrics(I, f, m, ssim=False) for k, f in fills.items()}
        better = "dl" if sc["dl"]["amp"] < sc["loglinear"]["amp"] else "loglinear"
        rows.append(dict(i=i, peak=float(I.max()), floor=float(np.median(I[:4, :4, :4])), scores=sc,
                         choice=info["method"], better=better, ft_seconds=rep["seconds"],
                         copies=info["check"]["ratios"], acf=info["check"].get("acf_ratio"),
                         mirror=info["check"].get("mirror_ratio"),
                         real=sc["dl"]["amp"] / sc["loglinear"]["amp"]))
        print(f"pattern {i}: peak {I.max():.3g}, self-check chose {info['method']}, better on the real gap: "
              f"{better}; fine-tuning {rep['seconds']:.0f} s", file=sys.stderr, flush=True)
    if a.crystals == "simulator":
        print(f"# patterns unlike the training data: {a.n} simulated 64^3 (seeds {SEED_BASE}+), peak 10^U(7.5,8.5) "
              f"photons, background floor 10^U(-2.5,-1.5) of the peak, crop U(2.5,3.5) (fringes to the edges); "
              f"{a.gap}-px gap cross near the peak")
    else:
        print(f"# patterns unlike the training data: {a.n} 64^3 crystals of the independent recipe "
              f"(pynx_dlgap.evaluate.analytic, seeds {ANALYTIC_SEED_BASE}+; binary supports, fringes to the edges), "
              f"phase range U(0,2pi), peak 10^U(5,8.5) photons, background floor 10^U(-5,-2) of the peak; "
              f"{a.gap}-px gap cross near the peak")
    print(f"# model sha256 {card['sha256'][:12]}; python {' '.join(sys.argv)}")
    print()
    meths = ["loglinear", "dl", "dl-finetuned", "self-check"]
    hdr = (f"{'pattern':8} {'peak':>8} " + " ".join(f"{m + ' amp':>17}" for m in meths) + f" {'choice':>10} {'right':>6}"
           f" {'real dl/ll':>10} {'mirror dl/ll':>12} {'acf dl/ll':>9} {'copies dl/ll (geomean; min-max)':>32}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['i']:8d} {r['peak']:8.2g} " + " ".join(f"{r['scores'][m]['amp']:17.4f}" for m in meths)
              + f" {r['choice']:>10} {'yes' if r['choice'] == r['better'] else 'no':>6} {r['real']:10.3f} "
              + (f"{r['mirror']:12.3f} " if r["mirror"] is not None else f"{'-':>12} ")
              + (f"{r['acf']:9.3f} " if r["acf"] is not None else f"{'-':>9} ")
              + (f"{geometric_mean(r['copies']):.3f}; {min(r['copies']):.3f}-{max(r['copies']):.3f}"
                 if r["copies"] else "no copies").rjust(32))
    print()
    hdr = f"{'mean over patterns':20} " + " ".join(f"{m:>13}" for m in meths)
    print(hdr)
    print("-" * len(hdr))
    for k in ("amp", "pcc_log", "mae_log"):
        print(f"{k:20} " + " ".join(f"{np.mean([r['scores'][m][k] for r in rows]):13.4f}" for m in meths))
    ok = sum(r["choice"] == r["better"] for r in rows)
    print(f"\n# the self-check chose the better fill (amplitude error on the real gap) on {ok} of {len(rows)} patterns")
    print("# real dl/ll: DL's amplitude error / log-linear's on the real gap; mirror dl/ll: the self-check's statistic "
          "since 0.7.11, the geometric mean of that ratio on the gap's mirror images through the Bragg peak (DL chosen "
          "where it is below 1; the ACF's where there is no image, '-'); acf dl/ll: the autocorrelation energy outside "
          "the crystal's support of the DL-filled pattern / the log-linear-filled one (the 0.7.10 rule chose DL where "
          "it was below 1); copies: the amplitude error ratio on the "
          "self-check's held-back copies (the 0.7.6-0.7.9 rule chose DL where their geometric mean was below 1)")
    print(f"# total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
