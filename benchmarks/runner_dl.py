"""``pynx-cdi-id01-dl`` with and without the DL flags, on simulated ID01-like scans.

For each of ``--n`` held-out crystals (64^3, regime 'measured' without floor or
diffuse scattering, phase range ``--phase-range``) it writes the scan as
``scan.npz`` and a ``--gap``-px cross as ``mask.npz``, then runs, in one process
each, with PyNX's CPU backend (``PYNX_PU=cpu``; ``--pynx-pu cuda`` on a GPU machine) and
PyNX's default chain:

* ``plain``: ``pynx-cdi-id01-dl --data scan.npz --mask mask.npz`` (= ``pynx-cdi-id01``);
* each variant of ``--variants`` (default: ``--dl-inpaint``; ``--dl-inpaint --dl-phase-init``).

The ``latest.cxi`` object (PyNX crops it around its support) is padded back to
64^3 and compared with the true object after sub-pixel alignment, offset, ramp
and twin removal: phase RMS inside the true support (rad) and modulus error.

    python benchmarks/runner_dl.py --n 4
    python benchmarks/runner_dl.py --n 12 --pynx-pu cuda --jobs 6     # on a GPU machine
    python benchmarks/runner_dl.py --n 4 --variants " --dl-inpaint --dl-inpaint-check off"
    (a variant starting with "--" needs a leading space, or argparse reads it as an option)

Each run's directory also holds ``nofree.npz``, an all-False 64^3 ``free_pixel_mask``:
``--roi full --free_pixel_mask nofree.npz`` in a variant runs without PyNX's free-LLK
pixel islands (5 % of the voxels in islands of radius 3, which PyNX's CPU operators hold
at zero during the zero-mask phase like masked pixels; its OpenCL/CUDA kernels leave
them free).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SEED_BASE = 1_980_000_000


def _pad_to(a, shape):
    out = np.zeros(shape, a.dtype)
    src, dst = [], []
    for n, N in zip(a.shape, shape):
        if n >= N:
            lo = (n - N) // 2
            src.append(slice(lo, lo + N))
            dst.append(slice(0, N))
        else:
            lo = (N - n) // 2
            src.append(slice(0, n))
            dst.append(slice(lo, lo + n))
    out[tuple(dst)] = a[tuple(src)]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--gap", type=int, default=6)
    ap.add_argument("--phase-range", type=float, default=3.0)
    ap.add_argument("--variants", nargs="+", default=["--dl-inpaint", "--dl-inpaint --dl-phase-init"])
    ap.add_argument("--pynx-pu", default="cpu", choices=["cpu", "cuda", "opencl"],
                    help="PyNX backend of the runs (PYNX_PU)")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time (separate processes)")
    a = ap.parse_args(argv)
    import h5py
    from pynx_dlgap.evaluate.align import object_errors
    from pynx_dlgap.simulate.gaps import cross
    from pynx_dlgap.simulate.pipeline import simulate
    env = dict(os.environ, PYNX_PU=a.pynx_pu)
    variants = [("plain", [])] + [(v.strip(), v.split()) for v in a.variants]
    res = {name: [None] * a.n for name, _ in variants}
    t0 = time.perf_counter()
    crystals = []
    for i in range(a.n):
        s = simulate(SEED_BASE + i, 3, (64,) * 3, "measured", dict(floor=0.0, diffuse=0.0, gaps="none",
                                                                    crop_shift=[0, 0, 0],
                                                                    phase_range=a.phase_range))
        crystals.append((s["intensity"], s["object"], s["support"]))
    m = cross(a.gap, 28 - a.gap, 36).mask((64,) * 3)

    def one(i, name, flags):
        I, obj_true, sup_true = crystals[i]
        with tempfile.TemporaryDirectory() as d:
            np.savez(Path(d) / "scan.npz", data=np.where(m, 0, I).astype(np.float32))
            np.savez(Path(d) / "mask.npz", mask=m.astype(np.int8))
            np.savez(Path(d) / "nofree.npz", free_pixel_mask=np.zeros(m.shape, bool))
            t1 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "pynx_dlgap.runner", "--data", "scan.npz", "--mask",
                                "mask.npz"] + flags, cwd=d, env=env, capture_output=True, text=True)
            dt = time.perf_counter() - t1
            if r.returncode != 0 or not (Path(d) / "latest.cxi").exists():
                print(f"crystal {i} {name}: FAILED {r.stderr[-300:]}", file=sys.stderr)
                return i, name, (np.nan, np.nan, dt)
            with h5py.File(Path(d) / "latest.cxi", "r") as f:
                obj = f["entry_1/data_1/data"][()]
        e = object_errors(_pad_to(obj, (64,) * 3), obj_true, sup_true)
        print(f"crystal {i} {name:30s} phase RMS {e['phase_rms']:.3f} modulus error {e['modulus_error']:.3f} "
              f"({dt:.0f} s)", file=sys.stderr)
        return i, name, (e["phase_rms"], e["modulus_error"], dt)

    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max(1, a.jobs)) as ex:
        for i, name, r in ex.map(lambda t: one(*t), [(i, n, f) for i in range(a.n) for n, f in variants]):
            res[name][i] = r
    print(f"# pynx-cdi-id01-dl with/without DL flags: {a.n} held-out 64^3 crystals (seeds {SEED_BASE}+), "
          f"{a.gap}-px cross gap, phase range {a.phase_range} rad, PyNX {a.pynx_pu} backend, PyNX's default chain, "
          f"{a.jobs} run(s) at a time")
    print(f"# python {' '.join(sys.argv)}")
    print()
    hdr = f"{'flags':32} {'phase_rms mean':>15} {'median':>8} {'mod_err mean':>13} {'seconds':>8}"
    print(hdr)
    print("-" * len(hdr))
    for name, _ in variants:
        v = np.array(res[name], dtype=float)
        print(f"{name:32} {np.nanmean(v[:, 0]):15.3f} {np.nanmedian(v[:, 0]):8.3f} {np.nanmean(v[:, 1]):13.3f} "
              f"{np.nanmean(v[:, 2]):8.1f}")
    print(f"\n# total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
