"""Whole-pattern deep-learning gap inpainting: ``inpaint(iobs, mask, model)``.

The inpainting models see fixed-size patches (32³ for the 3-D models); this
module fills every masked voxel of a pattern of any size (each axis at least
one patch, no resizing) by running the model on a *patch plan*, in batches, and
blending the overlapping predictions.

Patch plan (:func:`plan_patches`)
---------------------------------
The gap geometry is read from the mask with
:meth:`pynx_dlgap.simulate.gaps.GapLayout.from_mask`: gap planes normal to y or
x (``(layout, rest)``; ``rest`` = masked voxels outside the planes: dead pixels,
beamstop...). Patch corners, with ``P`` the patch edge and
``stride = P - overlap`` (default ``overlap = P // 2``):

* **gap patches** — for each gap plane: along its normal axis the patch is
  *centred on the gap* (corner ``start + width // 2 - P // 2``), so that measured
  voxels lie on both sides; along the in-plane axes (z and the other detector
  axis) it slides over the whole array, at ``n = ceil((S - P) / stride) + 1``
  evenly spaced corners from ``0`` to ``S - P`` (spacing <= stride);
* **crossing patches** — for each pair (gap normal to y, gap normal to x): centred
  on both gaps, sliding along z (one patch in 2-D);
* **dead-pixel patches** — masked voxels outside the gap planes that are not
  already at least ``dead_margin`` voxels inside a planned patch (array faces
  excepted) are grouped on a grid of cells of ``P - 2 * dead_margin`` voxels; each
  occupied cell gets one patch centred on the bounding box of its voxels, so every
  such voxel lies at least ``dead_margin`` voxels from the patch faces.

Every corner is clipped into the array (patches at the edges are shifted inside)
and duplicates are dropped. A 128³ pattern with a 6-px cross gives 91 patches
(overlap 16; the reference code makes ~18,800 single-patch calls).

**Trusted predictions.** A patch predicts a gap voxel only if the gap plane it
belongs to is crossed completely inside the patch, i.e. the patch contains the
gap's whole extent along its normal and the measured voxel on each side (where
the array has one). For a voxel in two planes (a crossing), both must be. A
patch in which a gap is cut by the patch boundary (a y-gap patch sliding over
an x-gap) thus never writes that gap: its prediction there would be an
extrapolation. The gap and crossing patches make every gap voxel trusted in at
least one patch by construction. Dead-pixel voxels are trusted in every patch.

Inference and blending
----------------------
Each patch gets the mask **restricted to the patch** (the model's normalisation
uses only the measured voxels of the patch) and the one input preparation of
training (:func:`pynx_dlgap.inpaint.patches.prepare_batch`: log-linear prefill,
per-patch min-max of ``log(I+1)``, channels intensity/mask/level). Batches of
``batch_size`` patches run under ``torch.inference_mode`` (optionally bf16
autocast) on ``device``; :func:`~pynx_dlgap.inpaint.patches.to_counts` inverts
the normalisation, bounding each fill by the brightest measured voxel of its
patch and, with a **trust region** ``T`` (``trust=``; default the model card's
``inference.trust``, 0.5 for the shipped model), clipping the model's correction
to its log-linear prefill to ``±T`` in ``log(I+1)``: the model's many small
corrections are kept, its rare large over-estimates beside the Bragg peak are
cut to a factor ``e^T`` of the log-linear fill (``benchmarks/trust_region.py``
chose ``T``). Predictions are averaged in ``log(I+1)`` with the separable
window ``w(i) = prod_axes sin(pi (i + 0.5) / P)`` (1 at the patch centre,
``sin(pi / 2P) ~ 0.05`` at a face, > 0 everywhere), over the trusted masked
voxels only; the result is ``expm1`` of the average.

Guarantees: only masked voxels are written; measured voxels are returned
bit-identical (after conversion to float32); the input is never modified; the
output is float32 and >= 0. An untrained residual model returns its log-linear
prefill, so with it ``inpaint`` equals the window-blend of per-patch
:func:`~pynx_dlgap.inpaint.baselines.fill_loglinear` fills; for masks made only
of gap planes (plane, cross, several, at the edges; no dead pixels) every
trusted patch contains each gap voxel's whole interpolation line, and the result
equals ``fill_loglinear`` on the whole pattern (to float32 rounding).
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._checks import PatternError, check_pattern
from ..simulate.gaps import GAP_MIN_FRACTION, GapLayout
from .patches import INPAINT_CHANNELS

__all__ = ["inpaint", "PartialGapWarning", "resolve_trust", "check_bright", "plan_patches", "PatchPlan", "load_inpaint_model", "blend_window", "add_cli",
           "DEFAULT_WEIGHTS", "DEFAULT_MAX_WIDTH", "DEFAULT_PATCH"]

#: the shipped inpainting weights (with their ``.json`` card beside them)
DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "inpaint3d.safetensors"
#: widest gap (px) accepted when the model card does not say (``gap_widths_supported``)
DEFAULT_MAX_WIDTH = 12
#: patch edge when neither the card nor the registry says
DEFAULT_PATCH = 32
#: dead-pixel voxels are kept at least this far from the faces of their patch
DEAD_MARGIN = 6
#: how masked voxels outside the gap planes (dead pixels) are filled
_DEAD = ("loglinear", "dl")

_CLASSICAL = ("use the classical fill instead: `pynx-dlgap fill --method loglinear` "
              "(pynx_dlgap.inpaint.baselines.fill_loglinear)")


# ---------------------------------------------------------------------------
# patch plan
# ---------------------------------------------------------------------------
def _tiles(n: int, p: int, stride: int) -> list[int]:
    """Evenly spaced corners from 0 to ``n - p`` with spacing <= ``stride``."""
    if n <= p:
        return [0]
    k = math.ceil((n - p) / stride) + 1
    return sorted({int(round(v)) for v in np.linspace(0, n - p, k)})


def _centre(start: int, width: int, p: int, n: int) -> int:
    """Corner of a patch centred on ``[start, start + width)``, clipped into ``[0, n - p]``."""
    return int(min(max(start + width // 2 - p // 2, 0), n - p))


@dataclass
class PatchPlan:
    """The patches that cover the masked voxels of a pattern (see the module docstring).

    ``corners[i]`` is the first voxel of patch ``i`` (``(N, ndim)`` ints),
    ``kinds[i]`` one of ``'gap'``, ``'cross'``, ``'dead'``.
    """

    shape: tuple
    patch: tuple
    overlap: int
    corners: np.ndarray
    kinds: tuple
    layout: GapLayout
    n_dead: int = 0
    dead_margin: int = DEAD_MARGIN
    _gaps: tuple = field(default=(), repr=False)

    def __len__(self):
        return int(self.corners.shape[0])

    @property
    def stride(self) -> tuple:
        return tuple(p - self.overlap for p in self.patch)

    def counts(self) -> dict:
        return {k: int(sum(1 for x in self.kinds if x == k)) for k in ("gap", "cross", "dead")}

    def slices(self, i: int) -> tuple:
        return tuple(slice(int(c), int(c) + p) for c, p in zip(self.corners[i], self.patch))

    def trusted(self, i: int) -> np.ndarray:
        """Boolean patch-shaped array: False on the voxels of every gap plane that patch
        ``i`` does not cross completely (gap extent + the measured voxel on each side)."""
        t = np.ones(self.patch, dtype=bool)
        nd = len(self.shape)
        for g in self._gaps:
            ax = nd + g.axis
            lo = int(self.corners[i][ax])
            hi = lo + self.patch[ax]
            a, b = g.start, g.stop
            if b <= lo or a >= hi:
                continue
            need_lo, need_hi = max(a - 1, 0), min(b, self.shape[ax] - 1)  # inclusive
            if need_lo >= lo and need_hi < hi:
                continue
            sl = [slice(None)] * nd
            sl[ax] = slice(max(a, lo) - lo, min(b, hi) - lo)
            t[tuple(sl)] = False
        return t

    def covered(self, mask) -> np.ndarray:
        """Masked voxels that get at least one trusted prediction (should equal ``mask``)."""
        mask = np.asarray(mask, dtype=bool)
        cov = np.zeros(mask.shape, dtype=bool)
        for i in range(len(self)):
            sl = self.slices(i)
            cov[sl] |= mask[sl] & self.trusted(i)
        return cov

    def summary(self) -> str:
        c = self.counts()
        p = "x".join(str(v) for v in self.patch)
        return (f"{len(self)} patches of {p} (gap {c['gap']}, crossing {c['cross']}, dead pixels {c['dead']}), "
                f"overlap {self.overlap} (stride {self.stride[0]}); {self.layout}"
                + (f" + {self.n_dead} other masked voxels" if self.n_dead else ""))


def _as_patch(patch, ndim) -> tuple:
    if np.ndim(patch) == 0:
        return (int(patch),) * ndim
    patch = tuple(int(v) for v in patch)
    if len(patch) != ndim:
        raise ValueError(f"patch {patch} does not match a {ndim}-D pattern")
    return patch


def plan_patches(mask, patch=DEFAULT_PATCH, overlap=None, *, dead_margin: int = DEAD_MARGIN,
                 layout: tuple | None = None, dead_patches: bool = True) -> PatchPlan:
    """The patch plan covering every masked voxel of ``mask`` (rules: module docstring).

    :param mask: 2-D or 3-D boolean mask (True = not measured).
    :param patch: patch edge (int) or per-axis sizes; each axis of the mask must be at least that.
    :param overlap: overlap of neighbouring patches sliding along a gap (stride = patch - overlap);
        default half a patch.
    :param dead_margin: minimum distance of a dead-pixel voxel to its patch's faces.
    :param dead_patches: plan the dead-pixel patches (False: only gap and crossing
        patches; :func:`inpaint` with ``dead='loglinear'`` fills those voxels itself).
    :param layout: ``GapLayout.from_mask(mask)`` if already computed.
    """
    mask = np.asarray(mask, dtype=bool)
    nd = mask.ndim
    if nd not in (2, 3):
        raise PatternError(f"mask has ndim={mask.ndim}; expected a 2-D or 3-D array")
    shape = mask.shape
    P = _as_patch(patch, nd)
    small = [(s, p) for s, p in zip(shape, P) if s < p]
    if small:
        raise PatternError(f"pattern shape {shape} is smaller than the model's patch {P} along an axis; "
                           f"every axis must be at least the patch size (no resizing is done); {_CLASSICAL}")
    overlap = min(P) // 2 if overlap is None else int(overlap)
    if not 0 <= overlap < min(P):
        raise ValueError(f"overlap must be in [0, {min(P) - 1}] for a patch of {P}, got {overlap}")
    dead_margin = int(min(max(dead_margin, 0), (min(P) - 1) // 2))
    lay, rest = GapLayout.from_mask(mask) if layout is None else layout
    lay = lay.clipped(shape)
    gaps = tuple(lay.gaps)
    wide = [g for g in gaps if g.width > P[nd + g.axis] - 2]
    if wide:
        raise PatternError(f"gap(s) {', '.join(str(g) for g in wide)} do not fit in a patch of {P} with a measured "
                           f"voxel on each side; {_CLASSICAL}")
    tiles = [_tiles(shape[a], P[a], P[a] - overlap) for a in range(nd)]
    plan: dict = {}

    def add(lists, kind):
        for c in itertools.product(*lists):
            if c not in plan or kind == "cross":
                plan[c] = kind

    for g in gaps:
        ax = nd + g.axis
        add([[_centre(g.start, g.width, P[a], shape[a])] if a == ax else tiles[a] for a in range(nd)], "gap")
    gy = [g for g in gaps if g.axis == -2]
    gx = [g for g in gaps if g.axis == -1]
    for a_, b_ in itertools.product(gy, gx):
        fixed = {nd - 2: _centre(a_.start, a_.width, P[nd - 2], shape[nd - 2]),
                 nd - 1: _centre(b_.start, b_.width, P[nd - 1], shape[nd - 1])}
        add([[fixed[a]] if a in fixed else tiles[a] for a in range(nd)], "cross")

    n_dead = int(np.count_nonzero(rest))
    if n_dead and dead_patches:
        core = np.zeros(shape, dtype=bool)
        for c in plan:
            core[tuple(slice(ci + (dead_margin if ci > 0 else 0),
                             ci + p - (dead_margin if ci + p < s else 0)) for ci, p, s in zip(c, P, shape))] = True
        left = np.argwhere(rest & ~core)
        if left.size:
            cell = np.array([max(p - 2 * dead_margin, 1) for p in P])
            keys = left // cell
            _, inv = np.unique(keys, axis=0, return_inverse=True)
            inv = np.asarray(inv).ravel()
            order = np.argsort(inv, kind="stable")
            bounds = np.flatnonzero(np.diff(inv[order])) + 1
            for grp in np.split(order, bounds):
                pts = left[grp]
                lo, hi = pts.min(0), pts.max(0)
                c = tuple(int(min(max(l - (p - (h - l + 1)) // 2, 0), s - p))
                          for l, h, p, s in zip(lo, hi, P, shape))
                if c not in plan:
                    plan[c] = "dead"
    corners = np.array(list(plan.keys()), dtype=np.int64).reshape(-1, nd)
    return PatchPlan(shape=tuple(shape), patch=P, overlap=overlap, corners=corners, kinds=tuple(plan.values()),
                     layout=lay, n_dead=n_dead, dead_margin=dead_margin, _gaps=gaps)


def blend_window(patch) -> np.ndarray:
    """Separable blending weights ``prod sin(pi (i + 0.5) / P)`` (float64, > 0, largest at the centre)."""
    w = np.ones((), dtype=np.float64)
    for p in patch:
        w = np.multiply.outer(w, np.sin(np.pi * (np.arange(p) + 0.5) / p))
    return w


# ---------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------
def load_inpaint_model(weights=None, map_location="cpu"):
    """``(model, card)`` of an inpainting model (default: the shipped weights).

    :param weights: a ``.safetensors`` file written by ``save_weights`` / ``pynx-dlgap train --export``
        (its ``.json`` card beside it); default :data:`DEFAULT_WEIGHTS`.
    :raises WeightsError: missing file (says how to get it), corrupted file, or not an inpainting model.

    The card is also attached as ``model.card`` so that :func:`inpaint` can read the
    supported gap widths and the patch size from the model alone.
    """
    from ..models.weights import WeightsError, load_weights
    path = Path(DEFAULT_WEIGHTS if weights is None else weights)
    wpath = path.with_suffix(".safetensors") if path.suffix.lower() in (".json", "") else path
    if not wpath.is_file():
        if weights is None:
            raise WeightsError(
                f"the shipped inpainting weights {wpath} are missing (not trained/exported in this copy). "
                f"Train and export them with `pynx-dlgap train --out runs/x --export {wpath}` "
                f"(or pass your own weights: --weights W.safetensors / weights=...), or {_CLASSICAL}")
        raise WeightsError(f"weights file {wpath} not found (expected with its card {wpath.with_suffix('.json')}); "
                           f"write one with `pynx-dlgap train --out runs/x --export {wpath}`")
    model, card = load_weights(wpath, map_location=map_location)
    task = card.get("task")
    if task not in (None, "inpaint") or getattr(model, "in_channels", len(INPAINT_CHANNELS)) != len(INPAINT_CHANNELS) \
            or getattr(model, "out_channels", 1) != 1:
        raise WeightsError(f"{wpath} is not a gap-inpainting model (task {task!r}, "
                           f"{getattr(model, 'in_channels', '?')} input / {getattr(model, 'out_channels', '?')} "
                           f"output channels; expected 3 inputs {INPAINT_CHANNELS} and 1 output)")
    model.card = card
    return model, card


def _patch_of(model, card, patch, dims) -> tuple:
    if patch is None:
        patch = (card or {}).get("input", {}).get("patch")
    if patch is None:
        name = (getattr(model, "config", None) or {}).get("name")
        if name:
            from ..models.registry import get_config
            try:
                shp = get_config(name).get("input_shape")
                if shp and len(shp) == dims + 2:
                    patch = shp[2:]
            except KeyError:
                pass
    patch = _as_patch(DEFAULT_PATCH if patch is None else patch, dims)
    mult = int(getattr(model, "size_multiple", 1))
    if any(p % mult for p in patch):
        raise ValueError(f"patch {patch} is not a multiple of {mult}, which the model needs")
    return patch


def _max_width(card, max_width, patch) -> tuple[int, str]:
    if max_width is not None:
        w, src = int(max_width), f"max_width={int(max_width)}"
    else:
        sup = (card or {}).get("gap_widths_supported")
        if sup:
            w, src = int(max(sup)), f"its card's gap_widths_supported {list(sup)}"
        else:
            w, src = DEFAULT_MAX_WIDTH, f"the default {DEFAULT_MAX_WIDTH} px (no card)"
    hard = min(patch) - 2
    if w > hard:
        w, src = hard, f"the patch geometry (a gap plus one measured voxel per side must fit in {min(patch)} px)"
    return w, src


# ---------------------------------------------------------------------------
# whole-pattern inpainting
# ---------------------------------------------------------------------------
class PartialGapWarning(UserWarning):
    """Masked voxels that look like detector-gap planes but are not masked over >= 90 % of their plane."""


def _warn_partial_planes(rest, min_fraction: float = 0.3):
    """Warn when masked voxels outside the gap planes look like gap planes themselves.

    :meth:`GapLayout.from_mask` counts a y or x plane as a gap when at least ``GAP_MIN_FRACTION``
    (90 %) of it is masked.
    A detector gap masked over only part of its plane is not counted: for example, a pattern
    padded with unmasked zeros, or a gap that ends inside the region of interest. Its voxels
    then fall in ``rest`` and are filled by log-linear interpolation (``dead='loglinear'``,
    the default), not by the model. The user is told which planes are affected.
    """
    if not rest.any():
        return
    nd = rest.ndim
    found = []
    for axis, name in ((nd - 2, "y"), (nd - 1, "x")):
        frac = rest.mean(axis=tuple(a for a in range(nd) if a != axis))
        idx = np.flatnonzero(frac >= min_fraction)
        if idx.size:
            found.append(f"{idx.size} plane(s) normal to {name} ({idx.min()}..{idx.max()}, "
                         f"up to {100 * frac.max():.0f} % masked)")
    if found:
        import warnings
        warnings.warn(PartialGapWarning(f"{int(np.count_nonzero(rest))} masked voxels are outside the gap planes the model fills (a y or "
                      f"x plane counts as a gap when >= {100 * GAP_MIN_FRACTION:.0f} % of it is masked), among them {' and '.join(found)}: "
                      f"they are filled by log-linear interpolation, not by the model. If these are detector gaps "
                      f"masked over only part of the plane (e.g. a pattern padded with unmasked zeros), mask them "
                      f"over the whole plane (or crop the padding) to have the model fill them"), stacklevel=4)


def _checked_plan(a, m, model, overlap, max_width, patch, batch_size, dead="loglinear"):
    """Every check of :func:`inpaint` that needs no model call, and the patch plan:
    ``(patch, plan, layout, rest, max_width, batch_size)`` (``rest``: the masked voxels
    outside the gap planes). Raises as documented there."""
    if dead not in _DEAD:
        raise ValueError(f"dead must be one of {_DEAD}, got {dead!r}")
    card = getattr(model, "card", None) or {}
    dims = int(getattr(model, "dims", a.ndim))
    if a.ndim != dims:
        raise PatternError(f"the pattern is {a.ndim}-D (shape {a.shape}) but the model is {dims}-D")
    if getattr(model, "in_channels", len(INPAINT_CHANNELS)) != len(INPAINT_CHANNELS):
        raise ValueError(f"the model takes {model.in_channels} input channels; inpainting models take "
                         f"{len(INPAINT_CHANNELS)} {INPAINT_CHANNELS}")
    P = _patch_of(model, card, patch, dims)
    small = [s for s, p in zip(a.shape, P) if s < p]
    if small:
        raise PatternError(f"pattern shape {a.shape} is smaller than the model's patch {P} along an axis; "
                           f"every axis must be at least the patch size (no resizing is done); {_CLASSICAL}")
    layout, rest = GapLayout.from_mask(m)
    if dead == "loglinear":  # with dead='dl' the model fills those voxels too
        _warn_partial_planes(rest)
    wmax, src = _max_width(card, max_width, P)
    wide = [g for g in layout if g.width > wmax]
    if wide:
        raise PatternError(
            f"gap(s) {', '.join(str(g) for g in wide)} wider than the {wmax} px this model supports "
            f"(from {src}; supported widths: 1 to {wmax} px); {_CLASSICAL}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batch_size = int(batch_size)
    plan = plan_patches(m, P, overlap, layout=(layout, rest), dead_patches=dead == "dl")
    for i in range(len(plan)):
        if m[plan.slices(i)].all():
            raise PatternError(f"the masked region around voxel {tuple(int(c) + p // 2 for c, p in zip(plan.corners[i], P))} "
                               f"fills a whole {P} patch (no measured voxel to inpaint from); {_CLASSICAL}")
    return P, plan, layout, rest, wmax, batch_size


def resolve_trust(model, trust="card"):
    """The trust region (``log(I+1)`` units, or None for none) that :func:`inpaint` applies.

    ``'card'``: the model card's ``inference.trust`` (None when the card has none);
    ``None`` or ``inf``: no trust region; a number >= 0: that bound (0 gives the
    log-linear fill). Anything else raises ``ValueError``.
    """
    if isinstance(trust, str):
        if trust != "card":
            raise ValueError(f"trust must be 'card', None or a number >= 0, got {trust!r}")
        card = getattr(model, "card", None) or {}
        trust = (card.get("inference") or {}).get("trust")
        if trust is None:
            return None
    if trust is None:
        return None
    try:
        t = float(trust)
    except (TypeError, ValueError):
        raise ValueError(f"trust must be 'card', None or a number >= 0, got {trust!r}") from None
    if math.isnan(t) or t < 0:
        raise ValueError(f"trust must be 'card', None or a number >= 0 (log(I+1) units), got {trust!r}")
    return None if math.isinf(t) else t


def trust_arg(text: str):
    """argparse ``type`` of the ``--trust`` options: ``card``, ``off`` (no trust region) or a number >= 0."""
    import argparse
    t = str(text).strip().lower()
    if t == "card":
        return "card"
    if t in ("off", "none"):
        return None
    try:
        return resolve_trust(None, float(t))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'card', 'off' or a number >= 0 (log(I+1) units), got {text!r}")


#: help of the ``--trust`` options
TRUST_HELP = ("trust region of the DL fill around log-linear interpolation, in log(I+1): each patch's correction "
              "is clipped to +-T, so the fill stays within a factor e^T of the log-linear fill. 'card' (default): "
              "the model card's inference.trust; 'off': the model's fill unbounded; or a number >= 0")


def check_bright(dims: int, tta_bright, bright) -> tuple[int, float]:
    """``(tta_bright, bright)`` as int and float, or ``ValueError`` (views 1..16 in 3-D, 1..8 in
    2-D; ``bright`` in (0, 1]): the checks of :func:`inpaint`'s ``tta_bright``/``bright``,
    for callers that must fail before any work (command lines, ``DLInpaint``)."""
    from .tta import symmetry_views
    k = int(tta_bright)
    try:
        symmetry_views(dims, k)
    except ValueError as e:
        raise ValueError(f"tta_bright: {e}") from None
    f = float(bright)
    if not 0.0 < f <= 1.0:
        raise ValueError(f"bright must be in (0, 1] (a fraction of the brightest measured voxel), got {bright!r}")
    return k, f


def _bright_model(model, tta, tta_bright, bright):
    """``{'model': ensemble, 'fraction': bright}`` for :func:`inpaint`'s ``tta_bright`` (None
    when it is not above ``tta``); bad values raise ``ValueError`` (:func:`check_bright`)."""
    from .tta import SymmetricEnsemble, model_dims, with_views
    k, f = check_bright(model_dims(model), tta_bright, bright)
    if k <= int(tta):
        return None
    base = model.model if isinstance(model, SymmetricEnsemble) else model
    return {"model": with_views(base, k), "fraction": f}


def _fill_values(I_t, m_t, a, m, model, plan, rest, dead, batch_size, bf16, progress, trust=None, bright=None):
    """The values of the masked voxels, as a tensor on ``I_t.device``: the gap planes (every
    masked voxel with ``dead='dl'``) from the model's blended patches, the other masked voxels
    (``rest``) by log-linear interpolation with ``dead='loglinear'``; 0 elsewhere.

    ``I_t``, ``m_t``: the centred pattern and mask on the model's device; ``a``, ``m``: the same
    on the host (numpy), for the plan's checks and the log-linear fill on the CPU. ``trust``:
    resolved trust region (:func:`resolve_trust`). ``bright``: ``{'model': m, 'fraction': f}``,
    the model of the bright patches (:func:`inpaint`'s ``tta_bright``) and the fraction of
    the brightest measured voxel that makes a patch bright; the number of bright patches
    is written to its ``'n'``. Shared by :func:`inpaint` and the CUDA-family ``DLInpaint``.
    Returns ``(values, seconds_model)``.
    """
    from .torch_ops import blend_patches, fill_loglinear_torch
    dev = I_t.device
    values = torch.zeros(I_t.shape, dtype=torch.float32, device=dev)
    t_model = 0.0
    if len(plan):
        was_training = model.training
        model.to(dev).eval()
        try:
            from tqdm import tqdm
            bar = tqdm(total=len(plan), desc="inpaint", unit="patch", disable=not progress, dynamic_ncols=True)
            if bright is not None:  # blend_patches reads 'model' and 'level', counts into 'n'
                meas = a[~m]
                bright["model"].to(dev).eval()
                bright.update(n=0, level=float(bright["fraction"]) * float(meas.max() if meas.size else 0.0))
            est, covered, t_model = blend_patches(I_t, m_t, plan, model, batch_size=batch_size, bf16=bf16, bar=bar,
                                                  trust=trust, bright=bright)
            bar.close()
        finally:
            model.train(was_training)
        dl_t = torch.from_numpy(m & ~rest if dead == "loglinear" else m).to(dev)
        missed = int((dl_t & ~covered).sum())
        if missed:  # cannot happen by construction of the plan
            raise RuntimeError(f"{missed} masked voxels got no prediction (plan bug)")
        values = torch.where(dl_t, est, values)
    if dead == "loglinear" and rest.any():
        if dev.type == "cpu":  # numpy is faster on the CPU (same values, see the tests)
            from .baselines import fill_loglinear
            ll = torch.from_numpy(fill_loglinear(a, m))
        else:
            ll = fill_loglinear_torch(I_t[None], m_t[None])[0]
        values = torch.where(torch.from_numpy(np.ascontiguousarray(rest)).to(dev), ll, values)
    return values, t_model


def inpaint(iobs, mask, model=None, *, weights=None, overlap=None, batch_size: int = 32, device=None,
            max_width=None, progress: bool = True, return_info: bool = False, bf16: bool = False, patch=None,
            check=False, dead: str = "loglinear", tta: int = 1, trust="card", tta_bright: int = 1,
            bright: float = 0.01):
    """Fill every masked voxel of a 2-D/3-D pattern with an inpainting model.

    :param iobs: intensities (z, y, x) or (y, x); each axis at least the model's patch.
        Never modified.
    :param mask: same shape, True/1 where **not measured** (gap planes, dead pixels).
    :param model: an inpainting model (3 input channels, 1 output; e.g. from
        :func:`load_inpaint_model`). It is moved to ``device`` and run in eval mode
        (its train/eval mode is restored afterwards). Default: ``weights``.
    :param weights: path of weights to load when ``model`` is None; default the shipped
        :data:`DEFAULT_WEIGHTS`.
    :param overlap: overlap (voxels) of patches sliding along a gap; default half a patch.
    :param batch_size: patches per model call.
    :param device: torch device; default ``'cuda'`` when available, else ``'cpu'``.
    :param max_width: widest gap accepted (default: the card's ``gap_widths_supported``,
        else 12 px). Never more than ``patch - 2``.
    :param progress: tqdm progress bar over batches.
    :param return_info: also return a dict (patches, batches, seconds, layout...).
    :param bf16: bfloat16 autocast for the model call, where the device runs bf16 natively
        (else float32 and a warning: :func:`pynx_dlgap.precision.resolve_bf16`); ``'auto'``:
        bf16 exactly where native. ``info['bf16']`` says what ran.
    :param patch: patch size (default: the card's ``input.patch``, the registry's input
        shape, else 32).
    :param check: first run the self-check (:func:`pynx_dlgap.inpaint.selfcheck.self_check`):
        DL and log-linear fill the gap's mirror images through the Bragg peak (cut into
        measured data), and the one with the lower amplitude error there is used (where there
        is no image, the one whose filled pattern has less autocorrelation energy outside the
        crystal's support; shifted copies of the gap are scored and reported too). The outcome is
        printed and, with ``return_info``, in ``info['check']`` (``info['method']`` says
        which fill was used). ``True`` runs the default rule; a rule name
        (``'mirror'``, ``'acf'``, ``'geomean'``, ``'every'``, ``'pooled'``;
        :func:`~pynx_dlgap.inpaint.selfcheck.self_check`) runs that one.
    :param dead: masked voxels outside the gap planes (dead/hot pixels, small clusters):
        ``'loglinear'`` (default) fills them with :func:`~pynx_dlgap.inpaint.baselines.fill_loglinear`
        (no patch is run for them; on isolated dead pixels it beat the model, ad-hoc
        check on 6 simulated patterns: amplitude error 0.045 vs 0.058), ``'dl'`` plans
        dead-pixel patches and lets the model predict them.
    :param tta: test-time symmetric ensemble: each patch is predicted in ``tta`` of the 16
        (3-D; 8 in 2-D) flip/transposition views the model was trained with, and the
        predictions are averaged (:mod:`pynx_dlgap.inpaint.tta`); ``tta`` times the model
        calls. 1 (default): the model alone. The self-check uses the same views.
    :param trust: trust region around the log-linear fill, in ``log(I+1)``: each patch's
        correction to its log-linear prefill is clipped to ``±trust`` before blending
        (:func:`~pynx_dlgap.inpaint.patches.to_counts`), so every filled voxel lies within a
        factor ``e^trust`` of the log-linear fill (in ``I + 1``). ``'card'`` (default): the
        model card's ``inference.trust`` (the shipped model's was chosen on simulated
        patterns outside the training and held-out sets, ``benchmarks/trust_region.py``);
        ``None``: the model's fill unbounded. The self-check uses the same value.
    :param tta_bright: views of the test-time ensemble for the **bright patches** only:
        those whose log-linear prefill reaches ``bright`` times the brightest measured
        voxel of the pattern in one of their masked voxels (beside the Bragg peak, where
        the amplitude error that phasing sees is made). Used when larger than ``tta``;
        default 1 (off). A few patches, so it costs little: ``benchmarks/inpaint_speed.py
        --tta-bright 8`` measures it.
    :param bright: that fraction (default 0.01), in (0, 1].
    :returns: float32 array (measured voxels bit-identical to the float32 input, masked
        voxels >= 0), and the info dict when ``return_info``.
    :raises PatternError: NaN/inf or negative measured counts, mask of another shape or
        covering everything, pattern smaller than the patch, a gap wider than supported,
        a pattern whose ndim differs from the model's.
    """
    t0 = time.perf_counter()
    from .selfcheck import check_rule
    rule = check_rule(check)  # a bad value fails here, before any work
    a, m = check_pattern(iobs, mask)
    if model is not None and weights is not None:
        raise ValueError("pass either model= or weights=, not both")
    if model is None:
        model, _ = load_inpaint_model(weights)
    from .tta import with_views
    trust = resolve_trust(model, trust)
    hot = _bright_model(model, tta, tta_bright, bright)
    model = with_views(model, tta)
    P, plan, layout, rest, wmax, batch_size = _checked_plan(a, m, model, overlap, max_width, patch, batch_size,
                                                            dead)
    dev = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    from ..precision import resolve_bf16
    bf16 = resolve_bf16(bf16, dev, "the inpainting model")
    out = np.array(a, dtype=np.float32, copy=True)
    n_batches = math.ceil(len(plan) / batch_size)
    values, t_model = _fill_values(torch.from_numpy(np.array(a, np.float32, copy=True)).to(dev),
                                   torch.from_numpy(np.ascontiguousarray(m)).to(dev), a, m, model, plan, rest,
                                   dead, batch_size, bf16, progress, trust, hot)
    out[m] = values.cpu().numpy()[m]
    checked = None
    if rule:  # after the DL fill, which the self-check's default rule judges as it is (not filled again)
        from .selfcheck import self_check
        checked = self_check(a, m, model, rule=rule, overlap=overlap, batch_size=batch_size, device=dev,
                             max_width=max_width, bf16=bf16, patch=P, dead=dead, trust=trust,
                             tta_bright=tta_bright, bright=bright, dl_fill=out)
        print(checked.summary())
        if checked.choice != "dl":
            from .baselines import fill_loglinear
            out = fill_loglinear(a, m)
            if not return_info:
                return out
            return out, {"method": "loglinear", "check": checked.to_dict(), "seconds": time.perf_counter() - t0,
                         "n_masked": int(np.count_nonzero(m)), "layout": str(layout), "widths": list(layout.widths),
                         "n_patches": 0, "n_batches": 0, "seconds_model": 0.0, "device": str(dev), "bf16": bool(bf16),
                         "overlap": plan.overlap, "plan": "self-check chose log-linear: the model's fill is not used",
                         "tta": int(tta), "trust": trust, "tta_bright": max(int(tta), int(tta_bright)),
                         "n_bright": 0}
    if not return_info:
        return out
    info = {
        "n_patches": len(plan), "n_batches": n_batches, "batch_size": batch_size, "patch": list(P),
        "overlap": plan.overlap, "patch_kinds": plan.counts(), "seconds": time.perf_counter() - t0,
        "seconds_model": t_model, "layout": str(layout), "widths": list(layout.widths),
        "max_width_supported": wmax, "n_masked": int(np.count_nonzero(m)), "n_dead": plan.n_dead,
        "device": str(dev), "bf16": bool(bf16), "plan": plan.summary(), "method": "dl", "dead": dead,
        "tta": int(tta), "trust": trust, "tta_bright": max(int(tta), int(tta_bright)),
        "n_bright": hot["n"] if hot else 0,
    }
    if checked is not None:
        info["check"] = checked.to_dict()
    return out, info


# ---------------------------------------------------------------------------
# command line: pynx-dlgap inpaint
# ---------------------------------------------------------------------------
def add_cli(sub):
    """Register ``pynx-dlgap inpaint`` on an argparse subparsers object."""
    p = sub.add_parser(
        "inpaint", help="fill detector gaps with the deep-learning model",
        description="Fill the masked pixels (gap planes, crosses, dead pixels) of a 2-D/3-D pattern with the "
                    "3-D CNN inpainting model, patch by patch (batched, blended); measured pixels are returned "
                    "bit-identical. Gaps wider than the model supports are refused: use `pynx-dlgap fill`.")
    p.add_argument("data", help="pattern file (.npy, .npz, .h5, .cxi)")
    p.add_argument("--mask", required=True, help="mask file (True/1 = not measured)")
    p.add_argument("--data-key", default=None, help="array/dataset name of the pattern in its file")
    p.add_argument("--mask-key", default=None, help="array/dataset name of the mask in its file")
    p.add_argument("-o", "--output", required=True, help="output file (.npz, .npy, .h5)")
    p.add_argument("--weights", default=None, help=f"model weights (.safetensors + .json card); default the "
                                                    f"shipped {DEFAULT_WEIGHTS.name}")
    p.add_argument("--png", default=None, help="also write a PNG of central slices before/after")
    p.add_argument("--overlap", type=int, default=None, help="overlap of patches along a gap (default: half a patch)")
    p.add_argument("--batch-size", type=int, default=32, help="patches per model call (default 32)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast for the model where the device runs it natively (else float32, warned)")
    p.add_argument("--tta", type=int, default=1,
                   help="test-time ensemble: average the model over this many flip/transposition views of "
                        "each patch (1-16 in 3-D, 1-8 in 2-D; default 1 = the model alone; K times the model "
                        "calls)")
    p.add_argument("--tta-bright", type=int, default=1, metavar="K",
                   help="test-time ensemble of K views for the bright patches only (log-linear prefill >= "
                        "--bright x the brightest measured pixel: beside the Bragg peak, where the amplitude "
                        "error is made); default 1 = off")
    p.add_argument("--bright", type=float, default=0.01,
                   help="fraction of the brightest measured pixel that makes a patch bright (default 0.01)")
    p.add_argument("--trust", type=trust_arg, default="card", metavar="T", help=TRUST_HELP)
    p.add_argument("--max-width", type=int, default=None,
                   help="accept gaps up to this width (default: the model card's supported widths)")
    p.add_argument("--check", action=__import__("argparse").BooleanOptionalAction, default=True,
                   help="self-check (default on): fill the gap's mirror images through the Bragg peak (cut into "
                        "measured data) with the model and with log-linear interpolation and use the one with the "
                        "lower amplitude error there (without an image: the fill whose pattern has less "
                        "autocorrelation energy outside the crystal's support; scores on shifted copies of the "
                        "gap are reported too)")
    from .selfcheck import RULES
    p.add_argument("--check-rule", default=None, choices=list(RULES),
                   help="the self-check's rule (default mirror; geomean: the shifted copies, better on patterns "
                        "like the training data; see pynx_dlgap.inpaint.selfcheck)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_run_inpaint)
    return p


def _run_inpaint(a):
    import sys
    from ..data.io import check_output_path, load_mask, load_pattern, save_arrays
    from ..models.weights import WeightsError
    iobs = load_pattern(a.data, a.data_key)
    mask = load_mask(a.mask, a.mask_key, iobs.shape)
    iobs, mask = check_pattern(iobs, mask)
    from .tta import symmetry_views
    try:
        symmetry_views(iobs.ndim, a.tta)
        check_bright(iobs.ndim, a.tta_bright, a.bright)
    except ValueError as e:
        print(f"pynx-dlgap inpaint: error: {e}", file=sys.stderr)
        return 2
    check_output_path(a.output, [a.data, a.mask] + ([a.weights] if a.weights else []), a.overwrite)
    try:
        model, card = load_inpaint_model(a.weights)
    except WeightsError as e:
        print(f"pynx-dlgap inpaint: error: {e}", file=sys.stderr)
        return 2
    filled, info = inpaint(iobs, mask, model, overlap=a.overlap, batch_size=a.batch_size, device=a.device,
                           max_width=a.max_width, progress=not a.quiet, return_info=True, bf16=a.bf16,
                           check=(a.check_rule or True) if a.check else False, tta=a.tta, trust=a.trust,
                           tta_bright=a.tta_bright, bright=a.bright)
    wfile = Path(a.weights) if a.weights else DEFAULT_WEIGHTS
    save_arrays(a.output, {"data": filled, "mask": mask},
                attrs={"method": "pynx-dlgap inpaint", "fill": info["method"], "weights": str(wfile),
                       "weights_sha256": card.get("sha256", ""), "n_patches": info["n_patches"],
                       "overlap": info["overlap"], "tta": info["tta"],
                       "trust": "off" if info["trust"] is None else info["trust"],
                       "tta_bright": info["tta_bright"], "n_bright_patches": info["n_bright"],
                       "self_check": __import__("json").dumps(info.get("check"), default=float)},
                inputs=[a.data, a.mask], overwrite=a.overwrite)
    print(f"{info['plan']}")
    if info["method"] == "dl":
        print(f"inpainted {info['n_masked']} masked pixels with {info['n_patches']} patches in {info['n_batches']} "
              f"batches on {info['device']} in {info['seconds']:.2f} s (model {info['seconds_model']:.2f} s) "
              f"-> {a.output}")
    else:  # the self-check kept the classical fill: no patch of the model is in the output
        print(f"filled {info['n_masked']} masked pixels by log-linear interpolation (the self-check's choice; "
              f"--no-check uses the model) in {info['seconds']:.2f} s -> {a.output}")
    if a.png:
        from ..evaluate.figures import slices_figure
        slices_figure([("input (masked=0)", iobs * ~mask, "log"), ("mask", mask, "mask"),
                       (f"inpainted ({info['method']})", filled, "log")], a.png, title=str(a.data))
        print(f"figure -> {a.png}")
    return 0
