"""Losses: gap-masked inpainting losses and the phase loss (weighted coherent average).

Shapes
------
Inpainting losses take ``pred`` and ``target`` of shape ``(B, C, *spatial)`` (2-D or
3-D spatial; ``target`` may also be ``(B, *spatial)`` when ``C == 1``) and ``mask``
broadcastable to them (``(B, 1, *spatial)`` or ``(B, *spatial)``), **True/1 in the
gap**, i.e. where the loss is evaluated (the pattern's "not measured" mask).
``mask=None`` evaluates everywhere. A float mask acts as a weight. Everything is
computed in float32 (also under bf16 autocast) and is differentiable.

Phase loss: :func:`wca_loss` ``= 1 - |sum w exp(i(phi_pred - phi_true))| / sum w``,
minimised over ``(phi_true, -phi_true)`` per sample (twin ambiguity); the modulus
makes it blind to a global phase offset.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from ..models.unet import unit_phasor

__all__ = [
    "masked_mse", "masked_l1", "ssim", "ssim_loss", "gradient_loss", "amplitude_loss", "CombinedInpaintLoss",
    "wca_loss", "WCALoss", "phasor_to_phase", "gaussian_window",
]


def _prep(pred, target, mask):
    """float32 (B, C, *sp) pred/target and a float weight broadcastable to them."""
    pred = pred.float()
    target = target.float()
    if target.ndim == pred.ndim - 1:
        target = target.unsqueeze(1)
    if target.shape != pred.shape:
        raise ValueError(f"target shape {tuple(target.shape)} does not match prediction {tuple(pred.shape)}")
    if pred.ndim not in (4, 5):
        raise ValueError(f"expected (B, C, y, x) or (B, C, z, y, x) tensors; got shape {tuple(pred.shape)}")
    if mask is None:
        w = torch.ones((1,) * pred.ndim, dtype=pred.dtype, device=pred.device)
    else:
        w = torch.as_tensor(mask, device=pred.device).to(pred.dtype)
        if w.ndim == pred.ndim - 1:
            w = w.unsqueeze(1)
        try:
            torch.broadcast_shapes(w.shape, pred.shape)
        except RuntimeError:
            raise ValueError(f"mask shape {tuple(w.shape)} cannot broadcast to {tuple(pred.shape)}") from None
    return pred, target, w


def _wmean(v, w):
    """Weighted mean of v over the whole batch (0 if the weight is all zero)."""
    den = w.expand_as(v).sum()
    return (v * w).sum() / den.clamp_min(1e-12)


def masked_mse(pred, target, mask=None):
    """Mean squared error over the gap voxels (``mask`` True) of the whole batch."""
    p, t, w = _prep(pred, target, mask)
    return _wmean((p - t) ** 2, w)


def masked_l1(pred, target, mask=None):
    """Mean absolute error over the gap voxels of the whole batch."""
    p, t, w = _prep(pred, target, mask)
    return _wmean((p - t).abs(), w)


def gaussian_window(size: int = 11, sigma: float = 1.5, device=None, dtype=torch.float32):
    """Normalised 1-D Gaussian window ``exp(-(i - (size-1)/2)^2 / (2 sigma^2))``."""
    i = torch.arange(size, device=device, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(i * i) / (2 * sigma * sigma))
    return (g / g.sum()).to(dtype)


def _blur(x, g):
    """Separable Gaussian blur of (B, C, *sp) along every spatial axis, replicate padding."""
    nd = x.ndim - 2
    C = x.shape[1]
    k = g.numel()
    pad = k // 2
    conv = F.conv2d if nd == 2 else F.conv3d
    for axis in range(nd):
        shape = [1, 1] + [1] * nd
        shape[2 + axis] = k
        padding = [0, 0] * nd  # F.pad order: last axis first
        padding[2 * (nd - 1 - axis)] = pad
        padding[2 * (nd - 1 - axis) + 1] = k - 1 - pad
        kernel = g.view(shape).expand([C] + shape[1:])
        x = conv(F.pad(x, padding, mode="replicate"), kernel, groups=C)
    return x


def ssim(pred, target, mask=None, *, data_range: float = 1.0, window_size: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03, reduction: str = "mean"):
    """Structural similarity (Wang et al. 2004), 2-D or 3-D, Gaussian window, differentiable.

    Local statistics use a separable Gaussian window (``window_size``, ``sigma``) with
    replicate padding, so the SSIM map has the input's size; the map is then averaged
    with ``mask`` as weight (the gap), over channels too.

    reduction : ``'mean'`` (scalar over the batch), ``'none'`` (per sample, ``(B,)``)
        or ``'map'`` (the SSIM map ``(B, C, *spatial)``).
    """
    p, t, w = _prep(pred, target, mask)
    g = gaussian_window(window_size, sigma, device=p.device)
    C = p.shape[1]
    stack = torch.cat([p, t, p * p, t * t, p * t], dim=1)
    mu_p, mu_t, e_pp, e_tt, e_pt = _blur(stack, g).split(C, dim=1)
    var_p = e_pp - mu_p * mu_p
    var_t = e_tt - mu_t * mu_t
    cov = e_pt - mu_p * mu_t
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    smap = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p ** 2 + mu_t ** 2 + c1) * (var_p + var_t + c2))
    if reduction == "map":
        return smap
    if reduction == "mean":
        return _wmean(smap, w)
    if reduction == "none":
        we = w.expand_as(smap)
        dims = tuple(range(1, smap.ndim))
        return (smap * we).sum(dims) / we.sum(dims).clamp_min(1e-12)
    raise ValueError(f"reduction must be 'mean', 'none' or 'map' (got {reduction!r})")


def ssim_loss(pred, target, mask=None, **kw):
    """``1 - ssim(pred, target, mask)`` (the SSIM map averaged over the gap)."""
    return 1.0 - ssim(pred, target, mask, **kw)


def gradient_loss(pred, target, mask=None):
    """MSE of the finite differences along every spatial axis, inside the gap.

    A difference between voxels ``j`` and ``j+1`` counts where either is in the gap
    (weight ``max(w_j, w_{j+1})``); the mean runs over all counted differences.
    """
    p, t, w = _prep(pred, target, mask)
    num = p.new_zeros(())
    den = p.new_zeros(())
    for axis in range(2, p.ndim):
        n = p.shape[axis]
        if n < 2:
            continue
        d = (p.diff(dim=axis) - t.diff(dim=axis)) ** 2
        if w.shape[axis] == 1:
            wa = w
        else:
            wa = torch.maximum(w.narrow(axis, 0, n - 1), w.narrow(axis, 1, n - 1))
        wa = wa.expand_as(d)
        num = num + (d * wa).sum()
        den = den + wa.sum()
    return num / den.clamp_min(1e-12)


def amplitude_loss(pred, target, mask, intensity, span):
    """Relative amplitude error in the gap, the quantity phase retrieval sees.

    For a filled intensity ``f`` and the truth ``t``,
    ``sum (sqrt f - sqrt t)^2 / sum t ~= sum t (ln f - ln t)^2 / (4 sum t)`` for small errors.
    With ``pred``/``target`` in the normalised log space of
    :func:`pynx_dlgap.normalize.normalize_patch` (``ln(I+1) = y*span + lo``), this is the
    intensity-weighted MSE ``sum_gap t ((pred - target) span)^2 / (4 sum_gap t)``, per patch,
    averaged over the patches whose gap holds any intensity. Unlike the MSE in normalised
    log space, where the few bright voxels near the Bragg peak weigh as much as the
    many dark ones, it weights every voxel by its share of the gap's photons.

    ``intensity``: the true counts, shaped like ``target``; ``span``: per-patch ``(B,)``.
    """
    p, t, w = _prep(pred, target, mask)
    i = torch.as_tensor(intensity, device=p.device).float()
    if i.ndim == p.ndim - 1:
        i = i.unsqueeze(1)
    wi = (w * i.clamp_min(0)).expand_as(p)
    sp = torch.as_tensor(span, device=p.device).float().reshape((-1,) + (1,) * (p.ndim - 1))
    d2 = ((p - t) * sp) ** 2
    dims = tuple(range(1, p.ndim))
    tot = wi.sum(dims)
    per = (wi * d2).sum(dims) / (4 * tot.clamp_min(1e-12))
    ok = tot > 0
    return per[ok].mean() if bool(ok.any()) else per.sum() * 0


class CombinedInpaintLoss(nn.Module):
    """``w_mse*MSE + w_l1*L1 + w_ssim*(1 - SSIM) + w_grad*gradient MSE + w_amp*amplitude``, in the gap.

    The seed kept MSE + SSIM + gradient MSE (the defaults here). ``w_amp`` adds
    :func:`amplitude_loss`: trained on the log-space terms alone, the shipped
    model overestimated the brightest gap voxels by up to 3x (a small error in
    normalised log units), which phase retrieval turns into real-space errors. After each call,
    ``self.last`` holds the detached components (for logging).
    """

    def __init__(self, w_mse: float = 1.0, w_l1: float = 0.0, w_ssim: float = 1.0, w_grad: float = 1.0,
                 w_amp: float = 0.0, *, data_range: float = 1.0, window_size: int = 11, sigma: float = 1.5):
        super().__init__()
        self.w_mse, self.w_l1, self.w_ssim, self.w_grad = float(w_mse), float(w_l1), float(w_ssim), float(w_grad)
        self.w_amp = float(w_amp)
        self.ssim_kw = dict(data_range=data_range, window_size=window_size, sigma=sigma)
        self.last: dict[str, float] = {}

    def forward(self, pred, target, mask=None, intensity=None, span=None):
        """``intensity`` (true counts) and ``span`` (per-patch log range) are needed when ``w_amp`` > 0."""
        total = pred.new_zeros((), dtype=torch.float32)
        parts = {}
        if self.w_mse:
            parts["mse"] = masked_mse(pred, target, mask)
            total = total + self.w_mse * parts["mse"]
        if self.w_l1:
            parts["l1"] = masked_l1(pred, target, mask)
            total = total + self.w_l1 * parts["l1"]
        if self.w_ssim:
            parts["ssim"] = ssim_loss(pred, target, mask, **self.ssim_kw)
            total = total + self.w_ssim * parts["ssim"]
        if self.w_grad:
            parts["grad"] = gradient_loss(pred, target, mask)
            total = total + self.w_grad * parts["grad"]
        if self.w_amp:
            if intensity is None or span is None:
                raise ValueError("w_amp > 0 needs the true intensity and the per-patch span")
            parts["amp"] = amplitude_loss(pred, target, mask, intensity, span)
            total = total + self.w_amp * parts["amp"]
        self.last = {k: float(v.detach()) for k, v in parts.items()}
        self.last["total"] = float(total.detach())
        return total

    def extra_repr(self):
        return (f"w_mse={self.w_mse}, w_l1={self.w_l1}, w_ssim={self.w_ssim}, w_grad={self.w_grad}, "
                f"w_amp={self.w_amp}")


def phasor_to_phase(pred):
    """Phase ``atan2(sin, cos)`` of a ``(B, 2, *spatial)`` (cos, sin) prediction -> ``(B, *spatial)``."""
    return torch.atan2(pred[:, 1].float(), pred[:, 0].float())


def _cos_sin(pred, spatial_ndim):
    """(cos, sin) of a prediction given as (B, 2, *sp) phasor or (B, *sp)/(B, 1, *sp) phase."""
    if pred.ndim == spatial_ndim + 2 and pred.shape[1] == 2:
        u = unit_phasor(pred, dim=1)
        return u[:, 0], u[:, 1]
    ph = pred.float()
    if ph.ndim == spatial_ndim + 2 and ph.shape[1] == 1:
        ph = ph[:, 0]
    if ph.ndim != spatial_ndim + 1:
        raise ValueError(f"phase prediction of shape {tuple(pred.shape)} does not fit a target with "
                         f"{spatial_ndim} spatial dims: give (B, 2, *sp) (cos, sin) or (B, *sp) phases")
    return torch.cos(ph), torch.sin(ph)


def wca_loss(pred, phase_true, weight=None, mask=None, *, twin: bool = True, reduction: str = "mean"):
    """Weighted coherent average phase loss, minimised over the twin ``(phi, -phi)``.

    ``WCA = 1 - |sum w exp(i(phi_pred - phi_true))| / sum w`` per sample, with
    ``phi_pred`` from ``pred``. A global phase offset drops out through the modulus;
    with ``twin=True`` the loss is ``min(WCA(phi_true), WCA(-phi_true))``.

    Parameters
    ----------
    pred : ``(B, 2, *sp)`` (cos, sin) — normalised to a unit phasor here — or a phase
        ``(B, *sp)`` / ``(B, 1, *sp)`` in radians.
    phase_true : ``(B, *sp)`` or ``(B, 1, *sp)`` true phase (radians).
    weight : ``w`` broadcastable to ``(B, *sp)``, e.g. the normalised log-intensity
        (``None``: uniform).
    mask : True where a voxel must not count (not measured); ``w`` is zeroed there.
    reduction : ``'mean'`` over the batch or ``'none'`` (``(B,)``).
    """
    t = phase_true.float()
    if t.ndim >= 4 and t.shape[1] == 1:  # (B, 1, *sp) -> (B, *sp)
        t = t[:, 0]
    nd = t.ndim - 1
    if nd not in (1, 2, 3):
        raise ValueError(f"phase_true must be (B, *spatial); got shape {tuple(phase_true.shape)}")
    cp, sp = _cos_sin(pred, nd)
    if cp.shape != t.shape:
        raise ValueError(f"prediction spatial shape {tuple(cp.shape)} does not match the truth {tuple(t.shape)}")
    ct, st = torch.cos(t), torch.sin(t)
    w = torch.ones_like(t) if weight is None else torch.as_tensor(weight, device=t.device).float()
    if w.ndim == t.ndim + 1 and w.shape[1] == 1:
        w = w[:, 0]
    w = w.expand_as(t)
    if mask is not None:
        m = torch.as_tensor(mask, device=t.device).bool()
        if m.ndim == t.ndim + 1 and m.shape[1] == 1:
            m = m[:, 0]
        w = w * (~m).to(w.dtype)
    dims = tuple(range(1, t.ndim))
    wsum = w.sum(dims).clamp_min(1e-12)
    # exp(i(pp - pt)) = (cp ct + sp st) + i (sp ct - cp st)
    re = (w * (cp * ct + sp * st)).sum(dims)
    im = (w * (sp * ct - cp * st)).sum(dims)
    loss = 1.0 - torch.sqrt(re * re + im * im + 1e-20) / wsum
    if twin:
        # exp(i(pp + pt)) = (cp ct - sp st) + i (sp ct + cp st)
        re2 = (w * (cp * ct - sp * st)).sum(dims)
        im2 = (w * (sp * ct + cp * st)).sum(dims)
        loss = torch.minimum(loss, 1.0 - torch.sqrt(re2 * re2 + im2 * im2 + 1e-20) / wsum)
    if reduction == "mean":
        return loss.mean()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean' or 'none' (got {reduction!r})")


class WCALoss(nn.Module):
    """Module form of :func:`wca_loss`: ``forward(pred, phase_true, weight=None, mask=None)``."""

    def __init__(self, twin: bool = True):
        super().__init__()
        self.twin = bool(twin)

    def forward(self, pred, phase_true, weight=None, mask=None):
        return wca_loss(pred, phase_true, weight, mask, twin=self.twin)
