"""``pynx-dlgap``: command-line entry point.

Subcommands::

    pynx-dlgap simulate out.h5 --dims 3 --n 200 --shape 64 64 64    # training/test data
    pynx-dlgap fill data.npz --mask mask.npz -o filled.npz            # classical gap fills
    pynx-dlgap demo --out out/demo                                    # the main job, end to end
    pynx-dlgap train --out runs/inpaint3d --steps 20000 --export w.safetensors   # train (resumable)
    pynx-dlgap inpaint data.npz --mask mask.npz -o filled.npz          # DL gap fill (trained weights, self-check)
    pynx-dlgap finetune data.npz --mask mask.npz -o mine.safetensors  # fine-tune on the measured pattern
    pynx-dlgap train-phase --out runs/phase3d --dims 3 --steps 4000    # train the phase model (resumable)
    pynx-dlgap phase data.npz --mask mask.npz --inpaint -o result.cxi  # DL start + PyNX refinement
"""
from __future__ import annotations

import argparse
import sys


def _add_fill(sub):
    p = sub.add_parser("fill", help="fill detector gaps with a classical method",
                       description="Fill the masked pixels (gaps, dead pixels) of a 2-D/3-D pattern "
                                   "with a classical method; measured pixels are returned bit-identical.")
    p.add_argument("data", help="pattern file (.npy, .npz, .h5, .cxi)")
    p.add_argument("--mask", required=True, help="mask file (True/1 = not measured)")
    p.add_argument("--data-key", default=None, help="array/dataset name of the pattern in its file")
    p.add_argument("--mask-key", default=None, help="array/dataset name of the mask in its file")
    p.add_argument("--method", default="loglinear",
                   choices=["loglinear", "logcubic", "biharmonic", "pynx_interp", "none"])
    p.add_argument("-o", "--output", required=True, help="output file (.npz, .npy, .h5)")
    p.add_argument("--png", default=None, help="also write a PNG of central slices before/after")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_run_fill)


def _run_fill(a):
    import time
    from .data.io import check_output_path, load_mask, load_pattern, save_arrays
    from .inpaint.baselines import get_baseline
    from ._checks import check_pattern
    iobs = load_pattern(a.data, a.data_key)
    mask = load_mask(a.mask, a.mask_key, iobs.shape)
    iobs, mask = check_pattern(iobs, mask)
    check_output_path(a.output, [a.data, a.mask], a.overwrite)
    t0 = time.perf_counter()
    filled = get_baseline(a.method)(iobs, mask)
    dt = time.perf_counter() - t0
    save_arrays(a.output, {"data": filled, "mask": mask}, inputs=[a.data, a.mask], overwrite=a.overwrite)
    print(f"filled {int(mask.sum())} masked pixels with {a.method} in {dt:.2f} s -> {a.output}")
    if a.png:
        from .evaluate.figures import slices_figure
        slices_figure([("input (masked=0)", (iobs * ~mask), "log"), ("mask", mask, "mask"),
                       (f"filled ({a.method})", filled, "log")], a.png, title=str(a.data))
        print(f"figure -> {a.png}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pynx-dlgap", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    from .simulate import add_cli as add_simulate
    add_simulate(sub)
    _add_fill(sub)
    from .demo import add_cli as add_demo
    add_demo(sub)
    from .training.trainer import add_cli as add_train
    add_train(sub)
    from .inpaint.infer import add_cli as add_inpaint
    add_inpaint(sub)
    from .training.finetune import add_cli as add_finetune
    add_finetune(sub)
    from .training.phase_trainer import add_cli as add_train_phase
    add_train_phase(sub)
    from .phase.cli import add_cli as add_phase
    add_phase(sub)
    return p


def main(argv=None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    from ._checks import PatternError
    from .models.weights import WeightsError
    from .pynx_backend import CUDAUnavailable, OpenCLUnavailable, PyNXUnavailable
    try:
        r = a.func(a)
    except (PatternError, FileNotFoundError, FileExistsError, KeyError, WeightsError, CUDAUnavailable,
            OpenCLUnavailable, PyNXUnavailable) as e:
        print(f"pynx-dlgap {a.command}: error: {e}", file=sys.stderr)
        return 2
    return int(r or 0)


if __name__ == "__main__":
    sys.exit(main())
