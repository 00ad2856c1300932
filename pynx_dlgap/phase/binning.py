"""Binning a pattern for the phase model, and mapping the phase back to the full grid.

Why: the phase models were trained on crystals oversampled 2-8 times per axis
(:mod:`pynx_dlgap.simulate.knobs`). The oversampling of a pattern (array size / crystal
size, per axis) does not change when a region of it is cut out, only when it is
binned: a 256-px pattern of a 30-px crystal (oversampling 8.5) shows the model, in its
64-px box around the peak, a crystal of 7.5 box pixels, far from anything it was trained
on. Binning ``b`` detector pixels into one divides the oversampling by ``b`` and keeps the
real-space pixel size (the field of view shrinks by ``b``, which the crystal still fits).
``benchmarks/phase_bin.py`` measures what that does to the DL start.

The method:

1. :func:`estimate_oversampling`: per axis, the pattern's size over half the extent of its
   autocorrelation's profile (``|IFT(I)|`` with the gaps filled by log-linear interpolation,
   1-px Gaussian, summed over the other axes, above 5 % of its maximum), i.e. over the
   crystal's extent. On crystals of the independent recipe (:mod:`pynx_dlgap.evaluate.analytic`)
   it is mostly 1.0-1.7x the array size over the support's bounding box (0.9-2.4x at the extremes),
   with or without a gap.
2. :func:`auto_bin`: one factor, ``floor(median estimate over the axes / 6)`` (at least 1): a
   pattern is binned only where its crystal is oversampled beyond the training range (an
   estimate of 12 is a true oversampling of about 7-11), and then to an estimated 6 (a true
   3.5-5.5); never so much that a binned axis fills less than 90 % of the model's box (an axis
   under 1.8 times the box is not binned; :func:`binnable_axes`). Chosen on ``benchmarks/phase_bin.py``'s crystals: binning 2x
   took the DL start from 0 to 100 % success where the crystals were oversampled 9-14 times,
   but binning per axis by ``floor(estimate / 4)`` (the first rule tried) lowered it where they
   were oversampled 5-8 times (``benchmarks/results/phase_bin_per_axis_rule.txt``).
3. :func:`bin_pattern`: whole bins only, laid out so the centre voxel ``N//2`` (the Bragg peak
   in PyNX's centred layout) falls in the binned array's centre bin ``Nb//2``; the
   measured voxels of a bin are summed and scaled by ``voxels / measured``; a bin with fewer
   than half its voxels measured is masked. Edge voxels that do not fill a bin are left out.
4. the model predicts the binned pattern's phase (its box, as for any pattern);
5. :func:`unbin_phase`: each full-grid voxel takes the phase of the linearly interpolated
   phasor ``exp(i phi)`` at its position on the binned grid (nearest bin beyond the
   outermost bin centres); ``NaN`` where the binned phase is ``NaN`` (outside the box).

Steps 3-5 are what ``predict_phase(..., bin=...)`` does; ``bin='auto'`` applies 1-2 first.
The user's arrays are never modified or resized.
"""
from __future__ import annotations

import numpy as np

__all__ = ["estimate_oversampling", "auto_bin", "binnable_axes", "MIN_BOX_FILL", "resolve_bin", "bin_layout", "bin_pattern", "unbin_phase",
           "OVERSAMPLING_PER_BIN", "ACF_THRESHOLD"]

#: auto_bin's factor: the median estimate over the axes over this, floored (binning from an estimate of 12)
OVERSAMPLING_PER_BIN = 6.0
#: an axis is binned by ``b`` only if the binned axis fills at least this share of the model's box
#: (the rest of the box is masked, as for any smaller pattern): PyNX's runner crops a centred
#: 128-px axis to 126 when it centres the data, which still bins 2x for a 64 box (its crop follows
#: the centre of mass and can leave less, e.g. 112: not binned)
MIN_BOX_FILL = 0.9
#: the threshold (fraction of its maximum) of the autocorrelation's profile that delimits the crystal's extent
ACF_THRESHOLD = 0.05


def estimate_oversampling(iobs, mask=None, threshold: float = ACF_THRESHOLD) -> tuple:
    """Per-axis oversampling estimate: ``N_axis`` / half the extent along that axis of the
    autocorrelation's profile (``|IFT(I)|``, 1-px Gaussian, summed over the other axes, its
    median subtracted) above ``threshold`` of its maximum. Masked voxels are filled by
    log-linear interpolation first: a gap left at zero spreads the autocorrelation along its
    normal.

    The autocorrelation of a crystal of extent ``D`` spans ``2 D``; its tails make this mostly an
    over-estimate: 0.9-2.0x the array size over the support's bounding box on 40 crystals of the
    independent recipe at a pi phase range (up to 2.4x at 2 pi), moved by at most 23 % by a 6-px
    cross beside the peak (``tests/test_binning.py``).
    """
    from scipy.ndimage import gaussian_filter

    from ..simulate.diffraction import icfft
    I = np.asarray(iobs, np.float32)
    if mask is not None and np.any(mask):  # a gap left empty would stretch the autocorrelation across it
        from ..inpaint.baselines import fill_loglinear
        I = np.asarray(fill_loglinear(I, np.asarray(mask, bool)), np.float32)
    a = gaussian_filter(np.abs(icfft(I.astype(np.complex64))), 1.0)
    out = []
    for ax in range(I.ndim):
        prof = a.sum(axis=tuple(i for i in range(I.ndim) if i != ax)).astype(np.float64)
        prof -= np.median(prof)  # the flat part (noise, background) of the profile
        idx = np.nonzero(prof > float(threshold) * prof.max())[0]
        half = max((idx[-1] - idx[0] + 1) / 2.0, 1.0) if idx.size else 1.0
        out.append(I.shape[ax] / half)
    return tuple(float(v) for v in out)


def auto_bin(iobs, mask, size) -> tuple:
    """``(bins, estimate)``: the per-axis bin factors ``bin='auto'`` uses and the oversampling
    estimate they come from (:func:`estimate_oversampling`); see the module docstring."""
    est = estimate_oversampling(iobs, mask)
    b = max(1, int(float(np.median(est)) // OVERSAMPLING_PER_BIN))
    bins = tuple(max(1, min(b, int(int(N) // (MIN_BOX_FILL * int(n))))) for N, n in zip(np.shape(iobs), size))
    return bins, est


def binnable_axes(shape, size) -> bool:
    """Whether ``'auto'`` may bin a pattern of ``shape`` for a model box of ``size``: some axis is at
    least ``2 * MIN_BOX_FILL`` (1.8) times the box (otherwise no estimate is computed)."""
    return any(int(N) >= 2 * MIN_BOX_FILL * int(n) for N, n in zip(shape, size))


def resolve_bin(bin, ndim: int) -> tuple | str:
    """``'auto'``, or a tuple of ``ndim`` positive ints from an int, a sequence or a string
    (``'auto'``, ``'2'``, ``'2,2,1'``, ``'(2, 2, 1)'``: command lines and parameter files); a
    ``ValueError`` otherwise (called before any work)."""
    if isinstance(bin, str):
        text = bin.strip().strip("()[]")
        if text == "auto":
            return "auto"
        try:
            bin = [int(v) for v in text.split(",") if v.strip()] if "," in text else int(text)
        except ValueError:
            raise ValueError(f"bin must be 'auto', a positive int or {ndim} of them, got {bin!r}") from None
    vals = (bin,) * ndim if np.ndim(bin) == 0 else tuple(bin)
    if len(vals) != ndim:
        raise ValueError(f"bin needs {ndim} factors for a {ndim}-D pattern, got {len(vals)}")
    out = []
    for v in vals:
        if isinstance(v, (bool, np.bool_)) or not float(v).is_integer() or int(v) < 1:
            raise ValueError(f"bin factors must be positive integers, got {bin!r}")
        out.append(int(v))
    return tuple(out)


def bin_layout(shape, bins) -> tuple:
    """``(offsets, binned_shape)``: the first voxel binned along each axis and the number of
    bins, such that voxel ``N//2`` lies in bin ``Nb//2`` (whole bins only)."""
    offs, nbs = [], []
    for N, b in zip(shape, bins):
        N, b = int(N), int(b)
        c = N // 2
        o = (c - b // 2) % b  # the first whole bin; c is voxel b//2 of its bin (c - o) // b (its middle for odd b)
        kc = (c - o) // b
        after = (N - o) // b - kc - 1  # whole bins after the centre's
        before = min(kc, after + 1)
        after = min(after, before)
        o += (kc - before) * b
        nbs.append(before + 1 + after)
        offs.append(o)
        if nbs[-1] < 1:
            raise ValueError(f"an axis of {N} px cannot hold a bin of {b}")
    return tuple(offs), tuple(nbs)


def bin_pattern(iobs, mask, bins) -> tuple:
    """``(binned_iobs, binned_mask, offsets)`` (float32, bool): see the module docstring.
    ``bins`` a tuple of positive ints, one per axis (:func:`resolve_bin`)."""
    I = np.asarray(iobs)
    m = np.zeros(I.shape, bool) if mask is None else np.asarray(mask, bool)
    offs, nbs = bin_layout(I.shape, bins)
    sl = tuple(slice(o, o + nb * b) for o, nb, b in zip(offs, nbs, bins))
    sh = [v for nb, b in zip(nbs, bins) for v in (nb, b)]
    red = tuple(range(1, 2 * I.ndim, 2))
    meas = (~m[sl]).reshape(sh).sum(axis=red)
    tot = np.where(m[sl], 0.0, I[sl].astype(np.float64)).reshape(sh).sum(axis=red)
    per = int(np.prod(bins))
    Ib = np.where(meas > 0, tot * per / np.maximum(meas, 1), 0.0)
    return Ib.astype(np.float32), meas * 2 < per, offs


def unbin_phase(phase_binned, bins, offsets, shape) -> np.ndarray:
    """The binned grid's phase on the full grid (float32, ``NaN`` where unknown): linear
    interpolation of the phasor at each voxel's position on the binned grid."""
    from scipy.ndimage import map_coordinates
    pb = np.asarray(phase_binned, np.float64)
    ok = np.isfinite(pb)
    z = np.where(ok, np.exp(1j * np.where(ok, pb, 0.0)), 0.0)
    axes = [(np.arange(int(N)) - o - (b - 1) / 2.0) / b for N, o, b in zip(shape, offsets, bins)]
    grid = np.meshgrid(*axes, indexing="ij")
    re = map_coordinates(z.real, grid, order=1, mode="nearest")
    im = map_coordinates(z.imag, grid, order=1, mode="nearest")
    known = map_coordinates(ok.astype(np.float32), grid, order=0, mode="nearest") > 0.5
    return np.where(known, np.arctan2(im, re), np.nan).astype(np.float32)
