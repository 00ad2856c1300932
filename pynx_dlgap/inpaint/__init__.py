"""Detector-gap filling: classical baselines and whole-pattern deep-learning inpainting.

* :mod:`.baselines` — classical fills (``fill_loglinear``, ``fill_logcubic``, ...);
* :mod:`.patches` — the one model-input preparation (``prepare_batch``, ``to_counts``);
* :mod:`.infer` — ``inpaint(iobs, mask, model)``: patch plan, batched inference, blending;
  ``load_inpaint_model``; ``plan_patches``.

The torch-based names (``inpaint``, ``load_inpaint_model``, ``plan_patches``, ``PatchPlan``)
are imported lazily, so ``import pynx_dlgap.inpaint.baselines`` does not import torch.
"""
from .baselines import (BASELINES, fill_biharmonic, fill_logcubic, fill_loglinear, fill_none,  # noqa: F401
                        fill_pynx_interp, get_baseline)

_LAZY = {"inpaint": "infer", "load_inpaint_model": "infer", "plan_patches": "infer", "PatchPlan": "infer",
         "blend_window": "infer", "DEFAULT_WEIGHTS": "infer",
         "prepare_batch": "patches", "to_counts": "patches", "INPAINT_CHANNELS": "patches"}

__all__ = ["BASELINES", "fill_none", "fill_loglinear", "fill_logcubic", "fill_biharmonic", "fill_pynx_interp",
           "get_baseline", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib
        mod = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
