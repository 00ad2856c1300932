"""PyNX operators of pynx-dlgap (PyNX is imported lazily, when an operator is built).

* :func:`DLInpaint` — fill the detector gaps of ``cdi.iobs`` with the DL inpainting
  model: ``cdi = ER**50 * DLInpaint(weights=...) * cdi``.
"""
from .inpaint import DLInpaint, decode_iobs, dlinpaint_class, pynx_family

__all__ = ["DLInpaint", "dlinpaint_class", "pynx_family", "decode_iobs"]
