"""Intensity scaling: the ONE normalisation used by training, inference and fine-tuning.

``x = (log(I + 1) - lo) / span`` with ``lo``/``hi`` the min/max of ``log(I + 1)`` over
the **measured** (unmasked) voxels of each patch and ``span = hi - lo``, so measured
voxels lie in [0, 1]. Masked voxels are scaled with the same ``lo``/``span`` (a
prefilled gap keeps its values; negative masked values, e.g. PyNX-encoded, are
clipped to 0 counts first, so no NaN appears).

Because per-patch min-max hides how many photons a patch holds, the stats also
carry the absolute count level (``level = hi / ln(1e7)`` = ``log10(max + 1) / 7``,
``floor = lo / ln(1e7)``), which :func:`build_input` turns into constant input
channels. :func:`denormalize_patch` inverts exactly.

Defined edge cases
------------------
* constant patch (``hi == lo``): ``span = 1``, so ``x = 0`` on measured voxels and
  ``denormalize_patch`` returns ``expm1(lo + y)``: no division by zero;
* no measured voxel in a patch: ``lo = hi = 0``, ``span = 1`` (``x = log(I + 1)``).

Works on numpy arrays and torch tensors (any device) of shape ``(B, ...)``: the
first axis is the batch, statistics reduce over all the other axes (so
``(B, z, y, x)`` and ``(B, 1, z, y, x)`` both work). Computation happens in the
input's floating dtype (at least float32).
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["normalize_patch", "denormalize_patch", "build_input", "LOG_LEVEL_MAX", "INPUT_CHANNELS"]

#: ``ln(1e7)``: a patch whose brightest voxel holds 1e7 counts has ``level == 1``.
LOG_LEVEL_MAX = math.log(1e7)

#: Channels understood by :func:`build_input`.
INPUT_CHANNELS = ("intensity", "mask", "level", "floor")


def _float_np(a):
    a = np.asarray(a)
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float32)
    return a


def _float_t(a):
    if a.dtype not in (torch.float32, torch.float64):
        a = a.float()
    return a


def normalize_patch(I, mask=None, *, batched: bool = True):
    """Normalise a batch of patches: ``log(I + 1)`` min-max scaled over measured voxels.

    Parameters
    ----------
    I : numpy array or torch tensor, shape ``(B, ...)`` (or a single patch with
        ``batched=False``). Intensities (counts >= 0 on measured voxels).
    mask : same type family, broadcastable to ``I``; ``True``/1 where **not measured**
        (the gap). ``None``: everything measured.
    batched : if False, ``I`` is one patch; the stats are then scalars (0-d).

    Returns
    -------
    x : same type, shape and device as ``I`` (float32, or float64 for float64 input);
        measured voxels in [0, 1].
    stats : dict of arrays/tensors of shape ``(B,)`` (``()`` if not batched):
        ``lo``, ``hi`` (min/max of log(I+1) over measured voxels), ``span`` (``hi - lo``,
        or 1 for constant/empty patches), ``level`` (``hi / ln 1e7`` = log10(max+1)/7)
        and ``floor`` (``lo / ln 1e7``).
    """
    if isinstance(I, torch.Tensor):
        L = torch.log1p(_float_t(I).clamp_min(0))
        if not batched:
            L = L.unsqueeze(0)
        B = L.shape[0]
        Lf = L.reshape(B, -1)
        if mask is None:
            lo, hi = Lf.amin(1), Lf.amax(1)
            empty = torch.zeros(B, dtype=torch.bool, device=L.device)
        else:
            m = torch.as_tensor(mask, device=L.device).bool()
            if not batched:
                m = m.unsqueeze(0)
            m = m.expand(L.shape).reshape(B, -1)
            lo = torch.where(m, torch.full_like(Lf, math.inf), Lf).amin(1)
            hi = torch.where(m, torch.full_like(Lf, -math.inf), Lf).amax(1)
            empty = m.all(1)
        zero = torch.zeros_like(lo)
        lo, hi = torch.where(empty, zero, lo), torch.where(empty, zero, hi)
        span = hi - lo
        span = torch.where(span > 0, span, torch.ones_like(span))
        shape = (B,) + (1,) * (L.ndim - 1)
        x = (L - lo.view(shape)) / span.view(shape)
    else:
        L = np.log1p(np.maximum(_float_np(I), 0))
        if not batched:
            L = L[None]
        B = L.shape[0]
        Lf = L.reshape(B, -1)
        if mask is None:
            lo, hi = Lf.min(1), Lf.max(1)
            empty = np.zeros(B, dtype=bool)
        else:
            m = np.asarray(mask).astype(bool)
            if not batched:
                m = m[None]
            m = np.broadcast_to(m, L.shape).reshape(B, -1)
            lo = np.where(m, np.inf, Lf).min(1).astype(L.dtype)
            hi = np.where(m, -np.inf, Lf).max(1).astype(L.dtype)
            empty = m.all(1)
        lo = np.where(empty, 0, lo).astype(L.dtype)
        hi = np.where(empty, 0, hi).astype(L.dtype)
        span = hi - lo
        span = np.where(span > 0, span, 1).astype(L.dtype)
        shape = (B,) + (1,) * (L.ndim - 1)
        x = (L - lo.reshape(shape)) / span.reshape(shape)
    if not batched:
        x, lo, hi, span = x[0], lo[0], hi[0], span[0]
    stats = {"lo": lo, "hi": hi, "span": span, "level": hi / LOG_LEVEL_MAX, "floor": lo / LOG_LEVEL_MAX}
    return x, stats


def _stat_like(s, y):
    """Convert one stats entry to y's library/device/dtype."""
    if isinstance(y, torch.Tensor):
        return torch.as_tensor(s, device=y.device).to(y.dtype)
    if isinstance(s, torch.Tensor):
        s = s.detach().cpu().numpy()
    return np.asarray(s).astype(y.dtype, copy=False)


def _bcast(s, y):
    """Reshape per-patch stats (B,) to broadcast against y (B, ...); 0-d stays scalar."""
    if s.ndim == 0:
        return s
    return s.reshape((s.shape[0],) + (1,) * (y.ndim - 1))


def denormalize_patch(y, stats, *, clip: bool = True):
    """Invert :func:`normalize_patch`: ``I = expm1(y * span + lo)``.

    Parameters
    ----------
    y : numpy array or torch tensor ``(B, ...)`` (a model output in normalised units,
        e.g. ``(B, 1, z, y, x)``); bfloat16/float16 are promoted to float32.
    stats : the dict returned by :func:`normalize_patch` (numpy or torch; converted
        to ``y``'s type and device).
    clip : clip the log-intensity at 0 so that the result is >= 0 counts (measured
        voxels are never affected).
    """
    if isinstance(y, torch.Tensor):
        y = _float_t(y)
        lo, span = (_bcast(_stat_like(stats[k], y), y) for k in ("lo", "span"))
        L = y * span + lo
        return torch.expm1(L.clamp_min(0) if clip else L)
    y = _float_np(y)
    lo, span = (_bcast(_stat_like(stats[k], y), y) for k in ("lo", "span"))
    L = y * span + lo
    return np.expm1(np.maximum(L, 0) if clip else L)


def build_input(x, mask=None, stats=None, channels=("intensity", "mask", "level")):
    """Stack the model input channels ``(B, C, *spatial)`` from a normalised batch.

    Parameters
    ----------
    x : normalised patches ``(B, *spatial)`` (numpy or torch), e.g. from
        :func:`normalize_patch` with the gap prefilled.
    mask : ``(B, *spatial)`` or broadcastable, True/1 in the gap (needed for ``'mask'``).
    stats : the stats of :func:`normalize_patch` (needed for ``'level'``/``'floor'``).
    channels : names among ``'intensity'``, ``'mask'`` (1 in the gap), ``'level'``
        (constant ``log10(max+1)/7``), ``'floor'`` (constant ``log10(min+1)/7``).
        The default is the 3-channel input of the inpainting models.
    """
    unknown = [c for c in channels if c not in INPUT_CHANNELS]
    if unknown:
        raise ValueError(f"unknown input channel(s) {unknown}; choose among {INPUT_CHANNELS}")
    is_t = isinstance(x, torch.Tensor)
    out = []
    for c in channels:
        if c == "intensity":
            out.append(x)
        elif c == "mask":
            if mask is None:
                raise ValueError("the 'mask' input channel needs mask=")
            m = torch.as_tensor(mask, device=x.device) if is_t else np.asarray(mask)
            out.append(m.to(x.dtype).expand(x.shape) if is_t else np.broadcast_to(m.astype(x.dtype), x.shape))
        else:
            if stats is None:
                raise ValueError(f"the {c!r} input channel needs stats= (from normalize_patch)")
            s = _bcast(_stat_like(stats[c], x), x)
            out.append(s.expand(x.shape) if is_t else np.broadcast_to(s, x.shape))
    if is_t:
        return torch.stack([o.expand(x.shape) for o in out], dim=1).contiguous()
    return np.ascontiguousarray(np.stack(out, axis=1))
