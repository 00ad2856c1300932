#!/usr/bin/env python
"""DL gap fill + DL phase start in PyNX's operator algebra, best of K starts by LLK.

A beamline user's script, to copy and adapt. It simulates a strained 64³ crystal (phase range π) with
a 6-px detector-gap cross (replace the first block with your own data), then for K runs:

    cdi = chain * DLPhaseInit(noise=σ_k, noise_seed=k) * DLInpaint(mode="estimate") * cdi

with ``chain`` 600 RAAR + 200 ER and a support update every 50 cycles
(run 0 starts from the prediction as is, runs 1..K-1 from the prediction plus a smooth
1-rad phase field), keeps the run of lowest LLK, prints the errors against the known
truth and writes a CXI file. It runs on the operator family PyNX chose: ``PYNX_PU=cpu``
(default here), ``opencl`` or ``cuda`` (on a GPU the DL steps work on PyNX's GPU arrays,
no copy). ``benchmarks/phase_init.py --dl-k 5`` measures this selection on 30 crystals.

    .venv/bin/python examples/dl_fill_and_start.py [out_dir] [K]
"""
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("PYNX_PU", "cpu")

from pynx_dlgap.evaluate.align import object_errors  # noqa: E402
from pynx_dlgap.operators import DLInpaint, DLPhaseInit  # noqa: E402
from pynx_dlgap.pynx_backend import import_pynx  # noqa: E402
from pynx_dlgap.simulate import gaps, simulate_3d  # noqa: E402

out = Path(sys.argv[1] if len(sys.argv) > 1 else "out/example_dl")
K = int(sys.argv[2]) if len(sys.argv) > 2 else 3
out.mkdir(parents=True, exist_ok=True)
pc = import_pynx()  # pynx.cdi with the family PyNX chose (PYNX_PU)

# 1. the pattern (centred) and its mask (True = not measured). With your data:
#    from pynx_dlgap.data.io import load_pattern, load_mask
#    iobs, mask = load_pattern("scan.cxi"), load_mask("mask.npz")
s = simulate_3d(seed=5, shape=(64, 64, 64), regime="measured", floor=0.0, diffuse=0.0, gaps="none",
                crop_shift=[0, 0, 0], phase_range=np.pi)
mask = gaps.cross(6, 26, 36).mask(s["intensity"].shape)
iobs = np.where(mask, 0, s["intensity"]).astype(np.float32)

# 2. K runs from DL starts; PyNX's arrays are fft-shifted, masked voxels flagged by mask=
fill = DLInpaint(mode="estimate")  # loose constraint on OpenCL/CUDA; free on PyNX's CPU operators
runs = []
for k in range(K):
    cdi = pc.CDI(np.fft.fftshift(iobs), mask=np.fft.fftshift(mask).astype(np.int8))
    start = DLPhaseInit(noise=1.0 if k else 0.0, noise_seed=k)
    # 600 RAAR + 200 ER, support update every 50 cycles, as pynx-cdi-id01's defaults (no detwin after a DL start)
    sup = pc.SupportUpdate(threshold_relative=0.25, smooth_width=(2, 0.5, 600), method="rms")
    chain = (sup * pc.ER() ** 50) ** 4 * (sup * pc.RAAR(beta=0.9) ** 50) ** 12
    cdi = chain * start * fill * cdi
    cdi = pc.LLK() * cdi
    llk = float(cdi.get_llk(normalized=True)[0])
    e = object_errors(cdi.get_obj(shift=True), s["object"], s["support"])
    print(f"run {k}: start noise {start.noise:.1f} rad, LLK {llk:.3f}, phase RMS {e['phase_rms']:.3f} rad, "
          f"modulus error {e['modulus_error']:.3f} (fill: {cdi.dl_inpaint_info['fill']}, "
          f"{cdi.dl_inpaint_info['voxels_filled']} voxels)")
    runs.append((llk, k, cdi))

# 3. keep the lowest LLK (the truth is not known on real data) and save it
llk, k, best = min(runs, key=lambda r: r[0])
best.save_obj_cxi(str(out / "result.cxi"))
print(f"kept run {k} (lowest LLK {llk:.3f}) -> {out / 'result.cxi'}")
