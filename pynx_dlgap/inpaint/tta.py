"""Test-time symmetric ensemble of an inpainting model (``inpaint(..., tta=K)``).

The inpainting models are trained with the augmentations of
:class:`pynx_dlgap.training.data.PatchStream`: a flip of every spatial axis and the
transposition of the two detector axes (the last two). These transformations form
a group of ``2**dims * 2`` elements (16 in 3-D, 8 in 2-D) that maps a gap patch to
another valid gap patch. :class:`SymmetricEnsemble` runs the model on ``K`` of them
(``g x``), maps each output back (``g^-1 y``) and averages, in the model's output
space (normalised ``log(I+1)``; :func:`pynx_dlgap.inpaint.patches.to_counts` then
inverts the normalisation, which is the same for every view of a patch). With all
the elements the ensemble is exactly equivariant under the group (tested).

The views are taken in a fixed order (:func:`symmetry_views`) chosen so that the
first ones differ the most: ``K = 2`` adds the view with every axis flipped and the
detector axes swapped. ``K`` views cost ``K`` model calls per patch; the bright patches
of ``inpaint(tta_bright=K)`` cost ``K - 1`` more than the others, whose pass is reused as
their first views (:meth:`SymmetricEnsemble.forward`'s ``first``).
``benchmarks/inpaint_speed.py --tta`` and ``benchmarks/gap_fill.py --tta`` measure
what they buy.
"""
from __future__ import annotations

import torch

__all__ = ["symmetry_views", "n_symmetries", "model_dims", "SymmetricEnsemble", "with_views"]

# indices into the product order below (transpose bit most significant, then the
# flip bits of axes 0, 1, ...): identity, everything flipped + transposed, ...
_ORDER = {3: (0, 15, 6, 9, 3, 12, 5, 10, 1, 14, 2, 13, 4, 11, 7, 8),
          2: (0, 7, 3, 4, 1, 6, 2, 5)}


def n_symmetries(dims: int) -> int:
    """Number of elements of the training augmentations' group in ``dims`` dimensions."""
    return 2 ** int(dims) * 2


def model_dims(model) -> int:
    """Spatial dimensions of an inpainting model, from its ``config`` (3 for a model without one)."""
    return int((getattr(model, "config", None) or {}).get("kwargs", {}).get("dims", 3))


def symmetry_views(dims: int, k: int) -> list[tuple[tuple[int, ...], bool]]:
    """The first ``k`` group elements as ``(flipped spatial axes, transposed)``."""
    dims = int(dims)
    if dims not in _ORDER:
        raise ValueError(f"dims must be 2 or 3, got {dims}")
    n = n_symmetries(dims)
    if not 1 <= int(k) <= n:
        raise ValueError(f"tta must be between 1 and {n} for a {dims}-D model "
                         f"(flips of the {dims} axes x the detector-axes transposition), got {k}")
    out = []
    for idx in _ORDER[dims][:int(k)]:
        t = bool(idx >> dims & 1)
        flips = tuple(a for a in range(dims) if idx >> (dims - 1 - a) & 1)
        out.append((flips, t))
    return out


class SymmetricEnsemble(torch.nn.Module):
    """``mean_g g^-1 model(g x)`` over the first ``k`` :func:`symmetry_views`.

    Input and output ``(B, C, *spatial)`` with ``dims`` spatial axes (cubic patches,
    or at least equal detector axes). ``config`` and ``card`` are the wrapped model's, so the
    rest of the inpainting code (patch size, card checks) sees the same model.
    """

    def __init__(self, model: torch.nn.Module, k: int, dims: int | None = None):
        super().__init__()
        if isinstance(model, SymmetricEnsemble):
            raise ValueError("the model is already a symmetric ensemble")
        self.model = model
        self.dims = model_dims(model) if dims is None else int(dims)
        self.views = symmetry_views(self.dims, k)
        self.config = getattr(model, "config", None)
        self.card = getattr(model, "card", None)

    @property
    def k(self) -> int:
        return len(self.views)

    def forward(self, x: torch.Tensor, first: torch.Tensor | None = None, n_first: int = 1) -> torch.Tensor:
        """The ensemble's output for ``x``.

        ``first``: the mean output of the first ``n_first`` views on ``x``, when the caller has it
        already (the wrapped model's own output for ``n_first=1``: the first view is the identity;
        a :class:`SymmetricEnsemble` of ``n_first`` views of the same model otherwise, since every
        ensemble takes the views in the same order): those views cost no model call.
        """
        if x.ndim != self.dims + 2:
            raise ValueError(f"expected a (B, C) + {self.dims}-D input, got shape {tuple(x.shape)}")
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"the detector axes must be equal to transpose them, got {tuple(x.shape[-2:])}")
        n_first = 0 if first is None else int(n_first)
        if first is not None and (first.shape[0] != x.shape[0] or first.shape[2:] != x.shape[2:]):
            raise ValueError(f"first {tuple(first.shape)} is not an output for the input {tuple(x.shape)}")
        if first is not None and not 1 <= n_first <= self.k:
            raise ValueError(f"n_first must be between 1 and the {self.k} views, got {n_first}")
        out = None if first is None else first.float() * n_first
        for flips, t in self.views[n_first:]:
            d = [2 + a for a in flips]
            xi = x.flip(d) if d else x
            if t:
                xi = xi.transpose(-1, -2)
            y = self.model(xi)
            if t:
                y = y.transpose(-1, -2)
            if d:
                y = y.flip(d)
            if y.dtype in (torch.bfloat16, torch.float16):  # accumulate in float32
                y = y.float()
            out = y if out is None else out + y
        return out / len(self.views)


def with_views(model: torch.nn.Module, tta: int = 1) -> torch.nn.Module:
    """``model`` itself for ``tta == 1``, else its :class:`SymmetricEnsemble` of ``tta`` views."""
    if int(tta) < 1:
        raise ValueError(f"tta must be >= 1 (1 = the model alone), got {tta}")
    if int(tta) == 1:
        return model
    return SymmetricEnsemble(model, int(tta))
