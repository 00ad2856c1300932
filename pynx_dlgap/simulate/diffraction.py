"""Reciprocal-space side of the simulator: Fourier transforms, counts, noise, statistics.

FFT convention (the one used everywhere in :mod:`pynx_dlgap.simulate`)
---------------------------------------------------------------------
For an array of shape ``(n_0, ..., n_{d-1})`` the centre is ``c_j = n_j // 2``
(real and reciprocal space alike), and

.. math:: F[k] = \\sum_r o[r] \\exp(-2\\pi i \\sum_j (k_j - c_j)(r_j - c_j) / n_j)

i.e. ``F = fftshift(fftn(ifftshift(o)))`` (:func:`cfft`): the Bragg peak
(``q = 0``) is at index ``n // 2`` and an object centred at ``n // 2`` has no
phase ramp. The simulated intensity is ``scale * |F|**2`` (+ background, noise).
:func:`dft_box` computes the same sum directly from a small box holding the
object, with real (sub-voxel) coordinates; ``tests/test_simulate.py`` checks both
against a brute-force float64 DFT.
"""
from __future__ import annotations

import numpy as np
import scipy.fft as sfft

__all__ = ["centre", "cfft", "icfft", "dft_matrix", "dft_box", "q_grid", "background",
           "poisson", "dead_pixels", "pattern_stats", "phase_label"]


def centre(shape) -> tuple:
    """Index of the array centre (``q = 0``): ``n // 2`` along each axis."""
    return tuple(int(n) // 2 for n in shape)


def cfft(a: np.ndarray, workers: int | None = None) -> np.ndarray:
    """Centred FFT ``fftshift(fftn(ifftshift(a)))`` (origin at ``n // 2`` in and out)."""
    return sfft.fftshift(sfft.fftn(sfft.ifftshift(a), workers=workers))


def icfft(f: np.ndarray, workers: int | None = None) -> np.ndarray:
    """Inverse of :func:`cfft` (``ifftn`` normalisation: ``icfft(cfft(a)) == a``)."""
    return sfft.fftshift(sfft.ifftn(sfft.ifftshift(f), workers=workers))


def q_grid(n: int, shift: float = 0.0) -> np.ndarray:
    """Reciprocal coordinates ``(k - n//2 + shift) / n`` (cycles per voxel) of an axis."""
    return (np.arange(n) - n // 2 + shift) / n


def dft_matrix(n: int, coords: np.ndarray, shift: float = 0.0, dtype=np.complex64) -> np.ndarray:
    """``E[k, r] = exp(-2 pi i q_k x_r)`` with ``q = q_grid(n, shift)`` and real positions
    ``x_r = coords[r]`` (voxels of the output grid)."""
    ph = np.outer(q_grid(n, shift), np.asarray(coords, dtype=np.float64))
    ph -= np.round(ph)  # exact range reduction before the exponential
    return np.exp(-2j * np.pi * ph).astype(dtype)


_TPC = []


def _one_blas_thread():
    """Context limiting BLAS to one thread (threadpoolctl when available).

    The matrix products of :func:`dft_box` are small: multi-threaded OpenBLAS
    spins and slows them down 10-1000x on a loaded machine."""
    if not _TPC:
        try:
            from threadpoolctl import ThreadpoolController
            _TPC.append(ThreadpoolController())
        except Exception:  # noqa: BLE001 - optional dependency
            _TPC.append(None)
    if _TPC[0] is None:
        import contextlib
        return contextlib.nullcontext()
    return _TPC[0].limit(limits=1, user_api="blas")


def dft_box(box: np.ndarray, coords: list, out_shape, shift=None, scale: float = 1.0,
            dtype=np.complex64) -> np.ndarray:
    """Centred DFT of an object given on a small box at arbitrary positions.

    ``F[k] = scale * sum_r box[r] exp(-2 pi i sum_j q_j(k_j) coords[j][r_j])`` with
    ``q_j = (k_j - n_j//2 + shift_j) / n_j``: the :func:`cfft` convention, but the
    object may sit anywhere (sub-voxel), be sampled finer than the output grid
    (``coords`` spaced by ``1/s``: the output is then the central part of a bigger
    pattern, a *crop*), and only the box is summed. Separable: cost
    ``O(n M^d + ...)`` matrix products instead of a big zero-padded FFT.
    """
    d = box.ndim
    out_shape = tuple(int(n) for n in out_shape)
    if len(coords) != d or len(out_shape) != d:
        raise ValueError("dft_box: coords and out_shape need one entry per box axis")
    shift = (0,) * d if shift is None else tuple(shift)
    out = np.ascontiguousarray(box, dtype=dtype)
    mats = [dft_matrix(out_shape[ax], coords[ax], shift[ax], dtype) for ax in range(d)]
    with _one_blas_thread():
        # last axis: (..., M) @ (M, n)
        out = (out.reshape(-1, out.shape[-1]) @ mats[-1].T).reshape(out.shape[:-1] + (out_shape[-1],))
        if d == 3:  # middle axis, one 2-D product per z plane
            e = mats[1]
            out = np.stack([e @ out[i] for i in range(out.shape[0])])
        # first axis: (n, M) @ (M, rest)
        rest = out.shape[1:]
        out = (mats[0] @ out.reshape(out.shape[0], -1)).reshape((out_shape[0],) + rest)
    if scale != 1.0:
        out *= dtype(scale)
    return out


def background(shape, peak: float, floor: float = 0.0, diffuse: float = 0.0,
               width: float = 8.0, shift=None) -> np.ndarray | float:
    """Smooth diffuse background in counts: ``peak * (floor + diffuse * L(q))`` with
    ``L = 1 / (1 + |k - k0|^2 / width^2)`` a Lorentzian of half-width ``width``
    pixels centred on the Bragg peak ``k0`` (``n//2 - shift``)."""
    if floor == 0 and diffuse == 0:
        return 0.0
    d = len(shape)
    shift = (0,) * d if shift is None else shift
    r2 = np.zeros((1,) * d, dtype=np.float32)
    for j, n in enumerate(shape):
        sh = [1] * d
        sh[j] = -1
        k = (np.arange(n) - n // 2 + shift[j]).astype(np.float32) / np.float32(width)
        r2 = r2 + (k * k).reshape(sh)
    return np.float32(peak) * (np.float32(floor) + np.float32(diffuse) / (1 + r2))


def poisson(rng: np.random.Generator, expected: np.ndarray) -> np.ndarray:
    """Poisson counts (float32) with mean ``expected``."""
    return rng.poisson(np.asarray(expected, dtype=np.float64)).astype(np.float32)


def dead_pixels(rng: np.random.Generator, shape, fraction: float) -> np.ndarray:
    """Isolated dead *detector* pixels: ``round(fraction * ny * nx)`` distinct
    ``(y, x)`` pixels, dead in every frame (a line along z in a 3-D stack)."""
    dead = np.zeros(shape, dtype=bool)
    ny, nx = shape[-2], shape[-1]
    k = int(round(fraction * ny * nx))
    if k:
        flat = rng.choice(ny * nx, size=k, replace=False)
        dead[..., flat // nx, flat % nx] = True
    return dead


def pattern_stats(intensity: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """Quick regime check of a pattern (measured voxels only when ``mask`` is given).

    Returns ``peak`` (max counts), ``frac_gt_100`` / ``frac_lt_1`` (fraction of
    voxels above 100 / below 1 photon), ``median``, ``mean`` and ``dynamic_range``
    (log10 of peak over the 1st percentile, +1 photon).
    Measured BCDI crops keep > 100 photons in most voxels; textbook simulations
    fall below 1 photon over most of the array.
    """
    a = np.asarray(intensity)
    if mask is not None:
        a = a[~np.asarray(mask, dtype=bool)]
    a = a.ravel()
    if a.size == 0:
        raise ValueError("pattern_stats: no measured voxel")
    peak = float(a.max())
    p1 = float(np.percentile(a, 1))
    return dict(peak=peak, frac_gt_100=float(np.mean(a > 100)), frac_lt_1=float(np.mean(a < 1)),
                median=float(np.median(a)), mean=float(a.mean()),
                dynamic_range=float(np.log10((peak + 1) / (p1 + 1))))


def phase_label(obj: np.ndarray, com_offset=None, workers: int | None = None) -> np.ndarray:
    """The reciprocal-space phase label of an object (float32, radians in (-pi, pi]).

    ``arg(cfft(obj) * exp(2 pi i q . delta))`` with ``delta = com_offset`` (the
    sub-voxel offset of the modulus centre of mass from the array centre; computed
    from ``|obj|`` when None), then the global phase is set so that the value at
    ``q = 0`` (the array centre) is 0. This is exactly the ``phase`` returned by
    :func:`~pynx_dlgap.simulate.simulate_2d` / ``simulate_3d``
    (pass ``com_offset=params['com_offset']``).
    """
    obj = np.asarray(obj)
    if com_offset is None:
        m = np.abs(obj).astype(np.float64)
        tot = m.sum()
        com_offset = []
        for j, n in enumerate(obj.shape):
            sh = [1] * obj.ndim
            sh[j] = -1
            com_offset.append(float((m * np.arange(n).reshape(sh)).sum() / tot - n // 2))
    f = cfft(obj.astype(np.complex128), workers=workers)
    ramp = np.zeros((1,) * obj.ndim)
    for j, n in enumerate(obj.shape):
        sh = [1] * obj.ndim
        sh[j] = -1
        ramp = ramp + (q_grid(n) * com_offset[j]).reshape(sh)
    f = f * np.exp(2j * np.pi * ramp)
    f0 = f[centre(obj.shape)]
    if abs(f0) > 0:
        f = f * (np.conj(f0) / abs(f0))
    return np.angle(f).astype(np.float32)
