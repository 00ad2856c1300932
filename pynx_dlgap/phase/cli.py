"""``pynx-dlgap phase``: (optional DL gap fill) + DL phase start + PyNX refinement.

    pynx-dlgap phase data.npz [--mask mask.npz] [--inpaint] -o result.cxi [--png result.png]

Steps: load and check the pattern (centred layout, not fft-shifted; the model's box is
centred on the Bragg peak wherever it lies, and :mod:`pynx_dlgap.phase.predict` documents
patterns larger than the model), fill the
masked voxels with the DL inpainting model (``--inpaint``; otherwise they stay
free in PyNX; the fill counts as data until the end of PyNX's zero-mask phase and
is free after, ``--fill-as``), predict the reciprocal-space phase, start PyNX from
``IFT(sqrt(I) exp(i phi))`` and the support of its modulus, refine with the
harness chain (``--raar`` RAAR + ``--er`` ER, support updates; PyNX CPU
operators; no detwinning after a DL start, which carries no twin mixture and which
PyNX's ``DetwinRAAR`` was measured to degrade, ``benchmarks/phase_basin.py``; with
``--random-start``, detwinning as in PyNX) and write a CXI file (PyNX's ``save_obj_cxi``, with what the DL steps
did in its process information) and a PNG of modulus and phase slices.
``--random-start`` skips the DL start (PyNX random start), for comparison.

``--starts K`` refines K starts and keeps the run of lowest final LLK (as PyNX's
``nb_run_keep 1`` does): the DL start as predicted plus K-1 starts from the
prediction with a smooth random phase field of ``--start-noise`` rad RMS added
(2-px correlation, :func:`pynx_dlgap.phase.predict.smooth_noise`, seeded by
``--seed``); with ``--random-start``, K random starts (seeds ``--seed`` + k).
``benchmarks/phase_init.py --dl-k 5 --dl-noise 1.0`` measures it (``dl-best-of-5``).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

__all__ = ["add_cli", "run_phase"]


def add_cli(sub):
    from ..inpaint.infer import TRUST_HELP, trust_arg
    p = sub.add_parser("phase", help="DL phase start + PyNX refinement of a pattern (optionally DL gap fill first)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="centred pattern (.npy, .npz, .h5, .cxi), 2-D or 3-D")
    p.add_argument("--mask", default=None, help="mask file (True/1 = not measured)")
    p.add_argument("--data-key", default=None)
    p.add_argument("--mask-key", default=None)
    p.add_argument("--inpaint", action="store_true", help="fill the masked voxels with the DL inpainting model first")
    p.add_argument("--inpaint-weights", default=None, help="inpainting weights (default: shipped)")
    p.add_argument("--check", action=__import__("argparse").BooleanOptionalAction, default=True,
                   help="with --inpaint: self-check (default on) DL vs log-linear on the gap's mirror images "
                        "through the Bragg peak, keep the better fill")
    from ..inpaint.selfcheck import RULES
    p.add_argument("--check-rule", default=None, choices=list(RULES),
                   help="with --inpaint: the self-check's rule (default mirror; geomean: the shifted copies, "
                        "better on patterns like the training data; see pynx_dlgap.inpaint.selfcheck)")
    p.add_argument("--fill-as", choices=["estimate", "observed", "release"], default="release",
                   help="with --inpaint: the chain treats the filled voxels as observed intensities until the "
                        "zero-mask phase ends (60 %% of the RAAR cycles; PyNX would hold them at zero then) and "
                        "masks them after (release, the default since 0.7.4: the most successful DL starts in "
                        "benchmarks/gap_start.py), as PyNX estimated values (loose constraint on CUDA/OpenCL, "
                        "free on the CPU operators; the default before 0.7.4), or as observed intensities for "
                        "the whole chain (observed). The DL start uses the fill in every case")
    p.add_argument("--pynx", choices=["cpu", "opencl", "cuda"], default="cpu",
                   help="PyNX operator family of the refinement (default cpu; cuda on a GPU with pycuda)")
    p.add_argument("--weights", default=None, help="phase weights (default: shipped, for the pattern's dims)")
    p.add_argument("--random-start", action="store_true", help="no DL start: PyNX random start (comparison)")
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 for the DL models (inpainting: autocast; phase: a bf16 copy of the model; several times faster on GPUs and on CPUs with bf16 "
                        "instructions; elsewhere float32 with a warning; the CXI's bf16 says what ran; "
                        "benchmarks/phase_init.py --dl-precision fp32 bf16 compares)")
    p.add_argument("--tta", type=int, default=1,
                   help="with --inpaint: average the inpainting model over this many flip/transposition views of "
                        "each patch (1-16 in 3-D, 1-8 in 2-D; default 1; K times the model calls; "
                        "benchmarks/gap_fill.py --tta measures it)")
    p.add_argument("--tta-bright", type=int, default=1, metavar="K",
                   help="with --inpaint: test-time ensemble of K views for the bright patches only (log-linear "
                        "prefill >= --bright x the brightest measured pixel, beside the Bragg peak); default 1 = off")
    p.add_argument("--bright", type=float, default=0.01,
                   help="with --inpaint --tta-bright: fraction of the brightest measured pixel that makes a patch "
                        "bright (default 0.01)")
    p.add_argument("--trust", type=trust_arg, default="card", metavar="T", help="with --inpaint: " + TRUST_HELP)
    p.add_argument("--phase-tta", type=int, default=1, metavar="K",
                   help="test-time ensemble of the phase model over K of its 48 (2-D: 8) symmetric views, "
                        "aligned for twin and offset and averaged (K model calls; default 1; "
                        "benchmarks/phase_init.py --dl-tta measures it)")
    p.add_argument("--phase-bin", default="auto", metavar="B",
                   help="predict the phase on the pattern binned by B (one int, or one per axis as 2,2,1) and "
                        "interpolate it back to the full grid; 'auto' (default): from the pattern's estimated "
                        "oversampling, only for patterns at least 1.8 times the model's box (64^3 / 128^2) along an "
                        "axis; 1: never (pynx_dlgap.phase.binning)")
    p.add_argument("--device", default=None,
                   help="torch device of the DL models, e.g. cpu, cuda, cuda:1 (default: cuda when torch sees a GPU, "
                        "else cpu)")
    p.add_argument("--raar", type=int, default=600)
    p.add_argument("--er", type=int, default=200)
    p.add_argument("--seed", type=int, default=0, help="PyNX's random start / the perturbations' seed")
    p.add_argument("--starts", type=int, default=1, metavar="K",
                   help="refine K starts and keep the lowest final LLK: the DL start plus K-1 perturbed ones "
                        "(--start-noise), or K random starts with --random-start (1-64; default 1)")
    p.add_argument("--start-noise", type=float, default=1.0, metavar="RAD",
                   help="RMS (rad) of the smooth phase perturbation of DL starts 2..K (default 1.0)")
    p.add_argument("-o", "--output", required=True, help="result .cxi")
    p.add_argument("--png", default=None, help="figure (default: the output with .png)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run_phase)


def _dl_device(name):
    """The torch device of the DL models: ``name`` checked (a CUDA device must exist), or CUDA when
    torch sees a GPU, else the CPU."""
    import torch
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"--device: {e}") from None
    if dev.type == "cuda" and not (torch.cuda.is_available() and (dev.index or 0) < torch.cuda.device_count()):
        raise ValueError(f"--device {name}: torch sees {torch.cuda.device_count()} CUDA device(s)")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name}: use cpu or cuda[:N]")
    return dev


def run_phase(a):
    from pathlib import Path
    from .._checks import check_pattern
    from ..data.io import check_output_path, load_mask, load_pattern
    from ..evaluate.figures import slices_figure
    from .predict import load_phase_model, predict_phase, start_object, support_from_object
    iobs = load_pattern(a.data, a.data_key)
    mask = load_mask(a.mask, a.mask_key, iobs.shape) if a.mask else None
    iobs, mask = check_pattern(iobs, mask, allow_full_mask=False)
    out = Path(a.output)
    png = Path(a.png) if a.png else out.with_suffix(".png")
    inputs = [a.data] + ([a.mask] if a.mask else [])
    check_output_path(out, inputs, a.overwrite)
    check_output_path(png, inputs, a.overwrite)
    from ..inpaint.infer import check_bright
    from ..inpaint.tta import symmetry_views
    try:
        try:
            symmetry_views(iobs.ndim, a.tta)
        except ValueError as e:
            raise ValueError(f"--tta: {e}") from None
        check_bright(iobs.ndim, a.tta_bright, a.bright)
        if not 1 <= a.starts <= 64:
            raise ValueError(f"--starts must be 1-64, got {a.starts}")
        if not (np.isfinite(a.start_noise) and 0 <= a.start_noise <= 10):
            raise ValueError(f"--start-noise must be a phase RMS in [0, 10] rad, got {a.start_noise}")
        device = _dl_device(a.device)
        if not a.random_start:
            from .predict import phase_views
            try:
                phase_views(iobs.ndim, a.phase_tta)
            except ValueError as e:
                raise ValueError(f"--phase-tta: {e}") from None
            from .binning import resolve_bin
            try:
                phase_bin = resolve_bin(a.phase_bin, iobs.ndim)
            except ValueError as e:
                raise ValueError(f"--phase-bin: {e}") from None
    except ValueError as e:
        import sys
        print(f"pynx-dlgap phase: error: {e}", file=sys.stderr)
        return 2
    if a.pynx == "cuda":  # the backend is checked before any work (CUDAUnavailable / OpenCLUnavailable)
        from ..pynx_backend import init_pynx_cuda
        init_pynx_cuda()
    elif a.pynx == "opencl":
        from ..pynx_backend import init_pynx_opencl
        init_pynx_opencl()
    info = {"program": "pynx-dlgap phase", "data": str(a.data), "seed": a.seed, "chain_raar": a.raar,
            "chain_er": a.er, "bf16_requested": bool(a.bf16), "bf16": False, "dl_device": str(device)}
    model = imodel = None
    if not a.random_start:  # weights checked before any work
        model, card = load_phase_model(a.weights, iobs.ndim)
        info.update(dl_phase_weights_sha256=card["sha256"])
    if a.inpaint and mask.any():
        from ..inpaint.infer import inpaint, load_inpaint_model
        imodel, icard = load_inpaint_model(a.inpaint_weights)
        info.update(dl_inpaint_weights_sha256=icard["sha256"])
    I, m, est, rel = iobs, mask, None, None
    if imodel is not None:
        t0 = time.perf_counter()
        I, iinf = inpaint(iobs, mask, model=imodel, check=(a.check_rule or True) if a.check else False,
                          return_info=True, bf16=a.bf16, tta=a.tta, device=device,
                          trust=a.trust, tta_bright=a.tta_bright, bright=a.bright)
        info.update(dl_inpaint_fill=iinf["method"], dl_inpaint_tta=int(a.tta), bf16=bool(iinf.get("bf16", False)),
                    dl_inpaint_tta_bright=int(iinf["tta_bright"]), dl_inpaint_bright_patches=int(iinf["n_bright"]),
                    dl_inpaint_trust="off" if iinf["trust"] is None else float(iinf["trust"]))
        m = np.zeros_like(mask)
        est = mask if a.fill_as == "estimate" else None
        rel = mask if a.fill_as == "release" else None
        info.update(dl_inpaint_voxels=int(mask.sum()), dl_inpaint_seconds=time.perf_counter() - t0,
                    dl_inpaint_fill_as=a.fill_as)
        print(f"gap fill ({iinf['method']}): {int(mask.sum())} voxels in {info['dl_inpaint_seconds']:.1f} s")
    obj0 = sup0 = phase = None
    if model is not None:
        t0 = time.perf_counter()
        phase, pinf = predict_phase(I, m, model=model, return_info=True, bf16=a.bf16, device=device,
                                    tta=a.phase_tta, bin=phase_bin)
        obj0 = start_object(I, phase, m)
        sup0 = support_from_object(obj0)
        info.update(dl_phase_seconds=time.perf_counter() - t0, dl_phase_region_start=pinf["region_start"],
                    bf16=bool(pinf["bf16"] or info["bf16"]), dl_phase_tta=int(a.phase_tta),
                    dl_phase_region_shape=pinf["region_shape"], dl_support_points=int(sup0.sum()),
                    dl_phase_bin=pinf["bin"])
        binned = (f" of the pattern binned {'x'.join(map(str, pinf['bin']))} to {pinf['binned_shape']}"
                  if any(b > 1 for b in pinf["bin"]) else "")
        print(f"DL phase start in {info['dl_phase_seconds']:.2f} s (region {pinf['region_shape']} at "
              f"{pinf['region_start']}{binned}), support {int(sup0.sum())} voxels")
    r, obj0, kept, llks, failed = _refine(a, I, m, est, phase, obj0, sup0, rel)
    info.update(llk=r.llk, phasing_seconds=r.seconds, failed=r.failed or "", starts=int(a.starts),
                start_kept=int(kept), start_llks=[float(x) for x in llks], start_failed=[int(f) for f in failed])
    if a.starts > 1 and phase is not None:
        info.update(start_noise=float(a.start_noise))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        out.unlink()  # --overwrite checked above; PyNX appends otherwise
    r.cdi.save_obj_cxi(str(out), process_parameters={k: (json.dumps(v) if isinstance(v, list) else v)
                                                      for k, v in info.items()})
    panels = [("pattern log10(I+1)", np.where(m, 0, I), "log")]
    if obj0 is not None:
        panels += [("DL start modulus", np.abs(obj0), "modulus"),
                   ("DL start phase", np.angle(obj0) * (np.abs(obj0) > 0.2 * np.abs(obj0).max()), "phase")]
    sup = r.support
    panels += [("result modulus", np.abs(r.obj), "modulus"), ("result phase (in support)",
                                                             np.angle(r.obj) * sup, "phase")]
    slices_figure(panels, png, title=f"pynx-dlgap phase: {Path(a.data).name}")
    print(f"wrote {out} and {png}")
    return 1 if r.failed else 0


def _refine(a, I, m, est, phase, obj0, sup0, rel=None):
    """Run ``a.starts`` chains (the DL start + perturbed ones, or random starts) and keep the
    run of lowest final LLK among those that did not fail (the first one if all failed).
    Returns ``(result, start object of the kept run, its index, the final LLKs, failed flags)``."""
    from ..evaluate.phasing import phase_pattern
    from .predict import smooth_noise, start_object, support_from_object
    rng = np.random.default_rng(a.seed)
    best = None
    llks, failed = [], []
    for k in range(a.starts):
        o, sup, seed = obj0, sup0, a.seed
        if phase is None:
            seed = a.seed + k
        elif k > 0:
            phk = np.where(np.isfinite(phase), phase + smooth_noise(phase.shape, a.start_noise, 2.0, rng),
                           np.nan).astype(np.float32)
            o = start_object(I, phk, m)
            sup = support_from_object(o)
        r = phase_pattern(I, m, seed=seed, obj0=o, support0=sup, keep_cdi=True, estimate=est, backend=a.pynx,
                          chain=dict(n_raar=a.raar, n_er=a.er, detwin=o is None), release=rel)
        llks.append(r.llk)
        failed.append(r.failed is not None)
        what = ("random start" if phase is None else "DL start" if k == 0 else
                f"DL start + {a.start_noise:g} rad noise")
        print(f"PyNX refinement {k + 1}/{a.starts} ({what}; {a.raar} RAAR + {a.er} ER): LLK {r.llk:.4g} in "
              f"{r.seconds:.1f} s" + (f"; FAILED: {r.failed}" if r.failed else ""))
        ok = r.failed is None
        if best is None or (ok and (best[0].failed is not None or r.llk < best[0].llk)):
            best = (r, o, k)
        else:
            del r  # keep one PyNX CDI in memory at a time besides the best
    if a.starts > 1:
        print(f"kept run {best[2] + 1} of {a.starts} (lowest final LLK of the runs that did not fail)")
    return best[0], best[1], best[2], llks, failed
