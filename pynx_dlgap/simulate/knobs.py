"""Simulation knobs: names, checks, and the regime sampler.

A *knob* is one interpretable simulation parameter (oversampling, peak counts,
phase range, ...). A sample is a pure function of ``(seed, shape, knobs)``: the
seed only drives the random *details* (polygon points, rotation, smooth fields,
Poisson noise, gap positions), the knobs fix everything a user reasons about.

Regimes
-------
``regime`` is ``'textbook'`` (r = 0), ``'measured'`` (r = 1), a float ``r`` in
[0, 1] in between, or ``'mixed'`` (r drawn uniformly in [0, 1] per sample: the
training default) or ``'mixed:A-B'`` (r drawn uniformly in [A, B]). Each knob range is interpolated linearly in ``r``:

=================  ==========================  ===========================
knob               textbook (r = 0)            measured-like (r = 1)
=================  ==========================  ===========================
peak               10^U(3, 5) photons          10^U(5, 7)
floor              0                           10^U(-4, -2) x peak
diffuse            0                           10^U(-5, -2) x peak
crop               1 (whole pattern)           U(1.5, 2.5) (crop of bigger)
edge_sigma         U(0.5, 2) px                U(0, 0.3) px (sharp facets)
roughness          0                           U(0.1, 0.5) px
modulus_noise      U(0, 0.05)                  U(0, 0.1)
oversampling       logU(2, 4) per axis         logU(2.5, 8) per axis (<= n/5)
dead_fraction      0                           U(0, 1e-3)
phase_range        U(0, 2 pi)                  U(0, 4 pi)
=================  ==========================  ===========================

Always: ``max_phase_gradient`` 1 rad/voxel, ``noise`` True, ``gaps`` 'random'
(MAXIPIX/EIGER module layout 15 %, else one plane 65 % / cross 25 % / 2-3 gaps
10 %, widths 1-12 px mostly, up to 38 px (a third of the detector axis at most),
one gap through the Bragg peak with probability ``p_gap_peak`` = 0.3),
``crop_shift`` 0.

Every other knob (shape kind, facet ratios, field weights and lengths, gaps) is
drawn over its full range whatever the regime. ``floor`` and ``diffuse`` are
present with probability r (else 0), with the measured-like range when present.
See :data:`KNOB_DOC`.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .gaps import GapLayout

__all__ = ["KNOB_DOC", "SHAPES_3D", "GAP_KINDS", "KnobError", "regime_value", "random_knobs",
           "check_knobs", "check_shape", "default_gap_widths"]

SHAPES_3D = ("wulff", "winterbottom", "cube", "octahedron", "random")
SUBSTRATE_NORMALS = ("111", "100", "110", "random")
GAP_KINDS = ("random", "none", "plane", "cross", "multi", "maxipix", "eiger")
REGIMES = ("textbook", "measured", "mixed")


class KnobError(ValueError):
    """A simulation knob with a bad name or value (the message says what is allowed)."""


#: knob -> (dims it applies to, description). The sampler ranges are in the module doc.
KNOB_DOC = {
    "oversampling": ((2, 3), "per-axis oversampling ratio = pattern size / object bounding-box size (>= 2 "
                             "for phasing; scalar or one value per axis)"),
    "crop": ((2, 3), "s >= 1: the object is sampled s times finer than the pattern's real-space grid and "
                     "the pattern is the central 1/s of its bigger pattern (a crop around the peak: sharp "
                     "facets are not aliased, the crop's object is band-limited); 1 = whole pattern"),
    "crop_shift": ((2, 3), "int per axis: the crop centre sits this many pixels from the Bragg peak "
                           "(0 = peak at n//2)"),
    "edge_sigma": ((2, 3), "Gaussian edge smoothing of the modulus, pattern pixels (0 = sharp facets)"),
    "roughness": ((2, 3), "rms sub-voxel facet roughness, pattern pixels"),
    "roughness_length": ((2, 3), "correlation length of the roughness, pattern pixels"),
    "modulus_noise": ((2, 3), "relative rms of the (1-px correlated) multiplicative modulus noise"),
    "phase_range": ((2, 3), "peak-to-peak Bragg phase G.u inside the support, radians"),
    "max_phase_gradient": ((2, 3), "the field length scales grow until the 99th percentile of |grad phase| "
                                   "is below this (rad per simulated voxel; 0 = no limit)"),
    "phase_length": ((2, 3), "correlation length of the random smooth phase field / object size"),
    "random_weight": ((2, 3), "weight of the random smooth displacement field"),
    "surface_weight": ((2, 3), "weight of the surface-relaxation field (decays from each facet)"),
    "surface_depth": ((2, 3), "decay length of the surface field / object size"),
    "interface_weight": ((3,), "weight of the substrate-interface field (Winterbottom only)"),
    "interface_depth": ((3,), "decay length of the interface field / object size"),
    "peak": ((2, 3), "expected counts at the brightest pixel of the crystal signal"),
    "floor": ((2, 3), "flat background, fraction of peak"),
    "diffuse": ((2, 3), "Lorentzian diffuse background at the Bragg peak, fraction of peak"),
    "diffuse_width": ((2, 3), "half-width of the diffuse Lorentzian, pixels"),
    "noise": ((2, 3), "Poisson noise (False: expected counts)"),
    "dead_fraction": ((2, 3), "fraction of dead detector pixels (y, x) (dead in every frame)"),
    "gaps": ((2, 3), "'random', 'none', 'plane', 'cross', 'multi', 'maxipix', 'eiger', or a layout dict "
                     "{'gaps': [[axis, start, width], ...]}"),
    "gap_widths": ((2, 3), "widths (px) random gaps are drawn from (None = default mixture, 1-38 px)"),
    "p_gap_peak": ((2, 3), "probability that one random gap runs through the Bragg peak"),
    "n_points": ((2,), "number of random points whose convex hull is the 2-D crystal"),
    "shape_kind": ((3,), "one of " + ", ".join(SHAPES_3D)),
    "wulff_111": ((3,), "distance of the {111} facets relative to {100} (Wulff/Winterbottom)"),
    "wulff_110": ((3,), "distance of the {110} facets relative to {100} (>= 1.42: no {110} facet)"),
    "facet_jitter": ((3,), "relative random jitter of each facet distance"),
    "substrate_normal": ((3,), "substrate plane family of the Winterbottom cut: " + ", ".join(SUBSTRATE_NORMALS)),
    "substrate_cut": ((3,), "fraction of the Wulff height kept above the substrate, (0.1, 1]"),
    "n_planes": ((3,), "number of random half-spaces of the 'random' shape"),
}


def regime_value(regime, rng: np.random.Generator | None = None) -> float:
    """The realism parameter r in [0, 1] of a regime name or number."""
    if isinstance(regime, str):
        if regime == "textbook":
            return 0.0
        if regime == "measured":
            return 1.0
        lo, hi = 0.0, 1.0
        if regime.startswith("mixed:"):  # 'mixed:A-B': r drawn uniformly in [A, B]
            try:
                lo, hi = (float(v) for v in regime[6:].split("-"))
            except ValueError:
                raise KnobError(f"regime {regime!r}: write 'mixed:A-B' with 0 <= A <= B <= 1") from None
            if not 0.0 <= lo <= hi <= 1.0:
                raise KnobError(f"regime {regime!r}: need 0 <= A <= B <= 1")
            regime = "mixed"
        if regime == "mixed":
            if rng is None:
                raise KnobError("regime='mixed' needs a random generator")
            return float(rng.uniform(lo, hi))
        raise KnobError(f"unknown regime {regime!r}; use one of {REGIMES}, 'mixed:A-B' or a number in [0, 1]")
    try:
        r = float(regime)
    except (TypeError, ValueError):
        raise KnobError(f"regime must be one of {REGIMES} or a number in [0, 1], got {regime!r}") from None
    if not 0.0 <= r <= 1.0:
        raise KnobError(f"regime number must be in [0, 1] (0 = textbook, 1 = measured), got {r}")
    return r


def check_shape(shape, dims: int) -> tuple:
    """``shape`` as a tuple of ``dims`` ints >= 16 (int -> cube)."""
    if dims not in (2, 3):
        raise KnobError(f"dims must be 2 or 3, got {dims!r}")
    if np.isscalar(shape):
        shape = (int(shape),) * dims
    shape = tuple(int(s) for s in shape)
    if len(shape) != dims:
        raise KnobError(f"shape {shape} has {len(shape)} axes but dims={dims}")
    if min(shape) < 16:
        raise KnobError(f"shape {shape}: every axis must be >= 16 pixels")
    return shape


def default_gap_widths(shape) -> list:
    """Default gap widths: 1-12 px often (3, 6, 9, 12 most), 13-38 px sometimes,
    never wider than a third of the smallest detector axis."""
    wmax = max(1, min(38, min(shape[-2:]) // 3))
    w = list(range(1, min(12, wmax) + 1)) + [x for x in (3, 6, 9, 12) if x <= wmax] * 3
    w += [x for x in range(13, wmax + 1, 1)][::2] + ([38] if wmax >= 38 else [])
    return w


def _lerp(a, b, r):
    return a + (b - a) * r


def random_knobs(rng: np.random.Generator, dims: int, regime: Any = "mixed", shape=None) -> dict:
    """Draw every knob of a ``dims``-D sample for ``regime`` (see the module doc).

    Always draws the full set in the same order (so fixing some knobs does not
    change the draws of the others). Returns plain Python values (JSON-ready),
    including ``'r'`` (the realism value used).
    """
    if dims not in (2, 3):
        raise KnobError(f"dims must be 2 or 3, got {dims!r}")
    shape = check_shape(shape if shape is not None else (128,) * dims if dims == 2 else (64,) * 3, dims)
    r = regime_value(regime, rng)
    u = lambda a, b: float(rng.uniform(a, b))  # noqa: E731
    k = {}
    k["r"] = r
    k["peak"] = float(10 ** u(3 + 2 * r, 5 + 2 * r))
    f_floor, f_diff, p_floor, p_diff = u(-4, -2), u(-5, -2), u(0, 1), u(0, 1)
    k["floor"] = float(10 ** f_floor) if p_floor < r else 0.0  # present with probability r
    k["diffuse"] = float(10 ** f_diff) if p_diff < r else 0.0
    k["diffuse_width"] = u(0.03, 0.3) * min(shape)
    k["crop"] = float(1 + r * u(0.5, 1.5))
    k["crop_shift"] = [0] * dims
    k["edge_sigma"] = u(_lerp(0.5, 0.0, r), _lerp(2.0, 0.3, r))
    k["roughness"] = u(0.1, 0.5) * r
    k["roughness_length"] = u(1.0, 3.0)
    k["modulus_noise"] = u(0, _lerp(0.05, 0.1, r))
    oslo, oshi = math.log(_lerp(2.0, 2.5, r)), math.log(_lerp(4.0, 8.0, r))
    # (objects of at least 5 px on small patterns)
    k["oversampling"] = [min(math.exp(u(oslo, oshi)), n / 5.0) for n in shape]
    k["dead_fraction"] = u(0, 1e-3) * r
    k["phase_range"] = u(0, 2 * np.pi * (1 + r))
    k["phase_length"] = u(0.2, 1.5)
    k["max_phase_gradient"] = 1.0
    k["random_weight"] = u(0, 1)
    k["surface_weight"] = u(0, 1)
    k["surface_depth"] = u(0.03, 0.15)
    k["noise"] = True
    k["gaps"] = "random"
    k["gap_widths"] = None
    k["p_gap_peak"] = 0.3
    if dims == 2:
        k["n_points"] = int(rng.integers(4, 26))
    else:
        k["interface_weight"] = u(0.3, 1.5)
        k["interface_depth"] = u(0.05, 0.3)
        k["shape_kind"] = SHAPES_3D[int(rng.integers(len(SHAPES_3D)))]
        k["wulff_111"] = u(0.65, 1.6)
        k["wulff_110"] = u(1.05, 1.6)
        k["facet_jitter"] = u(0, 0.1)
        k["substrate_normal"] = SUBSTRATE_NORMALS[int(rng.integers(len(SUBSTRATE_NORMALS)))]
        k["substrate_cut"] = u(0.35, 0.85)
        k["n_planes"] = int(rng.integers(6, 21))
    return k


def _num(k, v, lo=None, hi=None, lo_open=False, integer=False):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise KnobError(f"knob {k!r} must be a number, got {v!r}")
    v = int(v) if integer else float(v)
    if not math.isfinite(v):
        raise KnobError(f"knob {k!r} must be finite, got {v}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise KnobError(f"knob {k!r} = {v} must be {'>' if lo_open else '>='} {lo}")
    if hi is not None and v > hi:
        raise KnobError(f"knob {k!r} = {v} must be <= {hi}")
    return v


def _per_axis(k, v, dims, **kw):
    if np.isscalar(v):
        v = [v] * dims
    v = list(v)
    if len(v) != dims:
        raise KnobError(f"knob {k!r} needs 1 or {dims} values, got {len(v)}")
    return [_num(k, x, **kw) for x in v]


def check_knobs(knobs: dict, dims: int, shape) -> dict:
    """Validate and normalise knobs (raises :class:`KnobError` with what is allowed)."""
    shape = check_shape(shape, dims)
    out = {}
    for k, v in knobs.items():
        if k == "r":
            out[k] = _num(k, v, 0, 1)
            continue
        if k not in KNOB_DOC:
            raise KnobError(f"unknown knob {k!r}; known knobs: {', '.join(sorted(KNOB_DOC))}")
        if dims not in KNOB_DOC[k][0]:
            raise KnobError(f"knob {k!r} applies to " + " and ".join(f"{x}-D" for x in KNOB_DOC[k][0])
                            + f" samples, not {dims}-D")
        if k == "oversampling":
            v = _per_axis(k, v, dims, lo=1.0, lo_open=True)
            for o, n in zip(v, shape):
                if n / o < 4:
                    raise KnobError(f"oversampling {o} on a {n}-px axis leaves an object of < 4 px")
        elif k == "crop":
            v = _num(k, v, 1.0, 4.0)
        elif k == "crop_shift":
            v = _per_axis(k, v, dims, integer=True)
            if any(abs(s) > n for s, n in zip(v, shape)):
                raise KnobError(f"crop_shift {v} moves the crop off the pattern {shape}")
        elif k in ("edge_sigma",):
            v = _num(k, v, 0, 10)
        elif k == "roughness":
            v = _num(k, v, 0, 3)
        elif k == "roughness_length":
            v = _num(k, v, 0.5, 20)
        elif k == "modulus_noise":
            v = _num(k, v, 0, 1)
        elif k == "phase_range":
            v = _num(k, v, 0, 20 * np.pi)
        elif k == "max_phase_gradient":
            v = _num(k, v, 0, 10)
        elif k == "phase_length":
            v = _num(k, v, 0.05, 10)
        elif k in ("random_weight", "surface_weight", "interface_weight"):
            v = _num(k, v, 0, 100)
        elif k in ("surface_depth", "interface_depth"):
            v = _num(k, v, 0.005, 2, lo_open=True)
        elif k == "peak":
            v = _num(k, v, 0, 1e15, lo_open=True)
        elif k in ("floor", "diffuse"):
            v = _num(k, v, 0, 1)
        elif k == "diffuse_width":
            v = _num(k, v, 0, 1e6, lo_open=True)
        elif k == "noise":
            if not isinstance(v, (bool, np.bool_)):
                raise KnobError(f"knob 'noise' must be True or False, got {v!r}")
            v = bool(v)
        elif k == "dead_fraction":
            v = _num(k, v, 0, 0.1)
        elif k == "gaps":
            if isinstance(v, GapLayout):
                v = v.to_dict()
            if isinstance(v, dict):
                try:
                    GapLayout.from_dict(v)
                except Exception as e:  # noqa: BLE001
                    raise KnobError(f"knob 'gaps' layout dict is invalid: {e}") from None
                v = {"gaps": [[int(a), int(s), int(w)] for a, s, w in v["gaps"]]}
            elif v not in GAP_KINDS:
                raise KnobError(f"knob 'gaps' must be one of {GAP_KINDS} or a layout dict, got {v!r}")
        elif k == "gap_widths":
            if v is not None:
                v = [_num(k, x, 1, integer=True) for x in np.atleast_1d(v).tolist()]
                if not v:
                    raise KnobError("knob 'gap_widths' is empty")
                if max(v) > min(shape[-2:]):
                    raise KnobError(f"gap_widths {max(v)} px wider than the detector axes {shape[-2:]}")
        elif k == "p_gap_peak":
            v = _num(k, v, 0, 1)
        elif k == "n_points":
            v = _num(k, v, 3, 1000, integer=True)
        elif k == "shape_kind":
            if v not in SHAPES_3D:
                raise KnobError(f"knob 'shape_kind' must be one of {SHAPES_3D}, got {v!r}")
        elif k == "wulff_111":
            v = _num(k, v, 0.3, 3)
        elif k == "wulff_110":
            v = _num(k, v, 0.5, 3)
        elif k == "facet_jitter":
            v = _num(k, v, 0, 0.3)
        elif k == "substrate_normal":
            if v not in SUBSTRATE_NORMALS:
                raise KnobError(f"knob 'substrate_normal' must be one of {SUBSTRATE_NORMALS}, got {v!r}")
        elif k == "substrate_cut":
            v = _num(k, v, 0.1, 1.0)
        elif k == "n_planes":
            v = _num(k, v, 4, 200, integer=True)
        out[k] = v
    return out
