"""DL phase start vs random starts, refined by the same PyNX chain.

For each strain level (Bragg phase range pi, 2 pi, 4 pi) it simulates ``--n``
held-out crystals (seeds from 1.9e9, disjoint from training and validation;
regime 'measured' but without background floor or diffuse scattering, which
PyNX does not model; no gaps), then prints, in one run:

(a) ``dl-only``: the DL prediction alone (start object ``IFT(sqrt(I) exp(i phi))``);
(b) ``dl+chain``: the DL start + support refined by the chain **without** PyNX's
    ``DetwinRAAR`` step (the DL start carries no twin mixture; detwinning, which
    halves the support for 10 cycles, was measured to drive even a true-phase start
    away: ``benchmarks/phase_basin.py``), and ``dl+chain+dt``: with it, as a check;
(b') with ``--dl-k K`` (K > 1): ``dl+noise``: K-1 further DL starts, the predicted phase
    plus a smooth random field of RMS ``--dl-noise`` rad (2-px correlation;
    :func:`pynx_dlgap.phase.predict.smooth_noise`), each refined like ``dl+chain``, and
    ``dl-best-of-K``: of the K DL runs (``dl+chain`` included), the one of lowest final
    LLK (the same selection and number of chains as ``best-of-k`` below);
(b'') with ``--dl-tta K``: ``dl-only-ttaK`` / ``dl+chain-ttaK``: the test-time ensemble of
    K of the 48 (2-D: 8) symmetric views the model was trained with (each view's
    phase mapped back, aligned on the first for twin and offset, phasors averaged:
    :func:`pynx_dlgap.phase.predict.view_phases`) as the one DL start; with
    ``--dl-views K``: ``dl-view``: views 2..K's own predictions as starts, and
    ``dl-bestview-K``: the lowest final LLK of those and ``dl+chain``;
(c) ``random``: ``--random`` random starts (PyNX ``InitObjRandom`` on the
    autocorrelation support, seeds 0..k-1) + the chain with detwinning (PyNX's
    default, which random starts need), each one counted, and
    ``best-of-k``: the one of lowest final LLK;
(d) with ``--truth-start``: ``truth+chain``: the true reciprocal phase (``angle(cFT(object))``) as the
    start, refined like ``dl+chain``: what the chain itself can reach on these crystals.

``--crystals analytic`` replaces the simulator's held-out crystals with those of the independent
recipe :mod:`pynx_dlgap.evaluate.analytic` (ellipsoids, cylinders, rounded cubes, octahedra with binary
supports and other strain fields; seeds from 7000; no background, no gaps): crystals unlike the
models' training data.

Chain (PyNX CPU operators, :func:`pynx_dlgap.evaluate.phasing.phase_pattern`):
``--raar`` RAAR + ``--er`` ER cycles, support update every 50, detwin, zero-mask auto.
Scores after sub-pixel alignment with offset, ramp and twin removed
(:func:`pynx_dlgap.evaluate.align.object_errors`): success = phase RMS inside the
true support < 0.3 rad **and** modulus error < ``--mod-bound`` (0.3); final LLK
(Poisson, normalised); iterations to reach within 5 % of the final LLK; seconds.

    python benchmarks/phase_init.py --dims 3 --n 10 --random 5 --workers 2
    python benchmarks/phase_init.py --dims 2 --n 10 --random 5
    python benchmarks/phase_init.py --dims 3 --n 10 --random 0 --dl-precision fp32 bf16   # DL step cost
    python benchmarks/phase_init.py --dims 3 --crystals analytic --n 10 --random 5 --dl-k 5 --truth-start

``--dl-precision fp32 bf16`` runs the DL step (and its dl+chain) in both precisions on
the same crystals and prints the DL step's share of the dl+chain time for each, and
how far the bf16 prediction is from the fp32 one. ``fp32-plain`` is float32 with
PyTorch's own choice of convolution kernel (``models/fastconv.plain_convolutions``),
the baseline of the oneDNN path the models take for CPU inference.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time

import numpy as np

SEED_BASE = 1_900_000_000
ANALYTIC_SEED_BASE = 7_000
_MODELS = {}
LEVELS = (("pi", math.pi), ("2pi", 2 * math.pi), ("4pi", 4 * math.pi))


def crop_shift_of(seed, dims, k):
    """The crop shift (px per axis, uniform in [-k, k]) of crystal ``seed`` with ``--crop-shift k``."""
    if not k:
        return [0] * dims
    return [int(v) for v in np.random.default_rng([seed, 77]).integers(-k, k + 1, dims)]


def crystal(dims, seed, level, crystals="simulator", crop_shift=0):
    """Held-out crystal ``seed`` at phase range ``level``; ``crop_shift`` k > 0: its pattern cropped
    with the Bragg peak up to k px off the array centre along each axis (:func:`crop_shift_of`;
    the simulator's knob: the object carries the matching phase ramp)."""
    n = 64 if dims == 3 else 128
    if crystals == "analytic":  # the independent recipe: not the simulator the models were trained on
        if crop_shift:
            raise ValueError("--crop-shift needs the simulator's crystals")
        from pynx_dlgap.evaluate.analytic import analytic_crystal
        return analytic_crystal(seed, dims, n, level)
    from pynx_dlgap.simulate.pipeline import simulate
    return simulate(seed, dims, (n,) * dims, "measured", dict(phase_range=level, floor=0.0, diffuse=0.0,
                                                              gaps="none",
                                                              crop_shift=crop_shift_of(seed, dims, crop_shift)))


def iters_to_5pct(hist, final):
    for it, llk in hist:
        if abs(llk - final) <= 0.05 * abs(final):
            return it
    return hist[-1][0] if hist else 0


def one_case(args):
    """All runs of one crystal: returns a list of row dicts."""
    (dims, seed, lname, level, n_random, chain, weights, mod_bound, random_detwin, dl_k, dl_noise, precisions,
     ttas, n_views, crystals, truth_start, centres, crop_shift) = args
    import torch
    torch.set_num_threads(1)
    from pynx_dlgap.evaluate.align import object_errors
    from pynx_dlgap.evaluate.phasing import phase_pattern
    from pynx_dlgap.models.fastconv import plain_convolutions
    from pynx_dlgap.phase.inputs import phase_input
    from pynx_dlgap.phase.predict import load_phase_model, predict_phase, start_object, support_from_object
    s = crystal(dims, seed, level, crystals, crop_shift)
    I, m = s["intensity"], s["mask"] | s["dead"]
    if (weights, dims) not in _MODELS:  # once per worker process
        _MODELS[(weights, dims)] = load_phase_model(weights, dims)[0]
    model = _MODELS[(weights, dims)]
    rows = []

    def score(name, obj, llk=np.nan, it=np.nan, sec=np.nan, start=None, failed=None):
        e = object_errors(obj, s["object"], s["support"])
        ok = (failed is None) and e["phase_rms"] < 0.3 and e["modulus_error"] < mod_bound
        rows.append(dict(level=lname, seed=seed, method=name, phase_rms=e["phase_rms"],
                         modulus_error=e["modulus_error"], success=float(ok), llk=llk, iters=it, seconds=sec,
                         start=start))
    runs = {}  # (precision, centre) -> (phase, start object, support, chain result, dl+chain row)
    variants = [(p, centres[0]) for p in precisions] + [(precisions[0], c) for c in centres[1:]]
    for prec, centre in variants:
        sfx = ("" if prec == "fp32" else f"-{prec}") + ("" if centre == centres[0] else f"-{centre}")
        t0 = time.perf_counter()
        with plain_convolutions() if prec == "fp32-plain" else contextlib.nullcontext():
            ph_p = predict_phase(I, m, model=model, bf16=prec == "bf16", centre=centre)
        o_p = start_object(I, ph_p, m)
        sup_p = support_from_object(o_p)
        t_dl = time.perf_counter() - t0
        score("dl-only" + sfx, o_p, sec=t_dl)
        if runs and centre == centres[0]:  # the prediction's difference from the first precision's, weighted as the loss
            ph0 = runs[variants[0]][0]
            both = np.isfinite(ph_p) & np.isfinite(ph0)
            w = np.where(both, phase_input(I, m)[0], 0).astype(np.float64)
            d = np.angle(np.exp(1j * (np.where(both, ph_p, 0).astype(np.float64) - np.where(both, ph0, 0))))
            rows[-1]["pred_diff"] = float(np.sqrt(np.sum(w * d ** 2) / np.sum(w)))
        r = phase_pattern(I, m, obj0=o_p, support0=sup_p, chain=dict(chain, detwin=False))
        score("dl+chain" + sfx, r.obj, r.llk, iters_to_5pct(r.llk_history, r.llk), r.seconds + t_dl,
              failed=r.failed)
        rows[-1]["dl_seconds"] = t_dl
        runs[(prec, centre)] = (ph_p, o_p, sup_p, r, dict(rows[-1]))
    ph, o0, sup0, r, row0 = runs[variants[0]]  # the first precision (and centre) feeds dl+noise and dl+chain+dt
    for K in ttas:  # test-time ensemble of K symmetric views: one start
        t0 = time.perf_counter()
        ph_t = predict_phase(I, m, model=model, tta=K, centre=centres[0])
        o_t = start_object(I, ph_t, m)
        sup_t = support_from_object(o_t)
        t_dl = time.perf_counter() - t0
        score(f"dl-only-tta{K}", o_t, sec=t_dl)
        rt = phase_pattern(I, m, obj0=o_t, support0=sup_t, chain=dict(chain, detwin=False))
        score(f"dl+chain-tta{K}", rt.obj, rt.llk, iters_to_5pct(rt.llk_history, rt.llk), rt.seconds + t_dl,
              failed=rt.failed)
        rows[-1]["dl_seconds"] = t_dl
    def best_of(starts, each, best_name):
        """Refine each start phase like dl+chain (rows ``each``), then a ``best_name`` row: the run of
        lowest final LLK among them and dl+chain (the same selection as best-of-k below)."""
        best_run = (r.llk, row0) if r.failed is None else None
        for phk in starts:
            o_k = start_object(I, phk, m)
            rk = phase_pattern(I, m, obj0=o_k, support0=support_from_object(o_k), chain=dict(chain, detwin=False))
            score(each, rk.obj, rk.llk, iters_to_5pct(rk.llk_history, rk.llk), rk.seconds, failed=rk.failed)
            if rk.failed is None and (best_run is None or rk.llk < best_run[0]):
                best_run = (rk.llk, dict(rows[-1]))
        b = dict(best_run[1]) if best_run is not None else dict(rows[-1], success=0.0)
        b["method"] = best_name
        rows.append(b)

    if n_views > 1:  # each symmetric view's own prediction as a start
        from pynx_dlgap.phase.predict import view_phases
        # the held-out patterns have the model's input shape: the box is the whole pattern
        views = view_phases(model, I, m, "cpu", False, n_views)
        best_of((v.astype(np.float32) for v in views[1:]), "dl-view", f"dl-bestview-{n_views}")
    if dl_k > 1:
        from pynx_dlgap.phase.predict import smooth_noise
        rng = np.random.default_rng(seed)
        ok = np.isfinite(ph)
        best_of((np.where(ok, ph + smooth_noise(ph.shape, dl_noise, 2.0, rng), np.nan).astype(np.float32)
                 for _ in range(dl_k - 1)), "dl+noise", f"dl-best-of-{dl_k}")
    if truth_start:  # the chain's ceiling on this crystal: the true reciprocal phase as the start
        from pynx_dlgap.simulate.diffraction import cfft
        ph_t = np.angle(cfft(s["object"])).astype(np.float32)
        o_t = start_object(I, ph_t, m)
        rt = phase_pattern(I, m, obj0=o_t, support0=support_from_object(o_t), chain=dict(chain, detwin=False))
        score("truth+chain", rt.obj, rt.llk, iters_to_5pct(rt.llk_history, rt.llk), rt.seconds, failed=rt.failed)
    r = phase_pattern(I, m, obj0=o0, support0=sup0, chain=dict(chain, detwin=True))
    score("dl+chain+dt", r.obj, r.llk, iters_to_5pct(r.llk_history, r.llk), r.seconds + row0["dl_seconds"],
          failed=r.failed)
    best = None
    for k in range(n_random):
        r = phase_pattern(I, m, seed=k, chain=dict(chain, detwin=random_detwin))
        score("random", r.obj, r.llk, iters_to_5pct(r.llk_history, r.llk), r.seconds, failed=r.failed)
        if r.failed is None and (best is None or r.llk < best[0]):
            best = (r.llk, dict(rows[-1]))
    if best is not None:
        b = best[1]
        b["method"] = f"best-of-{n_random}"
        rows.append(b)
    elif n_random:
        rows.append(dict(level=lname, seed=seed, method=f"best-of-{n_random}", phase_rms=np.nan,
                         modulus_error=np.nan, success=0.0, llk=np.nan, iters=np.nan, seconds=np.nan))
    return rows


def run_cases(fn, jobs, workers):
    """``fn(job)`` for every job (each returns a list of rows), in ``workers`` spawned processes; all rows."""
    from tqdm import tqdm
    rows = []
    if workers > 1:
        import multiprocessing as mp
        with mp.get_context("spawn").Pool(workers) as pool:
            for r in tqdm(pool.imap_unordered(fn, jobs), total=len(jobs), desc="crystals"):
                rows += r
    else:
        for j in tqdm(jobs, desc="crystals"):
            rows += fn(j)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dims", type=int, default=3, choices=(2, 3))
    ap.add_argument("--n", type=int, default=10, help="crystals per strain level")
    ap.add_argument("--random", type=int, default=5, help="random starts per crystal")
    ap.add_argument("--raar", type=int, default=300)
    ap.add_argument("--er", type=int, default=100)
    ap.add_argument("--support-threshold", type=float, default=0.25,
                    help="SupportUpdate threshold (relative to the RMS modulus) of the chain; 0.25 = PyNX's default")
    ap.add_argument("--mod-bound", type=float, default=0.3, help="modulus error bound for success")
    ap.add_argument("--weights", default=None, help="phase weights (default: the shipped ones)")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2)))
    ap.add_argument("--levels", nargs="+", default=[n for n, _ in LEVELS])
    ap.add_argument("--dl-k", type=int, default=1, help="DL runs per crystal: the DL start + K-1 perturbed ones")
    ap.add_argument("--dl-noise", type=float, default=1.0, help="RMS (rad) of the smooth perturbations (--dl-k)")
    ap.add_argument("--dl-precision", nargs="+", choices=["fp32", "bf16", "fp32-plain"], default=["fp32"],
                    help="precisions of the DL step, each with its dl-only and dl+chain rows (bf16: bfloat16 "
                         "autocast, channels-last; rows '-bf16'; fp32-plain: float32 with PyTorch's own choice "
                         "of convolution kernel instead of oneDNN for all (models/fastconv.py), the baseline "
                         "of that speed-up); the first one's start feeds dl+noise and dl+chain+dt")
    ap.add_argument("--dl-tta", type=int, nargs="+", default=[], metavar="K",
                    help="also the test-time ensemble of K symmetric views (rows dl-only-ttaK, dl+chain-ttaK)")
    ap.add_argument("--dl-views", type=int, default=1, metavar="K",
                    help="also K starts from K symmetric views' own predictions (rows dl-view: views 2..K; "
                         "dl-bestview-K: the lowest final LLK of them and dl+chain)")
    ap.add_argument("--crystals", choices=["simulator", "analytic"], default="simulator",
                    help="simulator: pynx_dlgap.simulate's held-out crystals (default); analytic: the independent "
                         "recipe of pynx_dlgap.evaluate.analytic (binary supports, other shapes and strain "
                         "fields, seeds from %d), crystals unlike the training data" % ANALYTIC_SEED_BASE)
    from pynx_dlgap.phase.predict import CENTRES
    ap.add_argument("--dl-centre", nargs="+", choices=CENTRES, default=[CENTRES[0]],
                    help="where the model's box sits (predict_phase(centre=)): peak (default since 0.7.14: centred "
                         "on the Bragg peak), array (centred on the array, the rule up to 0.7.13); each with its "
                         "dl-only and dl+chain rows (suffix '-array' etc. after the first)")
    ap.add_argument("--crop-shift", type=int, default=0, metavar="K",
                    help="crop each crystal's pattern with the Bragg peak up to K px off the array centre per "
                         "axis (uniform, seeded per crystal; the simulator's crop_shift knob): a pattern centred "
                         "by hand or on its centre of mass rather than on the peak")
    ap.add_argument("--truth-start", action="store_true",
                    help="also a row truth+chain: the true reciprocal phase as the start, refined like dl+chain "
                         "(what the chain can reach on these crystals)")
    ap.add_argument("--random-detwin", choices=["on", "off"], default="on",
                    help="PyNX's DetwinRAAR in the random starts' chain (default on, as PyNX)")
    a = ap.parse_args(argv)
    from pynx_dlgap.precision import bf16_native
    if "bf16" in a.dl_precision and not bf16_native("cpu"):
        a.dl_precision = [p for p in a.dl_precision if p != "bf16"] or ["fp32"]
        print("# bf16 rows left out: this CPU has no native bfloat16 (AVX512-BF16/AMX; pynx_dlgap.precision)")
    chain = dict(n_raar=a.raar, n_er=a.er, support_threshold=a.support_threshold)
    base = SEED_BASE if a.crystals == "simulator" else ANALYTIC_SEED_BASE
    jobs = [(a.dims, base + 1000 * j + i, name, lev, a.random, chain, a.weights, a.mod_bound,
             a.random_detwin == "on", a.dl_k, a.dl_noise, tuple(dict.fromkeys(a.dl_precision)),
             tuple(dict.fromkeys(a.dl_tta)), a.dl_views, a.crystals, a.truth_start,
             tuple(dict.fromkeys(a.dl_centre)), a.crop_shift)
            for j, (name, lev) in enumerate(LEVELS) if name in a.levels for i in range(a.n)]
    t0 = time.perf_counter()
    rows = run_cases(one_case, jobs, a.workers)
    from pynx_dlgap.phase.predict import read_phase_card
    card = read_phase_card(a.weights, a.dims)
    shape = "64^3" if a.dims == 3 else "128x128"
    if a.crystals == "simulator":
        print(f"# phase-init benchmark, {a.dims}-D {shape}: {a.n} held-out crystals per level (seeds {SEED_BASE}+), "
              f"regime 'measured' without floor/diffuse, no gaps"
              + (f"; cropped with the Bragg peak up to {a.crop_shift} px off the array centre per axis"
                 if a.crop_shift else ""))
    else:
        print(f"# phase-init benchmark, {a.dims}-D {shape}: {a.n} crystals per level from the independent recipe "
              f"(pynx_dlgap.evaluate.analytic, seeds {ANALYTIC_SEED_BASE}+; kinds cycle ellipsoid / cylinder / "
              f"super-ellipsoid / octahedron; binary supports; Poisson noise, no background, no gaps)")
    print(f"# chain: {a.raar} RAAR + {a.er} ER (PyNX CPU operators, support update every 50, threshold "
          f"{a.support_threshold:g}; detwin for dl+chain+dt"
          f"{' and random starts' if a.random_detwin == 'on' else ''}, not for dl+chain"
          f"{'' if a.random_detwin == 'on' else ' nor random starts'}); "
          f"success: phase RMS < 0.3 rad and modulus error < {a.mod_bound}")
    print(f"# weights: sha256 {card['sha256'][:12]}, {card['n_params']:,} params; python {' '.join(sys.argv)}")
    if a.dl_k > 1:
        print(f"# dl+noise: DL phase + smooth noise of RMS {a.dl_noise} rad (2-px correlation), no detwin")
    print()
    hdr = f"{'level':6} {'method':19} {'success':>8} {'phase_rms':>9} {'mod_err':>8} {'llk':>9} {'iters5%':>8} " \
          f"{'seconds':>8} {'n':>4}"
    print(hdr)
    print("-" * len(hdr))
    precs = list(dict.fromkeys(a.dl_precision))
    sfx = ["" if p == "fp32" else f"-{p}" for p in precs]
    csfx = [f"-{c}" for c in list(dict.fromkeys(a.dl_centre))[1:]]
    tt = list(dict.fromkeys(a.dl_tta))
    methods = ([f"dl-only{x}" for x in sfx + csfx] + [f"dl-only-tta{k}" for k in tt]
               + [f"dl+chain{x}" for x in sfx + csfx]
               + [f"dl+chain-tta{k}" for k in tt] + ["dl+noise", f"dl-best-of-{a.dl_k}", "dl-view",
                                                     f"dl-bestview-{a.dl_views}", "truth+chain", "dl+chain+dt",
                                                     "random",
                                                     f"best-of-{a.random}"])
    for name, _ in LEVELS:
        if name not in a.levels:
            continue
        for meth in methods:
            rr = [r for r in rows if r["level"] == name and r["method"] == meth]
            if not rr:
                continue
            def f(k):
                v = np.array([r[k] for r in rr], float)
                return np.median(v[np.isfinite(v)]) if np.isfinite(v).any() else np.nan
            print(f"{name:6} {meth:19} {np.mean([r['success'] for r in rr]):8.2f} {f('phase_rms'):9.3f} "
                  f"{f('modulus_error'):8.3f} {f('llk'):9.3g} {f('iters'):8.0f} {f('seconds'):8.2f} {len(rr):4d}")
        print()
    for p, x in zip(precs, sfx):
        sh = [r["dl_seconds"] / r["seconds"] for r in rows if r["method"] == f"dl+chain{x}"]
        dt = [r["dl_seconds"] for r in rows if r["method"] == f"dl+chain{x}"]
        print(f"# DL step {p} (prediction + start object, CPU, 1 thread per worker) = {100 * np.mean(sh):.1f} % "
              f"of the dl+chain time (mean; median {100 * np.median(sh):.1f} %), {np.median(dt):.2f} s (median)")
    for k in tt:
        sh = [r["dl_seconds"] / r["seconds"] for r in rows if r["method"] == f"dl+chain-tta{k}"]
        print(f"# DL step with {k} views = {100 * np.mean(sh):.1f} % of the dl+chain-tta{k} time (mean)")
    for x in sfx[1:]:
        d = [r["pred_diff"] for r in rows if r["method"] == f"dl-only{x}"]
        print(f"# prediction {x[1:]} vs {precs[0]}: weighted RMS phase difference median {np.median(d):.3f} rad, "
              f"max {np.max(d):.3f} rad (weights: the normalised log-intensity, as the loss)")
    print("# success = share of runs; phase_rms, mod_err, llk, iters5%, seconds = medians")
    print(f"# total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
