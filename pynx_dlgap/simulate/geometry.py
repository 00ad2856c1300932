"""Convex crystal shapes as intersections of half-spaces, in any dimension (2 or 3).

Every simulated crystal -- the 2-D random polygon, the 3-D Wulff, Winterbottom,
cube, octahedron and random shapes -- is a :class:`Polytope`: a set of planes
``n_i . u <= b_i`` in a *normalised crystal frame* ``u``. :func:`place` maps it
into the detector-conjugate real-space frame ``x`` (pattern-voxel units, object
centred on 0) with a rotation and a per-axis scale chosen so that the object's
bounding box has exactly the requested extent along every axis (that extent is
what sets the oversampling ratio). :class:`Placed` then evaluates, on any
axis-aligned grid and without building coordinate arrays, the signed distance
to each facet in voxel units: that one quantity drives the modulus (sharp or
smoothed edges), the support and the surface-relaxation displacement field.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Polytope", "Placed", "place", "chebyshev_centre", "vertices",
           "plane_wave_field", "smooth_noise", "random_rotation"]


@dataclass
class Polytope:
    """Planes ``normals[i] . u <= offsets[i]`` (unit normals) in the crystal frame.

    ``family`` labels each plane (``'100'``, ``'111'``, ``'110'``, ``'hull'``,
    ``'random'``, ``'substrate'``); ``substrate`` is the index of the substrate
    plane (Winterbottom) or None.
    """

    normals: np.ndarray
    offsets: np.ndarray
    family: list = field(default_factory=list)
    substrate: int | None = None

    def __post_init__(self):
        n = np.asarray(self.normals, dtype=np.float64)
        n = n / np.linalg.norm(n, axis=1, keepdims=True)
        self.normals = n
        self.offsets = np.asarray(self.offsets, dtype=np.float64)
        if not self.family:
            self.family = ["plane"] * len(n)

    @property
    def ndim(self) -> int:
        return self.normals.shape[1]

    def add(self, normal, offset, family, substrate=False) -> "Polytope":
        n = np.asarray(normal, dtype=np.float64)
        n = n / np.linalg.norm(n)
        out = Polytope(np.vstack([self.normals, n]), np.append(self.offsets, offset),
                       list(self.family) + [family], self.substrate)
        if substrate:
            out.substrate = len(out.offsets) - 1
        return out

    def pruned(self, tol: float = 1e-7) -> tuple["Polytope", np.ndarray]:
        """Drop planes that do not carry a facet; return ``(polytope, vertices)``."""
        v = vertices(self)
        slack = self.offsets[:, None] - self.normals @ v.T          # (P, V) >= 0
        keep = (np.abs(slack) < tol * max(1.0, np.abs(v).max())).sum(axis=1) >= self.ndim
        idx = np.flatnonzero(keep)
        sub = None
        if self.substrate is not None and keep[self.substrate]:
            sub = int(np.searchsorted(idx, self.substrate))
        return Polytope(self.normals[idx], self.offsets[idx], [self.family[i] for i in idx], sub), v


def chebyshev_centre(normals: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre and radius of the largest ball inside ``normals . u <= offsets``."""
    from scipy.optimize import linprog

    d = normals.shape[1]
    c = np.zeros(d + 1)
    c[-1] = -1.0
    a = np.hstack([normals, np.linalg.norm(normals, axis=1, keepdims=True)])
    res = linprog(c, A_ub=a, b_ub=offsets, bounds=[(None, None)] * d + [(0, None)], method="highs")
    if res.status != 0 or res.x[-1] <= 1e-9:
        raise ValueError("the half-spaces do not enclose a non-empty bounded crystal "
                         f"(linprog status {res.status}: {res.message})")
    return res.x[:d], float(res.x[-1])


def vertices(poly: Polytope) -> np.ndarray:
    """Vertices ``(V, d)`` of a bounded polytope."""
    from scipy.spatial import HalfspaceIntersection

    centre, _ = chebyshev_centre(poly.normals, poly.offsets)
    hs = np.hstack([poly.normals, -poly.offsets[:, None]])
    return HalfspaceIntersection(hs, centre).intersections


def random_rotation(rng: np.random.Generator, d: int) -> np.ndarray:
    """A uniformly random rotation matrix (d = 2 or 3)."""
    if d == 2:
        a = rng.uniform(0, 2 * np.pi)
        return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


@dataclass
class Placed:
    """A polytope placed in the real-space frame ``x`` (pattern-voxel units).

    ``x = A u + t`` maps the crystal frame to ``x``; planes become
    ``d_i(x) = beta_i - m_i . x >= 0`` with unit normals ``m_i`` so that
    ``d_i`` is the Euclidean distance (voxels) to plane ``i``, positive inside.
    """

    poly: Polytope
    A: np.ndarray
    t: np.ndarray
    m: np.ndarray          # (P, d) unit normals in x
    beta: np.ndarray       # (P,)
    extent: np.ndarray     # (d,) bounding-box size along each axis (voxels)
    size: float            # geometric mean of extent: the object's length scale

    def plane_distance(self, i: int, axes: list) -> np.ndarray:
        """``d_i`` on the grid whose per-axis coordinates are ``axes`` (broadcast, float32)."""
        d = len(axes)
        out = np.float32(self.beta[i])
        for j, x in enumerate(axes):
            sh = [1] * d
            sh[j] = -1
            out = out - (np.float32(self.m[i, j]) * x.astype(np.float32)).reshape(sh)
        return out

    def signed_distance(self, axes: list) -> np.ndarray:
        """``min_i d_i`` (positive inside: the exact distance to the surface for
        interior points of a convex body, a lower bound outside)."""
        sd = None
        for i in range(len(self.beta)):
            di = self.plane_distance(i, axes)
            sd = di if sd is None else np.minimum(sd, di)
        shape = tuple(len(a) for a in axes)
        if sd.shape == shape and sd.flags.writeable and sd.dtype == np.float32:
            return sd
        return np.array(np.broadcast_to(sd, shape), dtype=np.float32)  # a writable copy

    def to_crystal(self, x: np.ndarray) -> np.ndarray:
        return np.linalg.solve(self.A, (np.asarray(x) - self.t).T).T


def place(poly: Polytope, rotation: np.ndarray, extent) -> Placed:
    """Rotate ``poly`` and scale each axis so that its bounding box is ``extent``
    voxels along each axis, centred on the origin."""
    poly, v = poly.pruned()
    extent = np.asarray(extent, dtype=np.float64)
    vr = v @ rotation.T
    lo, hi = vr.min(axis=0), vr.max(axis=0)
    sigma = extent / (hi - lo)
    a = np.diag(sigma) @ rotation
    t = -sigma * (lo + hi) / 2
    # n.u <= b with u = A^-1 (x - t)  ->  (A^-T n).x <= b + (A^-T n).t
    mt = np.linalg.solve(a.T, poly.normals.T).T
    nrm = np.linalg.norm(mt, axis=1)
    m = mt / nrm[:, None]
    beta = (poly.offsets + mt @ t) / nrm
    return Placed(poly, a, t, m, beta, extent, float(np.exp(np.mean(np.log(extent)))))


def plane_wave_field(rng: np.random.Generator, axes: list, length: float, n_waves: int = 12
                     ) -> np.ndarray:
    """A smooth random field (zero mean, unit variance in expectation) on the grid
    ``axes``: a sum of ``n_waves`` cosines with random directions, wavelengths
    around ``length`` (same units as ``axes``) and phases. Resolution-independent:
    the same draw sampled on a finer grid gives the same continuous field."""
    d = len(axes)
    shape = tuple(len(a) for a in axes)
    out = np.zeros(shape, dtype=np.float32)
    dirs = rng.standard_normal((n_waves, d))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    kmag = 2 * np.pi / length * rng.uniform(0.5, 1.5, n_waves)
    phases = rng.uniform(0, 2 * np.pi, n_waves)
    amps = rng.standard_normal(n_waves) * np.sqrt(2.0 / n_waves)
    for w in range(n_waves):
        k = dirs[w] * kmag[w]
        e = np.complex64(amps[w] * np.exp(1j * phases[w]))
        for j, x in enumerate(axes):
            sh = [1] * d
            sh[j] = -1
            e = e * np.exp(1j * k[j] * x).astype(np.complex64).reshape(sh)
        out += e.real
    return out


def smooth_noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    """White Gaussian noise smoothed by a Gaussian of ``sigma`` voxels, rescaled
    to unit standard deviation (float32)."""
    from scipy import ndimage

    w = rng.standard_normal(shape, dtype=np.float32)
    if sigma <= 0.3:
        return w
    s = ndimage.gaussian_filter(w, sigma, mode="wrap", truncate=3.0)
    sd = float(s.std())
    return s / np.float32(sd if sd > 0 else 1.0)
