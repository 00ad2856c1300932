"""2-D crystals (seed section 4.3.1) and :func:`simulate_2d`.

The crystal is the convex hull of ``n_points`` random points (scipy
``ConvexHull``), i.e. a random convex polygon, rotated and scaled per axis to
the requested oversampling. Its modulus, random smooth phase field, edge
smoothing / roughness, modulus noise, counts and gaps are those of the shared
pipeline (:mod:`pynx_dlgap.simulate.pipeline`).
"""
from __future__ import annotations

import numpy as np

from .geometry import Polytope

__all__ = ["simulate_2d", "polygon", "make_crystal_2d"]


def polygon(rng: np.random.Generator, n_points: int = 10) -> Polytope:
    """Convex hull of ``n_points`` points uniform in the unit disc (>= 3 vertices)."""
    from scipy.spatial import ConvexHull

    for _ in range(100):
        a = rng.uniform(0, 2 * np.pi, n_points)
        rad = np.sqrt(rng.uniform(0, 1, n_points))
        pts = np.stack([rad * np.cos(a), rad * np.sin(a)], axis=1)
        try:
            hull = ConvexHull(pts)
        except Exception:  # noqa: BLE001 - degenerate (collinear) draw: draw again
            continue
        if hull.volume > 0.05:
            eq = hull.equations  # n . x + c <= 0 inside
            return Polytope(eq[:, :2], -eq[:, 2], ["hull"] * len(eq))
    raise RuntimeError("could not draw a non-degenerate polygon")  # pragma: no cover


def make_crystal_2d(rng: np.random.Generator, knobs: dict):
    """``(polygon, G)`` with a random unit in-plane Bragg direction G."""
    poly = polygon(rng, knobs["n_points"])
    a = rng.uniform(0, 2 * np.pi)
    return poly, np.array([np.cos(a), np.sin(a)])


def simulate_2d(seed: int, shape=(128, 128), regime="mixed", **knobs) -> dict:
    """Simulate one 2-D BCDI-like sample ``(y, x)``; a pure function of its arguments.

    Knobs not given are drawn for ``regime`` from the seed;
    ``simulate_2d(seed, shape, **out['params']['knobs'])`` gives back identical
    arrays. See :func:`pynx_dlgap.simulate.pipeline.simulate`.
    """
    from .pipeline import simulate

    return simulate(seed, 2, shape, regime, knobs)
