"""Crystals from a second, independent recipe: a check of the models outside their simulator.

The shipped models were trained on :mod:`pynx_dlgap.simulate` (faceted crystals with smoothed
surfaces and its own strain fields). Measured data and crystals made by other codes differ from
it. This module makes BCDI patterns in a deliberately different way, in a few lines of numpy
and without importing the simulator, so that a benchmark can show how the DL start does on
crystals it has never seen the like of (``benchmarks/phase_init.py --crystals analytic``):

* **shape**: an ellipsoid, a cylinder (2-D: a rectangle), a super-ellipsoid (exponent 4, a
  rounded cube) or an octahedron (2-D: a rhombus), with random semi-axes (ratio 0.8-1.2) and a
  random rotation; the support is **binary** (no smoothed edge), the object's modulus 1 in it;
* **size**: the support's largest extent along an axis is ``n / os`` (within 2.5 voxels for all but
  a few octahedra and rectangles, whose tips and corners make the discrete extent jump: up to 3.2
  measured), ``os`` drawn in ``oversampling`` (default 2.5-4.5);
* **phase** (``G.u`` inside the support): a weighted sum of a bending term
  ``(u.d)^2``, a surface layer ``exp(-((1 - s) / w)^2)`` (``s`` the shape function, 1 on the
  surface), an interface term ``exp(-(u.d' + 1) / l)`` (strain decaying from one side, as at
  a substrate) and a wave ``sin(k u.d'' + c)``, with random directions and weights, scaled to a
  peak-to-peak of exactly ``phase_range`` inside the support (``u`` the coordinates in units of
  the crystal's half-size);
* **pattern**: ``|cFT(object)|^2`` (centred FFT, Bragg peak at ``n // 2``), scaled to a peak
  of ``10**U(*log_peak)`` photons (plus an optional flat background ``floor``), Poisson noise; no
  gaps.

>>> c = analytic_crystal(0, dims=3, n=64, phase_range=np.pi)
>>> c["intensity"].shape, c["object"].dtype, c["params"]["kind"]
((64, 64, 64), dtype('complex64'), 'ellipsoid')
"""
from __future__ import annotations

import numpy as np

__all__ = ["analytic_crystal", "KINDS"]

KINDS = {2: ("ellipsoid", "cylinder", "superellipsoid", "octahedron"),
         3: ("ellipsoid", "cylinder", "superellipsoid", "octahedron")}


def _rotation(rng, dims):
    if dims == 2:
        a = rng.uniform(0, 2 * np.pi)
        return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))  # uniform on O(3)
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _shape_function(kind, u):
    """``s(u)`` (``u``: coordinates over semi-axes, first axis leading): <= 1 inside, 1 on the surface."""
    if kind == "ellipsoid":
        return np.sqrt(np.sum(u ** 2, axis=0))
    if kind == "superellipsoid":
        return np.sum(u ** 4, axis=0) ** 0.25
    if kind == "octahedron":
        return np.sum(np.abs(u), axis=0)
    if kind == "cylinder":  # axis along the first rotated axis (2-D: a rectangle)
        return np.maximum(np.abs(u[0]), np.sqrt(np.sum(u[1:] ** 2, axis=0)))
    raise ValueError(f"unknown crystal kind {kind!r}; one of {KINDS[3]}")


def _unit(rng, dims):
    d = rng.normal(size=dims)
    return d / np.linalg.norm(d)


def analytic_crystal(seed: int, dims: int = 3, n: int = 64, phase_range: float = np.pi, kind: str | None = None,
                     oversampling=(2.5, 4.5), log_peak=None, floor: float = 0.0) -> dict:
    """One crystal and its noisy pattern; see the module docstring for the recipe.

    Parameters
    ----------
    seed : the draw (shape, size, rotation, phase field, counts, noise)
    dims : 2 or 3; ``n`` the pattern's side (>= 16)
    phase_range : peak-to-peak phase inside the support, radians (>= 0)
    kind : one of :data:`KINDS` (default: ``KINDS[dims][seed % 4]``, so consecutive seeds cycle through them)
    oversampling : ``(lo, hi)``, the ratio ``n / largest extent`` is drawn uniformly in it (lo >= 2)
    log_peak : ``(lo, hi)``, log10 of the pattern's peak count (default (5, 6.5) in 3-D, (4, 5.5) in 2-D)
    floor : a flat background added to the expected counts everywhere, as a fraction of the peak
        (default 0: no background); ``object`` stays the crystal alone

    Returns a dict with ``intensity`` (float32 Poisson counts), ``expected`` (float32 noise-free
    counts), ``mask`` and ``dead`` (bool, all False), ``object`` (complex64, centred: modulus 1 in
    the support), ``support`` (bool) and ``params`` (seed, kind, semi-axes, oversampling, weights,
    peak, the measured phase peak-to-peak), the keys :mod:`pynx_dlgap.simulate`'s samples share.
    """
    dims, n = int(dims), int(n)
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, not {dims}")
    if n < 16:
        raise ValueError(f"n must be >= 16, not {n}")
    if not np.isfinite(phase_range) or phase_range < 0:
        raise ValueError(f"phase_range must be finite and >= 0, not {phase_range}")
    lo, hi = (float(v) for v in oversampling)
    if not (np.isfinite(floor) and floor >= 0):
        raise ValueError(f"floor must be finite and >= 0, not {floor}")
    if not 2.0 <= lo <= hi:
        raise ValueError(f"oversampling must be (lo, hi) with 2 <= lo <= hi, not {oversampling}")
    kind = KINDS[dims][int(seed) % 4] if kind is None else str(kind)
    if kind not in KINDS[dims]:
        raise ValueError(f"unknown crystal kind {kind!r}; one of {KINDS[dims]}")
    log_peak = ((5.0, 6.5) if dims == 3 else (4.0, 5.5)) if log_peak is None else tuple(float(v) for v in log_peak)
    if not (len(log_peak) == 2 and np.all(np.isfinite(log_peak)) and log_peak[0] <= log_peak[1]):
        raise ValueError(f"log_peak must be (lo, hi), finite, lo <= hi, not {log_peak}")
    rng = np.random.default_rng([int(seed), 424242])
    rot = _rotation(rng, dims)
    axes = rng.uniform(0.8, 1.2, dims)
    os_ = rng.uniform(lo, hi)
    grid = np.indices((n,) * dims, dtype=np.float64) - n // 2  # centred on n//2, as the Bragg peak
    rc = np.tensordot(rot.T, grid, axes=1)  # coordinates in the crystal's frame
    def shape_at(scale):  # (u, s, support) for semi-axes scale * axes
        u = rc / (scale * axes).reshape((dims,) + (1,) * dims)
        s = _shape_function(kind, u)
        return u, s, s <= 1.0

    scale = n / os_ / 2.0
    for _ in range(4):  # set the size so that the largest extent along an axis is n / os
        support = shape_at(scale)[2]
        ext = max(int(np.ptp(np.nonzero(support)[ax])) + 1 for ax in range(dims))
        scale *= (n / os_) / ext
    u, s, support = shape_at(scale)
    ups = u * axes.reshape((dims,) + (1,) * dims)  # isotropic: in units of the mean half-size

    def proj(d):
        return np.tensordot(d, ups, axes=1)

    w = dict(bending=rng.uniform(0, 1), surface=rng.uniform(0, 1), interface=rng.uniform(0, 1),
             wave=rng.uniform(0, 0.5))
    width, decay, k, c = rng.uniform(0.1, 0.3), rng.uniform(0.2, 0.5), rng.uniform(1, 3), rng.uniform(0, 2 * np.pi)
    f = (w["bending"] * proj(_unit(rng, dims)) ** 2
         + w["surface"] * np.exp(-((1.0 - s) / width) ** 2)
         + w["interface"] * np.exp(-(proj(_unit(rng, dims)) + 1.0) / decay)
         + w["wave"] * np.sin(k * proj(_unit(rng, dims)) + c))
    fs = f[support]
    span = float(np.ptp(fs))
    phase = (f - fs.min()) / span * float(phase_range) if span > 0 else np.zeros_like(f)
    obj = np.where(support, np.exp(1j * phase), 0)
    F = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(obj)))
    I = np.abs(F) ** 2
    peak = 10 ** rng.uniform(*log_peak)
    expected = I * (peak / I.max()) + float(floor) * peak
    intensity = rng.poisson(expected).astype(np.float32)
    zeros = np.zeros(intensity.shape, bool)
    ptp = float(np.ptp(phase[support]))
    params = dict(seed=int(seed), dims=dims, n=n, kind=kind, semi_axes=(scale * axes).tolist(),
                  oversampling=float(os_), weights=w, peak=float(peak), floor=float(floor), phase_range=float(phase_range),
                  phase_ptp=ptp, recipe="pynx_dlgap.evaluate.analytic")
    return dict(intensity=intensity, expected=expected.astype(np.float32), mask=zeros, dead=zeros.copy(),
                object=obj.astype(np.complex64), support=support, params=params)
