"""Detector-gap layouts: the one description of gaps used everywhere.

A gap is a stripe of insensitive detector pixels. Stacked over a rocking scan,
the stripe becomes a *plane* of missing intensity in the 3-D pattern, normal to
one detector axis: ``y`` (detector rows, array axis -2) or ``x`` (detector
columns, array axis -1). The same description works on 2-D patterns (y, x),
where a gap is a line.

Conventions (``../shared/docs/brief.md``): arrays are ``(z, y, x)``; a mask is
``True`` where a pixel is **not measured**.

Examples
--------
>>> lay = cross(width=6, pos_y=30, pos_x=40)
>>> m = lay.mask((64, 64, 64))
>>> int(m.sum()) == 64 * (6 * 64 + 6 * 64 - 6 * 6)
True
>>> GapLayout.from_mask(m)[0] == lay
True
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "Gap", "GapLayout", "AXIS_Y", "AXIS_X", "plane", "cross", "module_layout",
    "random_layout", "DETECTORS",
]

AXIS_Y = -2  #: gap plane normal to the detector rows axis (a horizontal stripe)
AXIS_X = -1  #: gap plane normal to the detector columns axis (a vertical stripe)
_AXIS_NAME = {AXIS_Y: "y", AXIS_X: "x"}

#: Detector module geometries: pixel pitch of the sensitive area between gaps
#: along (y, x) and gap width along (y, x), in pixels.
DETECTORS = {
    # MAXIPIX: 256x256-pixel Medipix chips tiled with 6-pixel insensitive gaps.
    "maxipix": dict(period=(256, 256), gap=(6, 6)),
    # EIGER (4M-like): 514 x 1030-pixel modules; 38-px gaps between module rows,
    # 12-px gaps between module columns.
    "eiger": dict(period=(514, 1030), gap=(38, 12)),
}


#: share of a y or x plane that must be masked for :meth:`GapLayout.from_mask` to read it as a gap
GAP_MIN_FRACTION = 0.9


@dataclass(frozen=True, order=True)
class Gap:
    """One gap plane: ``width`` pixels starting at index ``start`` along ``axis``.

    ``axis`` is ``-2`` (normal to y) or ``-1`` (normal to x). ``start`` may be
    negative or run past the array: only the part inside the array is masked.
    """

    axis: int
    start: int
    width: int

    def __post_init__(self):
        if self.axis not in (AXIS_Y, AXIS_X):
            raise ValueError(f"gap axis must be -2 (normal to y) or -1 (normal to x), got {self.axis}")
        if int(self.width) < 1:
            raise ValueError(f"gap width must be >= 1 pixel, got {self.width}")

    @property
    def stop(self) -> int:
        return self.start + self.width

    def clipped(self, n: int) -> "Gap | None":
        """The part of this gap inside an axis of length ``n`` (None if outside)."""
        a, b = max(self.start, 0), min(self.stop, n)
        return Gap(self.axis, a, b - a) if b > a else None

    def __str__(self):
        return f"{self.width}px@{_AXIS_NAME[self.axis]}={self.start}"


@dataclass(frozen=True)
class GapLayout:
    """A set of gap planes. Use :meth:`mask` to draw it on an array shape."""

    gaps: tuple = field(default_factory=tuple)

    def __post_init__(self):
        object.__setattr__(self, "gaps", tuple(sorted(self.gaps)))

    # ---- drawing -------------------------------------------------------
    def mask(self, shape: Sequence[int]) -> np.ndarray:
        """Boolean mask (True = not measured) of this layout on ``shape`` (ndim 2 or 3)."""
        shape = tuple(int(s) for s in shape)
        if len(shape) not in (2, 3):
            raise ValueError(f"gap masks are 2-D or 3-D, got shape {shape}")
        m = np.zeros(shape, dtype=bool)
        for g in self.gaps:
            n = shape[g.axis]
            c = g.clipped(n)
            if c is None:
                continue
            sl = [slice(None)] * len(shape)
            sl[g.axis] = slice(c.start, c.stop)
            m[tuple(sl)] = True
        return m

    def clipped(self, shape: Sequence[int]) -> "GapLayout":
        """The gaps that intersect ``shape``, clipped to it."""
        out = []
        for g in self.gaps:
            c = g.clipped(int(shape[g.axis]))
            if c is not None:
                out.append(c)
        return GapLayout(tuple(out))

    # ---- description ---------------------------------------------------
    @property
    def widths(self) -> tuple:
        return tuple(g.width for g in self.gaps)

    @property
    def max_width(self) -> int:
        return max(self.widths, default=0)

    @property
    def axes(self) -> tuple:
        return tuple(sorted({g.axis for g in self.gaps}))

    @property
    def kind(self) -> str:
        """'none', 'plane' (one plane), 'cross' (one per axis), or 'multi'."""
        if not self.gaps:
            return "none"
        if len(self.gaps) == 1:
            return "plane"
        if len(self.gaps) == 2 and len(self.axes) == 2:
            return "cross"
        return "multi"

    def __len__(self):
        return len(self.gaps)

    def __iter__(self):
        return iter(self.gaps)

    def __str__(self):
        return f"GapLayout({self.kind}: " + ", ".join(str(g) for g in self.gaps) + ")"

    def to_dict(self) -> dict:
        return {"gaps": [[g.axis, g.start, g.width] for g in self.gaps]}

    @classmethod
    def from_dict(cls, d: dict) -> "GapLayout":
        return cls(tuple(Gap(int(a), int(s), int(w)) for a, s, w in d["gaps"]))

    # ---- reading a mask -----------------------------------------------
    @classmethod
    def from_mask(cls, mask: np.ndarray, min_fraction: float = GAP_MIN_FRACTION):
        """Find the gap planes in a mask.

        A plane index ``i`` along y (or x) belongs to a gap when at least
        ``min_fraction`` of that plane is masked; consecutive such indices form
        one :class:`Gap`. Returns ``(layout, rest)`` where ``rest`` is the boolean
        mask of masked pixels not in any gap plane (dead pixels, beamstop, ...).
        """
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim not in (2, 3):
            raise ValueError(f"mask must be 2-D or 3-D, got ndim={mask.ndim}")
        gaps = []
        for axis in (AXIS_Y, AXIS_X):
            other = tuple(a for a in range(mask.ndim) if a != mask.ndim + axis)
            frac = mask.mean(axis=other)
            full = frac >= min_fraction
            # contiguous runs of True
            d = np.diff(np.concatenate([[0], full.astype(np.int8), [0]]))
            for a, b in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)):
                gaps.append(Gap(axis, int(a), int(b - a)))
        layout = cls(tuple(gaps))
        rest = mask & ~layout.mask(mask.shape)
        return layout, rest


# ---- factories -------------------------------------------------------------
def plane(axis: int, width: int, position: int) -> GapLayout:
    """One gap plane of ``width`` px starting at ``position`` along ``axis`` (-2=y, -1=x)."""
    return GapLayout((Gap(axis, int(position), int(width)),))


def cross(width: int, pos_y: int, pos_x: int, width_x: int | None = None) -> GapLayout:
    """A cross: a plane normal to y (``width`` px at ``pos_y``) and one normal to x."""
    wx = width if width_x is None else width_x
    return GapLayout((Gap(AXIS_Y, int(pos_y), int(width)), Gap(AXIS_X, int(pos_x), int(wx))))


def module_layout(shape: Sequence[int], detector: str = "maxipix",
                  offset: tuple = (0, 0)) -> GapLayout:
    """The gaps of a tiled detector seen through a region of interest.

    ``offset`` = (oy, ox) is the detector pixel at the region's first row and
    column. Gaps sit after every ``period`` sensitive pixels along each axis.
    """
    if detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}; known: {sorted(DETECTORS)}")
    geo = DETECTORS[detector]
    gaps = []
    for k, axis in enumerate((AXIS_Y, AXIS_X)):
        n = int(shape[axis])
        per, w = geo["period"][k], geo["gap"][k]
        pitch = per + w
        o = int(offset[k])
        # gap j occupies detector pixels [j*pitch + per, (j+1)*pitch)
        j0 = (o - per) // pitch - 1
        j = j0
        while True:
            a = j * pitch + per - o
            if a >= n:
                break
            g = Gap(axis, a, w).clipped(n)
            if g is not None:
                gaps.append(g)
            j += 1
    return GapLayout(tuple(gaps))


def random_layout(rng: np.random.Generator, shape: Sequence[int],
                  widths: Iterable[int] = tuple(range(1, 13)),
                  p_cross: float = 0.2, p_multi: float = 0.1,
                  margin: int = 0) -> GapLayout:
    """A random layout on ``shape``: one plane (normal to y or x), a cross, or
    several gaps, each of a width drawn from ``widths``, at any position keeping
    the gap at least ``margin`` pixels inside the array (``margin=0`` allows gaps
    touching an edge)."""
    widths = list(widths)

    def one(axis):
        w = int(rng.choice(widths))
        n = int(shape[axis])
        lo, hi = margin, n - w - margin
        if hi < lo:
            raise ValueError(f"a {w}-px gap with margin {margin} does not fit in {n} px")
        return Gap(axis, int(rng.integers(lo, hi + 1)), w)

    u = rng.random()
    if u < p_cross:
        return GapLayout((one(AXIS_Y), one(AXIS_X)))
    if u < p_cross + p_multi:
        k = int(rng.integers(2, 4))
        return GapLayout(tuple(one(int(rng.choice([AXIS_Y, AXIS_X]))) for _ in range(k)))
    return GapLayout((one(int(rng.choice([AXIS_Y, AXIS_X]))),))
