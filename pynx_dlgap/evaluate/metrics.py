"""Detector-space quality of a gap fill, measured **inside the gap** against the truth.

Every metric takes ``(truth, filled, mask)`` with ``mask`` True on the voxels
to score (the gap: not measured) and compares ``filled`` with the ground-truth
intensity ``truth`` there only. Arrays are 2-D or 3-D, same shape; all
computations are done in float64.

Metrics (``L = log(I + 1)``):

========== =====================================================================
``pcc_log`` Pearson correlation of ``L_fill`` and ``L_true`` over the gap voxels
``pcc``     Pearson correlation of ``I_fill`` and ``I_true``
``ssim_log`` SSIM of ``L`` (see :func:`ssim_log`): the SSIM *map* over the full
            array, averaged over the gap voxels
``r_factor`` ``sum|I_fill - I_true| / sum I_true`` over the gap
``mae_log`` mean ``|L_fill - L_true|`` over the gap
``mae``     mean ``|I_fill - I_true|`` over the gap
``amp``     relative amplitude error ``sum (sqrt I_fill - sqrt I_true)^2 / sum I_true``
            over the gap: the error phase retrieval sees (amplitudes are what its
            modulus constraint imposes)
``n_gap``   number of scored voxels
========== =====================================================================

Degenerate cases are defined, not NaN:

* Pearson correlation when either side is constant over the gap (e.g. a
  constant or zero fill): ``1.0`` if the fill equals the truth there, else
  ``0.0`` (a constant carries no correlation).
* R-factor and amplitude error when ``sum I_true == 0`` over the gap: ``0.0`` for a perfect fill,
  else ``inf``.

``filled`` must be finite and >= 0 everywhere (fills clamp); ``truth`` too.
"""
from __future__ import annotations

import numpy as np

from .._checks import PatternError, check_mask, check_pattern

__all__ = ["pcc", "pcc_log", "ssim_log", "r_factor", "mae", "mae_log", "amp_error", "gap_metrics"]


def _inputs(truth, filled, mask):
    if mask is None:
        raise PatternError("a gap mask is required (True on the voxels to score)")
    # the truth is the reference everywhere (inside the gap too): finite, >= 0
    t, _ = check_pattern(truth, None, name="truth")
    m = check_mask(mask, t.shape, allow_full=True)
    f, _ = check_pattern(filled, None, name="filled")
    if f.shape != t.shape:
        raise PatternError(f"filled has shape {f.shape} but truth has shape {t.shape}")
    if not m.any():
        raise PatternError("the mask selects no voxel: nothing to score (True = gap voxel)")
    return t, f, m


def _pearson(a, b):
    if a.max() == a.min() or b.max() == b.min():  # exact test: a - mean(a) may leave rounding noise
        return None
    a = a - a.mean()
    b = b - b.mean()
    sa = np.sqrt(np.dot(a, a))
    sb = np.sqrt(np.dot(b, b))
    if sa == 0.0 or sb == 0.0:
        return None
    return float(np.clip(np.dot(a, b) / (sa * sb), -1.0, 1.0))


def _pcc(t, f):
    r = _pearson(t, f)
    if r is None:
        return 1.0 if np.array_equal(t, f) else 0.0
    return r


def pcc(truth, filled, mask) -> float:
    """Pearson correlation of the intensities over the gap voxels."""
    t, f, m = _inputs(truth, filled, mask)
    return _pcc(t[m].astype(np.float64), f[m].astype(np.float64))


def pcc_log(truth, filled, mask) -> float:
    """Pearson correlation of ``log(I+1)`` over the gap voxels."""
    t, f, m = _inputs(truth, filled, mask)
    return _pcc(np.log1p(t[m].astype(np.float64)), np.log1p(f[m].astype(np.float64)))


def r_factor(truth, filled, mask) -> float:
    """``sum|I_fill - I_true| / sum I_true`` over the gap voxels."""
    t, f, m = _inputs(truth, filled, mask)
    return _rf(t[m].astype(np.float64), f[m].astype(np.float64))


def _rf(t, f):
    num = np.abs(f - t).sum()
    den = t.sum()
    if den == 0.0:
        return 0.0 if num == 0.0 else float("inf")
    return float(num / den)


def amp_error(truth, filled, mask) -> float:
    """``sum (sqrt I_fill - sqrt I_true)^2 / sum I_true`` over the gap voxels."""
    t, f, m = _inputs(truth, filled, mask)
    return _amp(t[m].astype(np.float64), f[m].astype(np.float64))


def _amp(t, f):
    num = np.sum((np.sqrt(f) - np.sqrt(t)) ** 2)
    den = t.sum()
    if den == 0.0:
        return 0.0 if num == 0.0 else float("inf")
    return float(num / den)


def mae(truth, filled, mask) -> float:
    """Mean absolute error of the intensities over the gap voxels."""
    t, f, m = _inputs(truth, filled, mask)
    return float(np.abs(f[m].astype(np.float64) - t[m]).mean())


def mae_log(truth, filled, mask) -> float:
    """Mean absolute error of ``log(I+1)`` over the gap voxels."""
    t, f, m = _inputs(truth, filled, mask)
    return float(np.abs(np.log1p(f[m].astype(np.float64)) - np.log1p(t[m].astype(np.float64))).mean())


def _ssim_map_log(t, f, win_size=7):
    from skimage.metrics import structural_similarity
    lt = np.log1p(t.astype(np.float64))
    lf = np.log1p(f.astype(np.float64))
    dr = float(lt.max() - lt.min())
    if dr == 0.0:
        dr = 1.0
    w = min(int(win_size), min(lt.shape))
    if w % 2 == 0:
        w -= 1
    if w < 3:
        raise PatternError(f"SSIM needs every axis >= 3 voxels, got shape {lt.shape}")
    _, smap = structural_similarity(lt, lf, data_range=dr, win_size=w, full=True)
    return smap


def ssim_log(truth, filled, mask, win_size: int = 7) -> float:
    """SSIM of ``log(I+1)`` restricted to the gap.

    The SSIM map is computed by :func:`skimage.metrics.structural_similarity`
    over the **full** array (uniform ``win_size``-voxel window, 7 by default,
    reduced to the smallest odd axis length on small arrays; ``data_range`` =
    range of ``log(I_true+1)`` over the full array, 1 if that is 0) and
    averaged over the gap voxels. Windows straddle the gap edge, so measured
    voxels next to the gap (identical in both arrays) take part in the local
    statistics, as they do in what a viewer sees. Window statistics at the
    array border use :func:`scipy.ndimage.uniform_filter`'s ``reflect``
    boundary (skimage's default), so gaps touching a border are scored too.
    Constants: skimage defaults (K1=0.01, K2=0.03, sample covariance).
    """
    t, f, m = _inputs(truth, filled, mask)
    smap = _ssim_map_log(t, f, win_size)
    return float(smap[m].mean())


def gap_metrics(truth, filled, mask, ssim: bool = True) -> dict:
    """All gap metrics in one dict (keys listed in the module docstring).

    ``ssim=False`` skips the SSIM (its window pass is the only costly part).
    """
    t, f, m = _inputs(truth, filled, mask)
    tm = t[m].astype(np.float64)
    fm = f[m].astype(np.float64)
    lt, lf = np.log1p(tm), np.log1p(fm)
    out = {
        "pcc_log": _pcc(lt, lf),
        "pcc": _pcc(tm, fm),
        "ssim_log": float(_ssim_map_log(t, f)[m].mean()) if ssim else float("nan"),
        "r_factor": _rf(tm, fm),
        "mae_log": float(np.abs(lf - lt).mean()),
        "mae": float(np.abs(fm - tm).mean()),
        "amp": _amp(tm, fm),
        "n_gap": int(m.sum()),
    }
    return out
