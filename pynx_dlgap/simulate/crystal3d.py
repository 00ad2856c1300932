"""3-D faceted crystals (seed section 4.4.1) and :func:`simulate_3d`.

Shapes are convex polytopes of a cubic (fcc) crystal in its own frame, {100}
facets at distance 1:

* ``cube``: the six {100} facets;
* ``octahedron``: the eight {111} facets;
* ``wulff``: {100} + {111} (distance ``wulff_111``) + {110} (``wulff_110``;
  no {110} facet when >= sqrt(2)), each facet distance jittered by
  ``facet_jitter``;
* ``winterbottom``: a Wulff shape cut by a substrate plane normal to a
  ``substrate_normal`` direction, keeping ``substrate_cut`` of its height;
* ``random``: ``n_planes`` random half-spaces (inside a loose bounding
  octahedron+cube so that the body is bounded).

Each one is rotated at random and scaled per axis to the requested oversampling
(anisotropic scaling = the stretch of the detector-conjugate frame).
"""
from __future__ import annotations

import itertools

import numpy as np

from .geometry import Polytope

__all__ = ["simulate_3d", "make_crystal_3d", "family", "cube", "octahedron", "wulff",
           "winterbottom", "random_convex", "REFLECTIONS"]

#: Bragg reflections G (crystal frame) drawn for the projection of the displacement
REFLECTIONS = ((1, 1, 1), (2, 0, 0), (2, 2, 0), (1, 1, 3))


def family(hkl) -> np.ndarray:
    """All distinct unit normals of the {hkl} family of a cubic crystal."""
    out = set()
    for p in itertools.permutations(hkl):
        for s in itertools.product((1, -1), repeat=3):
            out.add(tuple(a * b for a, b in zip(p, s)))
    n = np.array(sorted(out), dtype=np.float64)
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def _jitter(rng, n, jitter):
    return 1.0 + jitter * rng.uniform(-1, 1, n) if jitter > 0 else np.ones(n)


def cube(rng=None, jitter=0.0) -> Polytope:
    n = family((1, 0, 0))
    return Polytope(n, _jitter(rng, len(n), jitter), ["100"] * len(n))


def octahedron(rng=None, jitter=0.0) -> Polytope:
    n = family((1, 1, 1))
    return Polytope(n, _jitter(rng, len(n), jitter), ["111"] * len(n))


def wulff(d111=0.9, d110=1.5, rng=None, jitter=0.0) -> Polytope:
    parts = [(family((1, 0, 0)), 1.0, "100"), (family((1, 1, 1)), d111, "111"),
             (family((1, 1, 0)), d110, "110")]
    normals = np.vstack([p[0] for p in parts])
    offs = np.concatenate([np.full(len(p[0]), p[1]) for p in parts])
    fam = sum(([p[2]] * len(p[0]) for p in parts), [])
    return Polytope(normals, offs * _jitter(rng, len(offs), jitter), fam)


def winterbottom(d111=0.9, d110=1.5, normal="111", cut=0.6, rng=None, jitter=0.0) -> Polytope:
    """Wulff shape cut by the substrate plane ``n_s . u <= h``; ``n_s`` points into
    the substrate and ``h`` keeps the fraction ``cut`` of the height along ``n_s``."""
    from .geometry import vertices

    w = wulff(d111, d110, rng, jitter)
    if normal == "random":
        ns = rng.standard_normal(3)
    else:
        ns = -np.array({"111": (1, 1, 1), "100": (0, 0, 1), "110": (1, 1, 0)}[normal], dtype=float)
    ns /= np.linalg.norm(ns)
    p = vertices(w) @ ns
    h = p.min() + cut * (p.max() - p.min())
    return w.add(ns, h, "substrate", substrate=True)


def random_convex(rng, n_planes=10) -> Polytope:
    n = rng.standard_normal((n_planes, 3))
    b = rng.uniform(0.7, 1.3, n_planes)
    bound = np.vstack([family((1, 0, 0)), family((1, 1, 1))])
    return Polytope(np.vstack([n, bound]), np.concatenate([b, np.full(len(bound), 2.5)]),
                    ["random"] * n_planes + ["bound"] * len(bound))


def make_crystal_3d(rng: np.random.Generator, knobs: dict):
    """``(polytope, G)``: the crystal of ``knobs['shape_kind']`` and a unit Bragg
    vector G (crystal frame), from the geometry random stream ``rng``."""
    kind = knobs["shape_kind"]
    jit = knobs["facet_jitter"]
    if kind == "cube":
        poly = cube(rng, jit)
    elif kind == "octahedron":
        poly = octahedron(rng, jit)
    elif kind == "wulff":
        poly = wulff(knobs["wulff_111"], knobs["wulff_110"], rng, jit)
    elif kind == "winterbottom":
        poly = winterbottom(knobs["wulff_111"], knobs["wulff_110"], knobs["substrate_normal"],
                            knobs["substrate_cut"], rng, jit)
    elif kind == "random":
        poly = random_convex(rng, knobs["n_planes"])
    else:  # pragma: no cover - knobs are checked before
        raise ValueError(kind)
    fam = family(REFLECTIONS[int(rng.integers(len(REFLECTIONS)))])
    g = fam[int(rng.integers(len(fam)))]
    return poly, g


def simulate_3d(seed: int, shape=(64, 64, 64), regime="mixed", **knobs) -> dict:
    """Simulate one 3-D BCDI sample ``(z, y, x)``; a pure function of its arguments.

    Knobs not given are drawn for ``regime`` ('textbook', 'measured', 'mixed' or
    r in [0, 1]) from the seed; ``simulate_3d(seed, shape, **out['params']['knobs'])``
    gives back identical arrays. See :func:`pynx_dlgap.simulate.pipeline.simulate`
    for the returned keys and conventions.
    """
    from .pipeline import simulate

    return simulate(seed, 3, shape, regime, knobs)
