"""The main job, end to end: ``pynx-dlgap demo`` (what ``make demo`` runs).

1. a 3-D BCDI pattern: simulated (measured-like counts, a detector-gap cross),
   or the user's own (``--data``/``--mask``);
2. the gap filled with the DL inpainting model **after its self-check**
   (:mod:`pynx_dlgap.inpaint.selfcheck`): the model and log-linear interpolation
   fill the gap's mirror images through the Bragg peak, cut into measured data,
   and the one with the lower amplitude error there is used (``--no-check``: the model's fill whatever the check says;
   ``--method loglinear`` etc.: a classical fill);
3. phase retrieval with real PyNX (CPU backend, the harness chain of
   :mod:`pynx_dlgap.evaluate.phasing`) of the masked pattern and of the filled
   one from the same random start, and of the filled one from the DL phase
   start (``--no-dl-start`` skips it). The fill counts as data while PyNX's
   zero-mask phase would hold the gap at zero (the first 60 % of the RAAR cycles)
   and is masked after (``--fill-as release``, the default since 0.7.4;
   ``benchmarks/gap_start.py`` and ``benchmarks/gap_fill.py`` measure it), or as
   data for the whole chain (``--fill-as observed``, the behaviour before 0.7.4);
4. a CXI result (PyNX's own writer; of the two runs on the filled pattern, the
   one with the lower final LLK, as PyNX's runner ranks runs) and a
   PNG report of central slices; on a simulated pattern, errors against the true
   object for every run.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np


def add_cli(sub):
    p = sub.add_parser("demo", help="the main job: gap fill + PyNX phasing, CXI + PNG report",
                       description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--data", default=None, help="your pattern (.npy/.npz/.h5/.cxi); default: simulate one")
    p.add_argument("--mask", default=None, help="its mask (True/1 = not measured); required with --data")
    p.add_argument("--seed", type=int, default=7, help="simulation and phasing seed")
    p.add_argument("--size", type=int, default=64, help="simulated pattern size (cube)")
    p.add_argument("--gap", type=int, default=6, help="simulated gap width in pixels (a cross)")
    p.add_argument("--method", default="dl", help="gap fill: dl (default: the shipped DL model, self-checked "
                                                     "against log-linear), loglinear, logcubic, biharmonic, ...")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="with --method dl: skip the self-check (always use the model's fill)")
    p.add_argument("--fill-as", choices=["release", "observed"], default="release",
                   help="how the chain sees the filled voxels: as data until PyNX's zero-mask phase ends (60 %% "
                        "of the RAAR cycles), masked after (release, default), or as data throughout (observed)")
    p.add_argument("--no-dl-start", dest="dl_start", action="store_false",
                   help="skip the run from the DL phase start")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs in --out")
    p.set_defaults(func=lambda a: run_demo(**{k: getattr(a, k) for k in
                                              ("out", "data", "mask", "seed", "size", "gap", "method",
                                               "overwrite", "dl_start", "check", "fill_as")}))


def run_demo(out="out/demo", data=None, mask=None, seed=7, size=64, gap=6, method="dl",
             overwrite=False, dl_start=True, check=True, fill_as="release"):
    from ._checks import check_pattern
    from .data.io import check_output_path, load_mask, load_pattern, save_arrays
    from .evaluate.figures import slices_figure
    from .evaluate.metrics import gap_metrics
    from .evaluate.phasing import phase_pattern
    from .inpaint.baselines import get_baseline
    from .simulate import gaps as G

    if fill_as not in ("release", "observed"):
        raise ValueError(f"fill_as must be 'release' or 'observed', got {fill_as!r}")
    out = Path(out)
    files = {k: out / f for k, f in dict(pattern="pattern.npz", cxi="result.cxi", cxi_masked="result_masked.cxi",
                                         png="report.png", json="summary.json").items()}
    for f in files.values():
        check_output_path(f, [data, mask], overwrite)
    truth = None
    if data is None:
        from .simulate import simulate_3d
        # measured-like counts (high flux, sharp facets, fringes to the edges) without a
        # background floor: PyNX does not model a background, which would spoil phasing
        # whatever the gap fill (see README, benchmarks)
        s = simulate_3d(seed, (size,) * 3, "measured", floor=0.0, diffuse=0.0, phase_range=3.0)
        I, truth = s["intensity"], s["object"]
        c = size // 2
        lay = G.cross(gap, c - 3 - gap, c + 4)  # one arm beside the peak, one just past it
        m = lay.mask(I.shape)
        save_arrays(files["pattern"], {"data": np.where(m, 0, I).astype(np.float32), "mask": m,
                                       "truth_intensity": I, "truth_object": truth},
                    overwrite=overwrite)
        print(f"simulated a {size}^3 measured-like pattern (seed {seed}, peak {I.max():.3g} photons) "
              f"with a {gap}-px gap cross: {lay}")
    else:
        if mask is None:
            raise SystemExit("--data needs --mask (True/1 = not measured)")
        I = load_pattern(data)
        m = load_mask(mask, shape=I.shape)
    I, m = check_pattern(I, m, ndim=3)
    fill_info = {}
    if method == "dl":
        from .inpaint.infer import inpaint, load_inpaint_model
        model, _ = load_inpaint_model()  # before any work

        def fill(a, mm):
            f, inf = inpaint(a, mm, model, progress=False, check=check, return_info=True)
            fill_info.update(inf)
            return f
    else:
        fill = get_baseline(method)
    t0 = time.perf_counter()
    filled = fill(I, m)
    t_fill = time.perf_counter() - t0
    summary = dict(method=method, gap_voxels=int(m.sum()), fill_seconds=t_fill, fill_as=fill_as)
    if fill_info:
        summary.update(fill_used=fill_info["method"], self_check=fill_info.get("check"))
        if fill_info["method"] != method:  # the self-check chose the classical fill
            method = f"{fill_info['method']} (self-check)"
    if truth is not None:
        summary["gap_metrics"] = {k: float(v) for k, v in gap_metrics(I, filled, m).items()}
        print(f"{method} fill of {int(m.sum())} gap voxels in {t_fill:.2f} s: " +
              ", ".join(f"{k}={v:.4f}" for k, v in summary["gap_metrics"].items()))
    runs = {}
    rel = m if fill_as == "release" else None  # the filled voxels: data, then free after the zero-mask phase
    for name, (d, mm, rr) in {"masked": (I, m, None), method: (filled, None, rel)}.items():
        r = phase_pattern(d, mm, seed=seed, keep_cdi=True, release=rr)
        runs[name] = r
        print(f"PyNX phasing of the {name} pattern: LLK {r.llk:.3f} in {r.seconds:.1f} s")
    params = dict(program="pynx-dlgap demo", fill_method=method, fill_used=summary.get("fill_used", method),
                  gap_voxels=int(m.sum()),
                  fill_seconds=t_fill, fill_as=fill_as, phasing_chain="pynx_dlgap.evaluate.phasing.CHAIN_DEFAULT",
                  seed=seed)
    main = method
    if dl_start:
        from .phase.predict import predict_phase, start_object, support_from_object
        t0 = time.perf_counter()
        o0 = start_object(filled, predict_phase(filled, None))
        t_start = time.perf_counter() - t0
        # no detwinning after a DL start (it carries no twin mixture; see benchmarks/phase_basin.py)
        r = phase_pattern(filled, None, obj0=o0, support0=support_from_object(o0), keep_cdi=True,
                          chain=dict(detwin=False), release=rel)
        runs[f"{method}+dl-start"] = r
        if r.failed is None and (runs[method].failed is not None or r.llk < runs[method].llk):
            main = f"{method}+dl-start"
        params.update(dl_start_seconds=t_start)
        summary["dl_start_seconds"] = t_start
        print(f"PyNX phasing of the {method} pattern from the DL phase start ({t_start:.1f} s): LLK {r.llk:.3f} "
              f"in {r.seconds:.1f} s")
    summary["result_run"] = main
    print(f"result.cxi: the {main} run (lower final LLK of the runs on the filled pattern)")
    runs[main].cdi.save_obj_cxi(str(files["cxi"]), process_parameters=dict(params, start=main))
    runs["masked"].cdi.save_obj_cxi(str(files["cxi_masked"]), process_parameters=dict(params, fill_method="none"))
    errs, objs = {}, {}
    for name, r in runs.items():
        objs[name] = r.obj
        if truth is not None:
            from .evaluate.align import align_objects
            al = align_objects(r.obj, truth)
            objs[name] = al.obj
            errs[name] = {k: float(getattr(al, k)) for k in ("modulus_error", "phase_rms", "phase_max")}
            print(f"  {name:>10s}: " + ", ".join(f"{k}={v:.3f}" for k, v in errs[name].items()))
    if errs:
        summary["realspace"] = errs
    # report
    panels = [("measured (gaps=0)", np.where(m, 0, I), "log"), (f"filled ({method})", filled, "log")]
    sup = (np.abs(truth) > 0.5 * np.abs(truth).max()) if truth is not None else runs[method].support

    def zoom(a):  # real-space panels: the central half of the array, where the crystal is
        return a[tuple(slice(n // 4, n - n // 4) for n in a.shape)]

    mod = dict(group="modulus")
    if truth is not None:
        panels.append(("true modulus", zoom(np.abs(truth)), "modulus", mod))
    for name, o in objs.items():
        panels.append((f"modulus ({name})", zoom(np.abs(o)), "modulus", mod))
    if truth is not None:
        panels.append(("true phase", zoom(np.where(sup, np.angle(truth), np.nan)), "phase"))
    for name, o in objs.items():
        panels.append((f"phase ({name})", zoom(np.where(sup, np.angle(o), np.nan)), "phase"))
    text = json.dumps({k: v for k, v in summary.items() if k != "realspace"}, default=float)[:300]
    if errs:
        text = "\n".join(f"{n:>10s}: " + ", ".join(f"{k}={v:.3f}" for k, v in e.items()) for n, e in errs.items())
    slices_figure(panels, files["png"], title=f"pynx-dlgap demo: gap fill ({method}) + PyNX phasing",
                  text=text)
    summary["files"] = {k: str(v) for k, v in files.items()}
    files["json"].write_text(json.dumps(summary, indent=1, default=float))
    print(f"wrote {files['cxi']}, {files['cxi_masked']}, {files['png']}, {files['json']}")
    return 0
