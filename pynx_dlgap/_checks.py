"""Input validation at the public boundary: one place, clear messages, no work done first.

Every public entry point (fills, inpainting, phase prediction, operators, CLIs)
calls :func:`check_pattern` before touching the data. Nothing here modifies the
caller's arrays.
"""
from __future__ import annotations

import numpy as np

__all__ = ["PatternError", "check_pattern", "check_mask"]


class PatternError(ValueError):
    """A diffraction pattern or mask that cannot be processed (says what to do)."""


def check_mask(mask, shape, name="mask", allow_full=False) -> np.ndarray:
    """Return ``mask`` as a boolean array (True = not measured) after checks."""
    m = np.asarray(mask)
    if m.shape != tuple(shape):
        raise PatternError(
            f"{name} has shape {m.shape} but the pattern has shape {tuple(shape)}; "
            f"the mask must have exactly the pattern's shape (True/1 = not measured)")
    if m.dtype != bool:
        if not (np.issubdtype(m.dtype, np.integer) or np.issubdtype(m.dtype, np.floating)):
            raise PatternError(f"{name} has dtype {m.dtype}; use bool or 0/1 integers")
        if not np.all(np.isfinite(m)) or not np.all((m == 0) | (m == 1)):
            raise PatternError(f"{name} must contain only 0/1 (or True/False) values")
        m = m != 0
    if not allow_full and m.all():
        raise PatternError(f"{name} covers every pixel: there is nothing measured to fill from")
    return m


def check_pattern(iobs, mask=None, ndim=(2, 3), name="pattern", min_shape=None,
                  allow_full_mask=False):
    """Check a diffraction pattern (and its mask) and return ``(iobs, mask)``.

    ``iobs`` is returned as a read-only float32 view or copy (never the caller's
    writable buffer), ``mask`` as a boolean array (all False when None).

    Raises :class:`PatternError` for: non-numeric or complex dtype, wrong ndim,
    a dimension smaller than ``min_shape``, NaN/inf, negative counts in
    measured pixels, a mask of another shape or covering everything.
    """
    a = np.asarray(iobs)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)
                                 or a.dtype == bool):
        raise PatternError(f"{name} has dtype {a.dtype}; expected real intensities (float or integer counts)")
    if a.ndim not in tuple(np.atleast_1d(ndim)):
        raise PatternError(f"{name} has ndim={a.ndim} (shape {a.shape}); expected a "
                           + " or ".join(f"{d}-D" for d in np.atleast_1d(ndim)) + " array (z, y, x)")
    if min_shape is not None:
        small = [s for s in a.shape if s < min_shape]
        if small:
            raise PatternError(f"{name} shape {a.shape} is smaller than {min_shape} pixels along an axis; "
                               f"every axis must be at least {min_shape}")
    m = np.zeros(a.shape, dtype=bool) if mask is None else check_mask(mask, a.shape, allow_full=allow_full_mask)
    meas = a[~m]
    if not np.all(np.isfinite(meas)):
        n = int(np.count_nonzero(~np.isfinite(meas)))
        raise PatternError(f"{name} has {n} NaN/inf values in measured pixels; mask them (mask=True) "
                           f"or replace them before processing")
    if meas.size and meas.min() < 0:
        n = int(np.count_nonzero(meas < 0))
        raise PatternError(f"{name} has {n} negative counts in measured pixels (min {meas.min():g}); "
                           f"intensities must be >= 0. If these are PyNX-encoded masked pixels, "
                           f"pass them as a mask instead")
    if a.dtype == np.float32 and a.flags.c_contiguous:
        out = a.view()  # no copy; read-only so that nothing downstream writes into the caller's data
    else:
        out = np.ascontiguousarray(a, dtype=np.float32)
    out.flags.writeable = False
    return out, m
