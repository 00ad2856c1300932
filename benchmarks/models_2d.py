"""The seed's 2-D study, re-run at a size this machine can train: losses and architectures.

Chapter 4 of the seed compares, on 2-D simulated patterns, the losses MSE, MAE,
SSIM and their combination, and the architectures U-Net, MSD-Net and U-Net_mod
(Table 4.1). The published 2-D models have 32 M (U-Nets) and 0.3 M (MSD-Net)
parameters and trained for hours on GPUs; here each run is a short CPU training
(``--steps`` x ``--batch`` 64x64 patches drawn on the fly by the same
``PatchStream`` as the 3-D trainer: all count regimes, gaps 1-12 px as planes
and crosses at random positions) of a scaled-down member of each family, with
the trainer's inputs (normalised log-intensity with the log-linear prefill, gap
mask, count level) and a residual output on top of the prefill, so that the
comparison is between losses and architectures, not between input recipes:

* losses (U-Net_mod): ``mse`` (gap MSE), ``mae`` (gap L1), ``ssim`` (1 - SSIM),
  ``combined`` (MSE + 0.5 SSIM + gradient MSE, the seed's choice);
* architectures (combined loss): ``unet`` (4 levels 16..128, plain convs),
  ``msdnet`` (mixed-scale dense, width 1, depth 60, dilations 1..10),
  ``unetmod`` (the U-Net with dilated encoder blocks; the registry's
  ``inpaint2d_small``).

Each trained model fills held-out 128x128 patterns (seeds from 2e9, regime
'mixed') through :func:`pynx_dlgap.inpaint.infer.inpaint` (64x64 patches,
blending), for a vertical plane and a cross at widths 3, 6, 9, 12 px; the table
prints PCC(log I) inside the gap per case and its mean, with log-linear
interpolation as the reference row.

    python benchmarks/models_2d.py --steps 400 --n 10
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

BASE = dict(dims=2, in_channels=3, out_channels=1, norm="group", activation="leaky_relu", out_activation=None,
            residual=True, residual_channel=0)
ARCHS = {
    "unet": {"class": "UNet", "kwargs": dict(BASE, depth=4, channels=(16, 32, 64, 128), convs_per_block=2,
                                             up_mode="transpose", up_kernel_size=2)},
    "msdnet": {"class": "MSDNet", "kwargs": dict(dims=2, in_channels=3, out_channels=1, depth=60, width=1,
                                                 max_dilation=10, activation="relu", residual=True,
                                                 residual_channel=0)},
    "unetmod": "inpaint2d_small",
}
LOSSES = {"mse": dict(w_mse=1.0, w_l1=0.0, w_ssim=0.0, w_grad=0.0, w_amp=0.0),
          "mae": dict(w_mse=0.0, w_l1=1.0, w_ssim=0.0, w_grad=0.0, w_amp=0.0),
          "ssim": dict(w_mse=0.0, w_l1=0.0, w_ssim=1.0, w_grad=0.0, w_amp=0.0),
          "combined": dict(w_mse=1.0, w_l1=0.0, w_ssim=0.5, w_grad=1.0, w_amp=0.0)}
RUNS = [("unetmod", "mse"), ("unetmod", "mae"), ("unetmod", "ssim"), ("unetmod", "combined"),
        ("unet", "combined"), ("msdnet", "combined")]


def train_one(arch, loss, steps, batch, out, seed):
    import contextlib
    import io
    import torch
    from pynx_dlgap.models import build_model
    from pynx_dlgap.training.trainer import train
    spec = ARCHS[arch]
    model_arg = spec if isinstance(spec, str) else json.dumps(spec)
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        train(out, model=model_arg, dims=2, patch=64, source=128, batch=batch, steps=steps, lr=1e-3, warmup=50,
              bf16=False, val_batches=2, val_every=steps, ckpt_every=steps, seed=seed, **LOSSES[loss])
    st = torch.load(os.path.join(out, "checkpoint.pt"), map_location="cpu", weights_only=True)
    model = build_model(spec)
    model.load_state_dict(st["model"])
    n = sum(p.numel() for p in model.parameters())
    return model.eval(), n, time.perf_counter() - t0


def evaluate(fill, samples, cases):
    from pynx_dlgap.evaluate.metrics import pcc_log
    from pynx_dlgap.simulate import gaps as G
    out = {}
    for w, geo in cases:
        vals = []
        for i, s in enumerate(samples):
            I = s["intensity"]
            rng = np.random.default_rng([i, w, geo == "cross"])
            py, px = (int(rng.integers(32, 96 - w)) for _ in range(2))
            m = (G.cross(w, py, px) if geo == "cross" else G.plane(G.AXIS_X, w, px)).mask(I.shape)
            vals.append(pcc_log(I, fill(I, m), m))
        out[f"{geo}-{w}"] = float(np.nanmean(vals))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--n", type=int, default=10, help="held-out 128x128 patterns")
    ap.add_argument("--seed", type=int, default=3)
    a = ap.parse_args(argv)
    from pynx_dlgap.inpaint.baselines import fill_loglinear
    from pynx_dlgap.inpaint.infer import inpaint
    from pynx_dlgap.simulate import simulate_2d
    samples = [simulate_2d(2_000_000_000 + i, (128, 128), "mixed", gaps="none") for i in range(a.n)]
    cases = [(w, g) for w in (3, 6, 9, 12) for g in ("plane", "cross")]
    rows = [("log-linear", "-", 0, 0.0, evaluate(fill_loglinear, samples, cases))]
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for arch, loss in RUNS:
            model, n, dt = train_one(arch, loss, a.steps, a.batch, os.path.join(tmp, f"{arch}-{loss}"), a.seed)
            res = evaluate(lambda I, m: inpaint(I, m, model, patch=(64, 64), progress=False), samples, cases)
            rows.append((arch, loss, n, dt, res))
            print(f"trained {arch} / {loss}: {n:,} params, {dt:.0f} s; mean PCC(log) "
                  f"{np.mean(list(res.values())):.4f}", file=sys.stderr, flush=True)
    print(f"# 2-D study: {a.steps} steps x {a.batch} patches (64x64) per run on {os.cpu_count()} CPU cores; "
          f"{a.n} held-out 128x128 patterns (seeds 2e9+, regime mixed); PCC(log I) inside the gap")
    print(f"# python {' '.join(sys.argv)}")
    print()
    keys = [f"{g}-{w}" for w, g in cases]
    hdr = f"{'model':10} {'loss':9} {'params':>8} {'train s':>8} " + " ".join(f"{k:>9}" for k in keys) + f" {'mean':>7}"
    print(hdr)
    print("-" * len(hdr))
    for arch, loss, n, dt, res in rows:
        print(f"{arch:10} {loss:9} {n:8,d} {dt:8.0f} " + " ".join(f"{res[k]:9.4f}" for k in keys)
              + f" {np.mean([res[k] for k in keys]):7.4f}")
    print(f"# total {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
