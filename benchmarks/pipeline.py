"""Cost of the whole chain: DL inpainting, DL phase start, PyNX refinement.

For each pattern shape it simulates one crystal (regime 'measured', no floor, a
6-px cross gap), then times, in one process on the same machine:

1. ``inpaint``: :func:`pynx_dlgap.inpaint.infer.inpaint` (shipped weights, batched, gap-only patches);
2. ``dl-start``: :func:`predict_phase` + :func:`start_object` + :func:`support_from_object`;
3. ``pynx-chain``: the harness chain (PyNX CPU operators; ``--raar`` RAAR + ``--er`` ER,
   support update every 50 cycles, detwin);

and prints each step's seconds and share of the total, plus the DL steps' share;
then the same DL share with both models under bf16 autocast (``inpaint-bf16``,
``start-bf16``, timed on the same pattern; ``benchmarks/inpaint_speed.py`` shows the
inpainting keeps its fp32 gap errors, ``benchmarks/phase_init.py --dl-precision fp32
bf16`` that the phase start stays within 0.01 rad of fp32's).
With ``--pynx cuda`` (a GPU machine with pycuda and PyNX's CUDA family) everything
runs on the GPU instead: ``DLInpaint`` and ``DLPhaseInit`` as CUDA-family operators on
a PyNX ``CDI`` (the data stay in PyNX's GPU arrays, handed to torch without a copy),
then the same harness chain on PyNX's CUDA operators (``phase_pattern(backend='cuda')``,
which builds its own CDI from the start object: one upload). Each shape is run
``--repeat`` times and the last run is printed (the first pays for kernel compilation,
cuDNN and FFT plans).

    python benchmarks/pipeline.py --shapes 128,128,128 256,256,128
    python benchmarks/pipeline.py --pynx cuda --repeat 2     # on a GPU machine
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", default=["128,128,128", "256,256,128"])
    ap.add_argument("--raar", type=int, default=600)
    ap.add_argument("--er", type=int, default=200)
    ap.add_argument("--device", default="cpu", help="torch device of the DL steps (CPU-family run)")
    ap.add_argument("--pynx", default="cpu", choices=["cpu", "cuda"],
                    help="PyNX operator family: cpu (default) or cuda (everything on the GPU)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per shape; the last is printed")
    ap.add_argument("--seed", type=int, default=1_970_000_000)
    a = ap.parse_args(argv)
    from pynx_dlgap.evaluate.phasing import phase_pattern
    from pynx_dlgap.inpaint.infer import inpaint, load_inpaint_model
    from pynx_dlgap.phase.predict import load_phase_model, predict_phase, start_object, support_from_object
    from pynx_dlgap.precision import bf16_native
    imodel, _ = load_inpaint_model(None)
    pmodel, _ = load_phase_model(None, 3)
    if a.pynx == "cuda":
        return _main_cuda(a, imodel, pmodel)
    _table_head(f"# pipeline cost: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                f"DL device {a.device}; chain {a.raar} RAAR + {a.er} ER on PyNX's CPU operators", 11)
    b16 = bf16_native(a.device)  # elsewhere the bf16 lines would time float32 (the DL steps fall back)
    for sh in a.shapes:
        shape = tuple(int(v) for v in sh.split(","))
        I, m = _pattern(a, shape)
        t = {}
        t0 = time.perf_counter()
        filled = inpaint(I, m, model=imodel, device=a.device, progress=False)
        t["inpaint"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if b16:
            inpaint(I, m, model=imodel, device=a.device, progress=False, bf16=True)
        t_bf16 = time.perf_counter() - t0
        t0 = time.perf_counter()
        ph = predict_phase(filled, None, model=pmodel, device=a.device)
        o0 = start_object(filled, ph)
        sup0 = support_from_object(o0)
        t["dl-start"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if b16:
            o16 = start_object(filled, predict_phase(filled, None, model=pmodel, device=a.device, bf16=True))
            support_from_object(o16)
        t_start16 = time.perf_counter() - t0
        t0 = time.perf_counter()
        r = phase_pattern(filled, None, obj0=o0, support0=sup0, chain=dict(n_raar=a.raar, n_er=a.er), llk_every=0)
        t["pynx-chain"] = time.perf_counter() - t0
        tot = sum(t.values())
        for k, v in t.items():
            print(f"{'x'.join(map(str, shape)):14} {k:11} {v:9.2f} {100 * v / tot:6.1f}%")
        print(f"{'x'.join(map(str, shape)):14} {'DL share':11} {t['inpaint'] + t['dl-start']:9.2f} "
              f"{100 * (t['inpaint'] + t['dl-start']) / tot:6.1f}%   (chain LLK {r.llk:.4g}"
              + (f", FAILED {r.failed}" if r.failed else "") + ")")
        if not b16:
            print(f"{'x'.join(map(str, shape)):14} (bf16 lines left out: {a.device} has no native bfloat16)\n")
            continue
        tot16 = tot - t["inpaint"] - t["dl-start"] + t_bf16 + t_start16
        print(f"{'x'.join(map(str, shape)):14} {'inpaint-bf16':11} {t_bf16:9.2f} {100 * t_bf16 / tot16:6.1f}%")
        print(f"{'x'.join(map(str, shape)):14} {'start-bf16':11} {t_start16:9.2f} {100 * t_start16 / tot16:6.1f}%")
        print(f"{'x'.join(map(str, shape)):14} {'DL (bf16)':11} {t_bf16 + t_start16:9.2f} "
              f"{100 * (t_bf16 + t_start16) / tot16:6.1f}%   (share with both DL steps in bf16)")
        print()


def _table_head(title, step_width):
    print(title)
    print()
    hdr = f"{'shape':14} {'step':{step_width}} {'seconds':>9} {'share':>7}"
    print(hdr)
    print("-" * len(hdr))


def _pattern(a, shape):
    from pynx_dlgap.simulate.gaps import cross
    from pynx_dlgap.simulate.pipeline import simulate
    s = simulate(a.seed, 3, shape, "measured", dict(floor=0.0, diffuse=0.0, gaps="none", crop_shift=[0, 0, 0],
                                                     phase_range=6.0, oversampling=[n / 24 for n in shape]))
    m = cross(6, shape[1] // 2 - 4, shape[2] // 2 + 5).mask(shape) | s["dead"]
    return s["intensity"], m


def _main_cuda(a, imodel, pmodel):
    import torch
    from pynx_dlgap.evaluate.phasing import import_pynx_cdi, phase_pattern
    from pynx_dlgap.operators import DLInpaint, DLPhaseInit
    from pynx_dlgap.pynx_backend import init_pynx_cuda
    shared = init_pynx_cuda()
    pcu = import_pynx_cdi("cuda")
    _table_head(f"# pipeline cost on the GPU: {torch.cuda.get_device_name()}, PyNX CUDA family "
                f"(context shared with torch: {shared}); chain {a.raar} RAAR + {a.er} ER; last of {a.repeat} runs", 13)
    for sh in a.shapes:
        shape = tuple(int(v) for v in sh.split(","))
        I, m = _pattern(a, shape)
        stored = np.fft.fftshift(np.where(m, 0, I)).astype(np.float32)
        ms = np.fft.fftshift(m).astype(np.int8)
        for _ in range(max(1, a.repeat)):
            t = {}
            for bf16 in (False, True):
                cdi = pcu.CDI(stored.copy(), mask=ms)
                op_i = DLInpaint(model=imodel, family="cuda", bf16=bf16)
                op_p = DLPhaseInit(model=pmodel, family="cuda")
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                cdi = op_i * cdi  # the op synchronises before returning
                t["inpaint-bf16" if bf16 else "inpaint"] = time.perf_counter() - t0
                zero_copy = cdi.dl_inpaint_info["zero_copy"]
                t0 = time.perf_counter()
                cdi = op_p * cdi
                torch.cuda.synchronize()
                t["dl-start-bf16" if bf16 else "dl-start"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            r = phase_pattern(cdi.get_iobs(shift=True), None, obj0=cdi.get_obj(shift=True),
                              support0=cdi.get_support(shift=True), chain=dict(n_raar=a.raar, n_er=a.er),
                              llk_every=0, backend="cuda")
            t["pynx-chain"] = time.perf_counter() - t0
        name = "x".join(map(str, shape))
        tot = t["inpaint"] + t["dl-start"] + t["pynx-chain"]
        for k in ("inpaint", "dl-start", "pynx-chain"):
            print(f"{name:14} {k:13} {t[k]:9.3f} {100 * t[k] / tot:6.1f}%")
        dl = t["inpaint"] + t["dl-start"]
        print(f"{name:14} {'DL share':13} {dl:9.3f} {100 * dl / tot:6.1f}%   (chain LLK {r.llk:.4g}"
              + (f", FAILED {r.failed}" if r.failed else "") + f"; zero copy {zero_copy})")
        tot16 = t["inpaint-bf16"] + t["dl-start-bf16"] + t["pynx-chain"]
        dl16 = t["inpaint-bf16"] + t["dl-start-bf16"]
        print(f"{name:14} {'inpaint-bf16':13} {t['inpaint-bf16']:9.3f} {100 * t['inpaint-bf16'] / tot16:6.1f}%")
        print(f"{name:14} {'DL (bf16)':13} {dl16:9.3f} {100 * dl16 / tot16:6.1f}%")
        print()


if __name__ == "__main__":
    main()
