"""The one input encoding of the phase models, and the symmetries used to augment it.

Channels (``PHASE_CHANNELS``), all ``float32`` of the pattern's shape:

* ``log_intensity``: ``log(I+1) / log(max_measured(I)+1)`` in ``[0, 1]`` (0 in
  masked voxels); the normalisation of Masto et al. 2025;
* ``mask``: 1 where the voxel is not measured (gaps, dead pixels, padding);
* ``coord_<axis>``: ``(k - n//2) / (n/2)`` along each axis, so that the
  convolutional model knows where the Bragg peak (``q = 0`` at index ``n//2``)
  is; the reciprocal-space phase depends on ``q`` itself, not only on the local
  intensity.

The label (:func:`pynx_dlgap.simulate.diffraction.phase_label`) is the phase of
the FT of the object centred on its modulus centre of mass, 0 at the Bragg
peak: the translation ramp and the global phase are fixed by construction, the
twin ``phi(q) -> -phi(q)`` (the FT of ``conj(o(-r))``) is left to the loss (min over the two).

Symmetries (:func:`apply_symmetry`): any axis permutation and any set of
``q -> -q`` flips (about index ``n//2``: ``roll(flip(a), 1)`` for even ``n``)
maps a valid (intensity, phase) pair onto another valid pair (the object is
transposed / mirrored) — 48 in 3-D (cube patterns), 8 in 2-D.
"""
from __future__ import annotations

import functools

import numpy as np

__all__ = ["PHASE_CHANNELS", "phase_channels", "phase_input", "phase_input_torch", "phase_weight",
           "apply_symmetry", "random_symmetry"]


def phase_channels(dims: int) -> tuple:
    """Names of the input channels for ``dims`` = 2 or 3."""
    return ("log_intensity", "mask") + tuple(f"coord_{a}" for a in ("zyx"[-dims:]))


PHASE_CHANNELS = {2: phase_channels(2), 3: phase_channels(3)}


def _coords(shape):
    out = []
    for ax, n in enumerate(shape):
        c = (np.arange(n, dtype=np.float32) - n // 2) / (n / 2)
        sh = [1] * len(shape)
        sh[ax] = n
        out.append(np.broadcast_to(c.reshape(sh), shape))
    return out


def phase_input(iobs, mask=None) -> np.ndarray:
    """``(C, *shape)`` float32 model input of a (centred) pattern; never modifies its inputs.

    ``iobs`` counts (negative values are clipped to 0), ``mask`` True where not
    measured. A pattern with nothing measured gives an all-zero intensity channel.
    """
    I = np.asarray(iobs, dtype=np.float64)
    m = np.zeros(I.shape, bool) if mask is None else np.asarray(mask, bool)
    if m.shape != I.shape:
        raise ValueError(f"mask shape {m.shape} != pattern shape {I.shape}")
    li = np.log1p(np.clip(I, 0, None))
    top = li[~m].max() if (~m).any() else 0.0
    x = np.zeros(I.shape, np.float32) if top <= 0 else (li / top).astype(np.float32)
    x[m] = 0
    return np.stack([x, m.astype(np.float32)] + _coords(I.shape)).astype(np.float32)


def phase_input_torch(iobs, mask):
    """:func:`phase_input` of torch tensors, computed on their device (no host round trip).

    ``iobs`` (float) and ``mask`` (bool) of the same shape on one device; returns the
    ``(C, *shape)`` float32 input there. The log is taken in float64 as in
    :func:`phase_input`, so both agree to float32 rounding (tested). Used by the CUDA
    family of ``DLPhaseInit``, whose box is already on the GPU; nothing in it waits for
    the device.
    """
    import torch
    if tuple(mask.shape) != tuple(iobs.shape):
        raise ValueError(f"mask shape {tuple(mask.shape)} != pattern shape {tuple(iobs.shape)}")
    dev = iobs.device
    m = mask.to(device=dev, dtype=torch.bool)
    li = torch.log1p(iobs.to(torch.float64).clamp_min(0))
    top = li.masked_fill(m, float("-inf")).amax()  # kept on the device: no host synchronisation
    x = torch.where(top > 0, li / top, 0.0).float().masked_fill(m, 0.0)
    return torch.stack([x, m.float()] + list(_coords_on(tuple(iobs.shape), str(dev))))


@functools.lru_cache(maxsize=8)
def _coords_on(shape, device):
    """:func:`_coords` as tensors on ``device``, made once per shape and device (not copied
    to the device at every prediction)."""
    import torch
    return tuple(torch.from_numpy(np.ascontiguousarray(c)).to(device) for c in _coords(shape))


#: Loss weights :func:`phase_weight` can give (``pynx-dlgap train-phase --loss-weight``): kind -> what ``w`` is.
WEIGHT_KINDS = {"log": "normalised log-intensity", "amplitude": "normalised amplitude sqrt(I/max I)"}


def check_weight_kind(kind: str) -> str:
    """``kind`` if it is one of :data:`WEIGHT_KINDS`, else a ValueError naming them."""
    if kind not in WEIGHT_KINDS:
        raise ValueError(f"phase loss weight (--loss-weight) must be one of {tuple(WEIGHT_KINDS)}, not {kind!r}")
    return kind


def phase_weight(intensity, kind: str = "log") -> np.ndarray:
    """Loss weight ``w`` (float32, maximum 1).

    ``kind='log'``: the normalised log-intensity ``log(I+1)/log(max I+1)`` (Masto et al. 2025);
    ``'amplitude'``: the normalised amplitude ``sqrt(I/max I)``, which weights each voxel as the
    phasing chain's amplitude projection does (the DL start's error weighted so predicts the
    chain's success better than the log weight: ``benchmarks/phase_weight.py``).
    """
    check_weight_kind(kind)
    a = np.clip(np.asarray(intensity, np.float64), 0, None)
    v = np.log1p(a) if kind == "log" else np.sqrt(a)
    top = v.max()
    return (v / top if top > 0 else v).astype(np.float32)


def _flip_q(a, ax):
    """``a(q) -> a(-q)`` along axis ``ax`` (index ``k -> 2(n//2) - k`` mod n)."""
    n = a.shape[ax]
    f = np.flip(a, ax)
    return np.roll(f, 1, ax) if n % 2 == 0 else f


def apply_symmetry(a, perm, flips) -> np.ndarray:
    """Transpose the spatial axes of ``a`` by ``perm`` then flip ``q -> -q`` along the axes in ``flips``.

    ``a`` may carry leading non-spatial axes (e.g. channels): the symmetry acts on
    its last ``len(perm)`` axes.
    """
    a = np.asarray(a)
    lead = a.ndim - len(perm)
    a = np.transpose(a, tuple(range(lead)) + tuple(lead + p for p in perm))
    for ax in flips:
        a = _flip_q(a, lead + ax)
    return np.ascontiguousarray(a)


def random_symmetry(rng: np.random.Generator, shape) -> tuple:
    """A random ``(perm, flips)``; only axes of equal length are permuted."""
    d = len(shape)
    perm = list(range(d))
    # permute among groups of equal size only
    for n in set(shape):
        idx = [i for i in range(d) if shape[i] == n]
        sh = list(rng.permutation(idx))
        for i, j in zip(idx, sh):
            perm[i] = j
    flips = tuple(i for i in range(d) if rng.random() < 0.5)
    return tuple(int(p) for p in perm), flips
