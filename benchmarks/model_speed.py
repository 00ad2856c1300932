"""Forward time of the shipped models on the CPU: oneDNN for every convolution vs PyTorch's heuristic.

PyTorch sends a float32 CPU convolution with one sample and a small input
(``N*C*D*H <= 20480``) to its im2col path; ``pynx_dlgap.models.fastconv`` sends every
no-grad float32 CPU convolution to oneDNN (see its docstring), and since 0.7.4 the
inpainting model's dilated convolutions to oneDNN's dilated kernel instead of the
sub-lattice form used for training (``pynx_dlgap.models.dilated``; the heuristic column
runs that form, as before 0.7.4). This script times each
shipped model both ways in one process, on the same input, alternating the two for
``--repeat`` rounds after a warm-up, and prints the median times, their ratio and the
largest output difference (for the phase models: the largest phase difference, rad).

Inputs: the phase models get :func:`pynx_dlgap.phase.inputs.phase_input` of a simulated
crystal (64^3 / 128^2, regime 'measured'); the inpainting model gets random patches in
[0, 1] with a 6-px gap plane in the mask channel, at batch 1 (the reference strategy of
``inpaint_speed.py``, one patch per call) and 32 (``inpaint``'s default batch).

    python benchmarks/model_speed.py                # 1 torch thread (as phase_init.py's workers)
    python benchmarks/model_speed.py --threads 2
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np


def _inputs(name, card, rng):
    import torch
    if card["task"] == "phase":
        from pynx_dlgap.phase.inputs import phase_input
        shape = tuple(card["input"]["shape"])
        if len(shape) == 3:
            from pynx_dlgap.simulate import simulate_3d
            s = simulate_3d(1990000000, shape, "measured", floor=0.0, diffuse=0.0, gaps="none")
        else:
            from pynx_dlgap.simulate import simulate_2d
            s = simulate_2d(1990000000, shape, "measured")
        return [("1 x " + "x".join(map(str, shape)), torch.from_numpy(phase_input(s["intensity"])[None]))]
    out = []
    for b in (1, 32):
        x = torch.from_numpy(rng.random((b, 3, 32, 32, 32), dtype=np.float32))
        x[:, 1] = 0
        x[:, 1, 13:19] = 1
        x[:, 0, 13:19] = 0.5
        out.append((f"{b} x 32^3", x))
    return out


def _time(model, x, plain, repeat):
    import torch

    from pynx_dlgap.models.fastconv import plain_convolutions
    ts, y = [], None
    with torch.inference_mode():
        for _ in range(repeat):
            if plain:
                with plain_convolutions():
                    t0 = time.perf_counter()
                    y = model(x)
            else:
                t0 = time.perf_counter()
                y = model(x)
            ts.append(time.perf_counter() - t0)
    return ts, y


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--repeat", type=int, default=5, help="timed calls per variant (default 5)")
    ap.add_argument("--models", nargs="+", default=["phase3d", "phase2d", "inpaint3d"])
    a = ap.parse_args(argv)
    import torch

    from pynx_dlgap.models.weights import load_weights
    from pynx_dlgap.phase.predict import _WEIGHTS_DIR
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng()
    print(f"# python benchmarks/model_speed.py --threads {a.threads} --repeat {a.repeat}")
    print(f"# CPU {platform.machine()}, torch {torch.__version__}, {a.threads} thread(s); "
          f"oneDNN bf16 native: {bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())}")
    print(f"# median of {a.repeat} calls each after one warm-up call, the two variants alternated\n")
    hdr = f"{'model':<11} {'input':<14} {'PyTorch heuristic s':>20} {'oneDNN s':>9} {'speed-up':>9} {'max diff':>10}"
    print(hdr)
    print("-" * len(hdr))
    for name in a.models:
        model, card = load_weights(_WEIGHTS_DIR / f"{name}.safetensors")
        model.eval()
        for label, x in _inputs(name, card, rng):
            _time(model, x, True, 1)
            _time(model, x, False, 1)
            tp, tf = [], []
            for _ in range(a.repeat):
                t, yp = _time(model, x, True, 1)
                tp += t
                t, yf = _time(model, x, False, 1)
                tf += t
            if card["task"] == "phase":
                d = torch.atan2(yp[:, 1] * yf[:, 0] - yp[:, 0] * yf[:, 1], (yp * yf).sum(1)).abs().max().item()
                diff = f"{d:.1e} rad"
            else:
                diff = f"{(yp - yf).abs().max().item():.1e}"
            mp, mf = statistics.median(tp), statistics.median(tf)
            print(f"{name:<11} {label:<14} {mp:>20.3f} {mf:>9.3f} {mp / mf:>8.2f}x {diff:>10}", flush=True)


if __name__ == "__main__":
    main()
