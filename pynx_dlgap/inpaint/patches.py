"""Model inputs from gap patches: the one preparation used by training, inference
and fine-tuning.

For a batch of patches ``I`` (counts) with gap masks ``m`` (True = not measured):

1. **prefill**: the gap is filled by log-space linear interpolation across it
   (:func:`pynx_dlgap.inpaint.baselines.fill_loglinear`, patch by patch), the
   strong classical fill the network corrects;
2. **normalise**: ``log(I+1)`` min-max scaled with the statistics of the
   *measured* voxels of each patch (:func:`pynx_dlgap.normalize.normalize_patch`);
3. **input channels**: (prefilled normalised intensity, gap mask, count level),
   so the network sees the absolute count level that min-max hides.

The residual models add their output to channel 0: the prediction is the
prefill plus a learnt correction, in normalised log space; :func:`to_counts`
inverts the normalisation exactly.
"""
from __future__ import annotations

import numpy as np
import torch

from ..normalize import build_input, denormalize_patch, normalize_patch

__all__ = ["prefill", "prepare_batch", "to_counts", "INPAINT_CHANNELS"]

#: the input channels of the inpainting models (see :func:`pynx_dlgap.normalize.build_input`)
INPAINT_CHANNELS = ("intensity", "mask", "level")


def prefill(I: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Log-linear prefill of each patch of a batch ``(B, *spatial)``."""
    from .baselines import fill_loglinear
    out = np.empty(I.shape, dtype=np.float32)
    for b in range(I.shape[0]):
        out[b] = fill_loglinear(I[b], mask[b]) if mask[b].any() else I[b]
    return out


def prepare_batch(I: np.ndarray, mask: np.ndarray, channels=INPAINT_CHANNELS, device="cpu"):
    """``(x, stats)``: model input ``(B, C, *spatial)`` (float32 torch) and the
    normalisation statistics (torch, for :func:`to_counts`)."""
    I = np.asarray(I, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    pre = prefill(I, mask)
    t = torch.from_numpy(pre).to(device)
    m = torch.from_numpy(mask).to(device)
    xn, stats = normalize_patch(t, m)
    x = build_input(xn, m, stats, channels=channels)
    return x.float(), stats


def to_counts(y: torch.Tensor, stats, bound: bool = True, prefill: torch.Tensor | None = None,
              trust: float | None = None) -> torch.Tensor:
    """Model output ``(B, 1, *spatial)`` (normalised log) -> counts ``(B, *spatial)``.

    The fill is bounded by the brightest measured voxel of its patch (as any
    interpolation is): a gap voxel brighter than every measured voxel around it
    is an over-estimate the network makes beside the Bragg peak, and amplitude
    errors there are what phasing sees most. ``bound=False`` returns the raw
    model output (``benchmarks/validation.py`` compares the two).

    ``trust`` (with ``prefill``, the model input's channel 0: the normalised
    log-linear prefill, ``(B, 1, *spatial)``): the **trust region** around the
    log-linear fill. The model's correction is clipped to ``±trust`` in
    ``log(I+1)`` (``±trust / span`` in normalised units), so the fill stays within
    ``(1 + I_ll) e^±trust - 1`` of the log-linear fill ``I_ll``: the small corrections
    that make the model's log-space gains are kept, the rare large over-estimates
    beside the Bragg peak are not (see :func:`pynx_dlgap.inpaint.infer.inpaint`).
    ``None`` (default): no trust region.
    """
    y = y[:, 0].float()
    if trust is not None:
        if prefill is None:
            raise ValueError("trust needs the prefill (the model input's channel 0)")
        x0 = prefill[:, 0].float()
        d = (float(trust) / stats["span"].to(y.device, y.dtype)).reshape((-1,) + (1,) * (y.ndim - 1))
        y = x0 + torch.maximum(torch.minimum(y - x0, d), -d)
    if not bound:
        return denormalize_patch(y, stats)
    top = ((stats["hi"] - stats["lo"]) / stats["span"]).to(y.device, y.dtype)
    return denormalize_patch(torch.minimum(y, top.reshape((-1,) + (1,) * (y.ndim - 1))), stats)
