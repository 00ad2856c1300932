#!/usr/bin/env python
"""Fill the detector gaps of a 3-D BCDI pattern and phase it with PyNX.

A beamline user's script, to copy and adapt: it simulates a pattern (replace
the first block with your own ``load_pattern``/``load_mask``), compares the
classical gap fills in the gap, and phases the best-filled pattern with real
PyNX on its CPU backend, writing a CXI file.

    .venv/bin/python examples/fill_and_phase.py [out_dir]
"""
import sys
from pathlib import Path

import numpy as np

from pynx_dlgap.evaluate.metrics import gap_metrics
from pynx_dlgap.evaluate.phasing import phase_pattern
from pynx_dlgap.inpaint.baselines import fill_biharmonic, fill_logcubic, fill_loglinear
from pynx_dlgap.simulate import gaps, simulate_3d

out = Path(sys.argv[1] if len(sys.argv) > 1 else "out/example")
out.mkdir(parents=True, exist_ok=True)

# 1. the pattern and its mask (True = not measured). With your data:
#    from pynx_dlgap.data.io import load_pattern, load_mask
#    iobs, mask = load_pattern("scan.cxi"), load_mask("mask.npz")
s = simulate_3d(seed=11, shape=(64, 64, 64), regime="measured", floor=0.0, diffuse=0.0, phase_range=1.0)
iobs = s["intensity"]
mask = gaps.module_layout(iobs.shape, "maxipix", offset=(230, 226)).mask(iobs.shape)  # MAXIPIX chip gaps
print("gap layout:", gaps.GapLayout.from_mask(mask)[0], f"({int(mask.sum())} voxels)")

# 2. classical fills, scored inside the gap against the (here known) truth
fills = {f.__name__: f(iobs, mask) for f in (fill_loglinear, fill_logcubic, fill_biharmonic)}
for name, filled in fills.items():
    m = gap_metrics(iobs, filled, mask)
    print(f"{name:>16s}: PCC(log I) {m['pcc_log']:.4f}  MAE(log I) {m['mae_log']:.4f}")

# 3. phase the log-linear fill with real PyNX (CPU backend) and save a CXI file
r = phase_pattern(fills["fill_loglinear"], None, seed=0, keep_cdi=True)
print(f"PyNX: LLK {r.llk:.2f} in {r.seconds:.1f} s")
r.cdi.save_obj_cxi(str(out / "example.cxi"))
np.savez_compressed(out / "example_filled.npz", data=fills["fill_loglinear"], mask=mask)
print("wrote", out / "example.cxi")
