"""Cost of the whole chain: DL inpainting, DL phase start, PyNX refinement.

For each pattern shape it simulates one crystal (regime 'measured', no floor, a
6-px cross gap), then times, in one process on the same machine:

1. ``inpaint``: :func:`pynx_dlgap.inpaint.infer.inpaint` (shipped weights, batched, gap-only patches);
2. ``dl-start``: :func:`predict_phase` + :func:`start_object` + :func:`support_from_object`;
3. ``pynx-chain``: the harness chain (PyNX CPU operators; ``--raar`` RAAR + ``--er`` ER,
   support update every 50 cycles, detwin);

and prints each step's seconds and share of the total, plus the DL steps' share;
then the same DL share with the inpainting model under bf16 autocast
(``inpaint-bf16``, timed on the same pattern; ``benchmarks/inpaint_speed.py``
shows it gives the fp32 gap errors).
CPU only here; on a GPU machine ``--device cuda`` moves the two DL steps to the GPU
(PyNX stays on its CPU operators in this script).

    python benchmarks/pipeline.py --shapes 128,128,128 256,256,128
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
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=1_970_000_000)
    a = ap.parse_args(argv)
    from pynx_dlgap.evaluate.phasing import phase_pattern
    from pynx_dlgap.inpaint.infer import inpaint, load_inpaint_model
    from pynx_dlgap.phase.predict import load_phase_model, predict_phase, start_object, support_from_object
    from pynx_dlgap.simulate.gaps import cross
    from pynx_dlgap.simulate.pipeline import simulate
    imodel, _ = load_inpaint_model(None)
    pmodel, _ = load_phase_model(None, 3)
    print(f"# pipeline cost: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"DL device {a.device}; chain {a.raar} RAAR + {a.er} ER on PyNX's CPU operators")
    print()
    hdr = f"{'shape':14} {'step':11} {'seconds':>9} {'share':>7}"
    print(hdr)
    print("-" * len(hdr))
    for sh in a.shapes:
        shape = tuple(int(v) for v in sh.split(","))
        s = simulate(a.seed, 3, shape, "measured", dict(floor=0.0, diffuse=0.0, gaps="none", crop_shift=[0, 0, 0],
                                                         phase_range=6.0, oversampling=[n / 24 for n in shape]))
        I = s["intensity"]
        m = cross(6, shape[1] // 2 - 4, shape[2] // 2 + 5).mask(shape) | s["dead"]
        t = {}
        t0 = time.perf_counter()
        filled = inpaint(I, m, model=imodel, device=a.device, progress=False)
        t["inpaint"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        inpaint(I, m, model=imodel, device=a.device, progress=False, bf16=True)
        t_bf16 = time.perf_counter() - t0
        t0 = time.perf_counter()
        ph = predict_phase(filled, None, model=pmodel, device=a.device)
        o0 = start_object(filled, ph)
        sup0 = support_from_object(o0)
        t["dl-start"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        r = phase_pattern(filled, None, obj0=o0, support0=sup0, chain=dict(n_raar=a.raar, n_er=a.er), llk_every=0)
        t["pynx-chain"] = time.perf_counter() - t0
        tot = sum(t.values())
        for k, v in t.items():
            print(f"{'x'.join(map(str, shape)):14} {k:11} {v:9.2f} {100 * v / tot:6.1f}%")
        print(f"{'x'.join(map(str, shape)):14} {'DL share':11} {t['inpaint'] + t['dl-start']:9.2f} "
              f"{100 * (t['inpaint'] + t['dl-start']) / tot:6.1f}%   (chain LLK {r.llk:.4g}"
              + (f", FAILED {r.failed}" if r.failed else "") + ")")
        tot16 = tot - t["inpaint"] + t_bf16
        print(f"{'x'.join(map(str, shape)):14} {'inpaint-bf16':11} {t_bf16:9.2f} {100 * t_bf16 / tot16:6.1f}%")
        print(f"{'x'.join(map(str, shape)):14} {'DL (bf16)':11} {t_bf16 + t['dl-start']:9.2f} "
              f"{100 * (t_bf16 + t['dl-start']) / tot16:6.1f}%   (share with the bf16 inpainting)")
        print()


if __name__ == "__main__":
    main()
