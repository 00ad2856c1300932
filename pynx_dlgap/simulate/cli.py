"""``pynx-dlgap simulate``: write an HDF5 dataset of simulated samples."""
from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_cli", "run_simulate"]

_EPILOG = """\
examples:
  pynx-dlgap simulate train2d.h5 --dims 2 --n 1000 --shape 128 128 --seed 0
  pynx-dlgap simulate train3d.h5 --dims 3 --n 200 --shape 64 64 64 --regime measured --workers 2
  pynx-dlgap simulate strained.h5 --dims 3 --n 100 --knob phase_range=12.57 --knob gaps='"cross"'

Run the same command again to resume an interrupted file (or with a larger --n to
append). Knob values are JSON (numbers, true/false, lists, "strings"); bare words
are taken as strings. Knobs: see pynx_dlgap.simulate.knobs.KNOB_DOC.
"""


def _knob(s: str):
    if "=" not in s:
        raise argparse.ArgumentTypeError(f"--knob expects KEY=VALUE, got {s!r}")
    k, v = s.split("=", 1)
    try:
        v = json.loads(v)
    except json.JSONDecodeError:
        pass  # a bare word: a string
    return k.strip(), v


def _regime(s: str):
    try:
        return float(s)
    except ValueError:
        return s


def add_cli(subparsers) -> argparse.ArgumentParser:
    """Register the ``simulate`` subcommand on an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "simulate", help="write an HDF5 dataset of simulated BCDI patterns",
        description="Simulate 2-D/3-D BCDI samples (intensity, gap mask, object, reciprocal-space "
                    "phase label, support) into a chunked, compressed HDF5 file, in parallel, resumable.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="output HDF5 file (.h5)")
    p.add_argument("--dims", type=int, choices=(2, 3), default=3)
    p.add_argument("--n", type=int, default=100, help="number of samples (default 100)")
    p.add_argument("--shape", type=int, nargs="+", default=None,
                   help="pattern shape (default 128 128 in 2-D, 64 64 64 in 3-D)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--regime", type=_regime, default="mixed",
                   help="textbook | measured | mixed (default) | a number r in [0, 1]")
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    p.add_argument("--compression", default="gzip", choices=("gzip", "lzf", "zstd", "blosc", "none"))
    p.add_argument("--knob", type=_knob, action="append", default=[], metavar="KEY=VALUE",
                   help="fix a knob for every sample (repeatable)")
    p.add_argument("--keys", nargs="+", default=None,
                   help="arrays to store (default: intensity mask dead object phase support)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file instead of resuming")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_simulate)
    return p


def run_simulate(a) -> int:
    """Run the ``simulate`` subcommand from parsed arguments; returns an exit status."""
    import time

    import numpy as np

    from .dataset import ARRAY_KEYS, dataset_info, iter_samples, write_dataset

    knobs = dict(a.knob)
    shape = tuple(a.shape) if a.shape else None
    if shape is not None and len(shape) == 1:
        shape = shape * a.dims
    t0 = time.perf_counter()
    try:
        write_dataset(a.out, a.n, dims=a.dims, shape=shape, seed=a.seed, workers=a.workers,
                      regime=a.regime, compression=None if a.compression == "none" else a.compression,
                      progress=not a.no_progress, overwrite=a.overwrite,
                      keys=tuple(a.keys) if a.keys else ARRAY_KEYS, **knobs)
    except ValueError as e:  # KnobError included
        print(f"pynx-dlgap simulate: error: {e}", file=sys.stderr)
        return 2
    dt = time.perf_counter() - t0
    info = dataset_info(a.out)
    st = [s["params"]["stats"] for s in iter_samples(a.out, keys=())]
    gt100 = np.median([s["frac_gt_100"] for s in st]) if st else float("nan")
    lt1 = np.median([s["frac_lt_1"] for s in st]) if st else float("nan")
    print(f"{info['n_done']}/{info['n']} samples of shape {tuple(info['shape'])} in {a.out} "
          f"({dt:.1f} s this run); median fraction of pixels > 100 photons {gt100:.2f}, < 1 photon {lt1:.2f}")
    return 0
