"""PyNX operators of pynx-dlgap (PyNX is imported lazily, when an operator is built).

* :func:`DLInpaint` — fill the detector gaps of ``cdi.iobs`` with the DL inpainting
  model: ``cdi = ER() ** 50 * DLInpaint(weights=...) * cdi``.
* :func:`DLPhaseInit` — start the object from the DL reciprocal-phase prediction:
  ``cdi = ER() ** 100 * RAAR() ** 300 * DLPhaseInit() * cdi``.
* :func:`ReleaseFill` — mask (free) the voxels a ``DLInpaint`` filled, mid-chain:
  ``cdi = ER() ** 200 * RAAR() ** 240 * ReleaseFill() * RAAR() ** 360 * DLInpaint() * cdi``.
"""
from .inpaint import DLInpaint, decode_iobs, dlinpaint_class, pynx_family
from .phase_init import DLPhaseInit, dlphaseinit_class
from .release import ReleaseFill, releasefill_class

__all__ = ["DLInpaint", "dlinpaint_class", "DLPhaseInit", "dlphaseinit_class", "pynx_family", "decode_iobs",
           "ReleaseFill", "releasefill_class"]
