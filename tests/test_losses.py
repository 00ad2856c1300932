"""Losses against independent float64 numpy references, analytic cases and gradients."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from pynx_dlgap.training.losses import (CombinedInpaintLoss, WCALoss, gradient_loss, masked_l1, masked_mse,
                                        phasor_to_phase, ssim, ssim_loss, wca_loss)

RNG = np.random.default_rng(1)


def _data(shape=(2, 1, 12, 12, 12), p_gap=0.3):
    p = RNG.random(shape)
    t = RNG.random(shape)
    m = RNG.random(shape) < p_gap
    return p, t, m


def _t(a):
    return torch.from_numpy(np.asarray(a))


# ---------------------------------------------------------------- numpy references (float64)
def np_ssim_map(p, t, size=11, sigma=1.5, L=1.0):
    i = np.arange(size) - (size - 1) / 2
    g = np.exp(-i ** 2 / (2 * sigma ** 2))
    g /= g.sum()

    def blur(a):
        for ax in range(2, a.ndim):
            # replicate padding == 'nearest'; origin so that the window is centred like the torch pad
            a = ndimage.correlate1d(a, g, axis=ax, mode="nearest", origin=-((size + 1) % 2))
        return a

    mp, mt = blur(p), blur(t)
    vp, vt, c = blur(p * p) - mp ** 2, blur(t * t) - mt ** 2, blur(p * t) - mp * mt
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    return (2 * mp * mt + c1) * (2 * c + c2) / ((mp ** 2 + mt ** 2 + c1) * (vp + vt + c2))


def np_grad_loss(p, t, m):
    num = den = 0.0
    w = m.astype(float)
    for ax in range(2, p.ndim):
        d = (np.diff(p, axis=ax) - np.diff(t, axis=ax)) ** 2
        n = p.shape[ax]
        wa = np.maximum(np.take(w, range(n - 1), axis=ax), np.take(w, range(1, n), axis=ax))
        num += (d * wa).sum()
        den += wa.sum()
    return num / den


def np_wca(phi_p, phi_t, w):
    axes = tuple(range(1, phi_t.ndim))
    out = []
    for s in (1, -1):
        z = (w * np.exp(1j * (phi_p - s * phi_t))).sum(axes)
        out.append(1 - np.abs(z) / w.sum(axes))
    return np.minimum(*out)


# ---------------------------------------------------------------- masked MSE / L1 / gradient
def test_masked_mse_l1_vs_numpy():
    p, t, m = _data()
    assert masked_mse(_t(p), _t(t), _t(m)).item() == pytest.approx(((p - t) ** 2)[m].mean(), rel=1e-5)
    assert masked_l1(_t(p), _t(t), _t(m)).item() == pytest.approx(np.abs(p - t)[m].mean(), rel=1e-5)
    # mask given as (B, *spatial), target as (B, *spatial)
    assert masked_mse(_t(p), _t(t[:, 0]), _t(m[:, 0])).item() == pytest.approx(((p - t) ** 2)[m].mean(), rel=1e-5)
    # no mask: everywhere
    assert masked_mse(_t(p), _t(t)).item() == pytest.approx(((p - t) ** 2).mean(), rel=1e-5)
    # empty gap: defined (0), not NaN
    assert masked_mse(_t(p), _t(t), _t(np.zeros_like(m))).item() == 0.0


@pytest.mark.parametrize("shape", [(2, 1, 16, 16), (2, 1, 10, 12, 14)])
def test_gradient_loss_vs_numpy(shape):
    p, t, m = _data(shape)
    assert gradient_loss(_t(p), _t(t), _t(m)).item() == pytest.approx(np_grad_loss(p, t, m), rel=1e-5)
    assert gradient_loss(_t(t), _t(t), _t(m)).item() == 0.0
    # a constant offset has the same gradients
    assert gradient_loss(_t(t + 0.3), _t(t), _t(m)).item() == pytest.approx(0.0, abs=1e-10)


# ---------------------------------------------------------------- SSIM
@pytest.mark.parametrize("shape", [(2, 1, 24, 20), (1, 1, 14, 16, 12)])
@pytest.mark.parametrize("size", [11, 7])
def test_ssim_vs_numpy(shape, size):
    p, t, m = _data(shape)
    t = 0.7 * p + 0.3 * t  # correlated, so SSIM is far from 0
    ref = np_ssim_map(p, t, size=size)
    got = ssim(_t(p), _t(t), window_size=size, reduction="map").numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    assert ssim(_t(p), _t(t), _t(m), window_size=size).item() == pytest.approx(ref[m].mean(), rel=1e-4)
    per = ssim(_t(p), _t(t), _t(m), window_size=size, reduction="none").numpy()
    np.testing.assert_allclose(per, [ref[b][m[b]].mean() for b in range(shape[0])], rtol=1e-4)


@pytest.mark.parametrize("shape", [(2, 1, 64, 64), (1, 1, 32, 32, 32)])
def test_ssim_analytic(shape):
    x = torch.from_numpy(RNG.random(shape)).float()
    y = torch.from_numpy(RNG.random(shape)).float()
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-5)
    assert ssim_loss(x, x).item() == pytest.approx(0.0, abs=1e-5)
    assert abs(ssim(x, y).item()) < 0.05  # independent noise


# ---------------------------------------------------------------- combined
def test_combined_is_weighted_sum_and_differentiable():
    p, t, m = _data((2, 1, 16, 16, 16))
    pred = _t(p).float().requires_grad_()
    loss_fn = CombinedInpaintLoss(w_mse=1.0, w_l1=0.5, w_ssim=2.0, w_grad=3.0)
    loss = loss_fn(pred, _t(t).float(), _t(m))
    expected = (masked_mse(pred, _t(t), _t(m)) + 0.5 * masked_l1(pred, _t(t), _t(m))
                + 2 * ssim_loss(pred, _t(t), _t(m)) + 3 * gradient_loss(pred, _t(t), _t(m)))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(loss_fn.last) == {"mse", "l1", "ssim", "grad", "total"}
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert loss_fn(_t(t).float(), _t(t).float(), _t(m)).item() == pytest.approx(0.0, abs=1e-5)


def test_losses_accept_bf16():
    p, t, m = _data((1, 1, 8, 8, 8))
    pred = _t(p).to(torch.bfloat16).requires_grad_()
    loss = CombinedInpaintLoss()(pred, _t(t).float(), _t(m))
    assert loss.dtype == torch.float32
    loss.backward()
    assert torch.isfinite(pred.grad.float()).all()


# ---------------------------------------------------------------- WCA phase loss
@pytest.mark.parametrize("spatial", [(16, 16), (8, 8, 8)])
def test_wca_vs_numpy(spatial):
    B = 3
    phi_t = RNG.uniform(-np.pi, np.pi, (B,) + spatial)
    phi_p = phi_t + RNG.normal(0, 0.8, phi_t.shape)
    phi_p[1] = -phi_t[1] + 0.3 + RNG.normal(0, 0.2, spatial)  # a twin
    w = RNG.random(phi_t.shape)
    mask = RNG.random(phi_t.shape) < 0.2
    ref = np_wca(phi_p, phi_t, w * ~mask)
    got = wca_loss(_t(phi_p), _t(phi_t), _t(w), _t(mask), reduction="none").numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    # (cos, sin) prediction with arbitrary amplitude, normalised inside
    amp = RNG.uniform(0.2, 3.0, phi_p.shape)
    cs = np.stack([amp * np.cos(phi_p), amp * np.sin(phi_p)], axis=1)
    got2 = wca_loss(_t(cs), _t(phi_t), _t(w), _t(mask), reduction="none").numpy()
    np.testing.assert_allclose(got2, ref, rtol=1e-5, atol=1e-6)
    # truth with a channel axis, phase prediction with a channel axis
    got3 = wca_loss(_t(phi_p[:, None]), _t(phi_t[:, None]), _t(w), _t(mask), reduction="none").numpy()
    np.testing.assert_allclose(got3, ref, rtol=1e-5, atol=1e-6)
    assert WCALoss()(_t(cs), _t(phi_t), _t(w), _t(mask)).item() == pytest.approx(ref.mean(), rel=1e-5)


def test_wca_analytic_invariances():
    phi_t = torch.from_numpy(RNG.uniform(-3, 3, (2, 12, 12, 12)))
    w = torch.from_numpy(RNG.random(phi_t.shape))
    phi_p = phi_t + torch.from_numpy(RNG.normal(0, 0.5, phi_t.shape))
    assert wca_loss(phi_t, phi_t, w).item() == pytest.approx(0.0, abs=1e-6)
    assert wca_loss(-phi_t + 1.234, phi_t, w).item() == pytest.approx(0.0, abs=1e-6)  # twin + offset
    base = wca_loss(phi_p, phi_t, w).item()
    assert base > 0.05
    assert wca_loss(phi_p, phi_t + 2.5, w).item() == pytest.approx(base, abs=1e-6)  # global offset
    # phi_true -> -phi_true, prediction mirrored accordingly: same loss
    assert wca_loss(-phi_p, -phi_t, w).item() == pytest.approx(base, abs=1e-6)
    # without the twin minimum a twin prediction is penalised
    assert wca_loss(-phi_t, phi_t, w, twin=False).item() > 0.5
    # random prediction ~ 1
    rnd = torch.from_numpy(RNG.uniform(-np.pi, np.pi, phi_t.shape))
    assert wca_loss(rnd, phi_t, w).item() > 0.9


def test_wca_invariant_to_flipping_the_truth():
    phi_t = torch.from_numpy(RNG.uniform(-3, 3, (2, 16, 16)))
    phi_p = torch.from_numpy(RNG.uniform(-3, 3, (2, 16, 16)))
    assert wca_loss(phi_p, -phi_t).item() == pytest.approx(wca_loss(phi_p, phi_t).item(), abs=1e-7)


def test_wca_gradients_flow():
    phi_t = torch.from_numpy(RNG.uniform(-3, 3, (2, 8, 8, 8))).float()
    cs = torch.randn(2, 2, 8, 8, 8, requires_grad=True)
    w = torch.rand(2, 8, 8, 8)
    loss = wca_loss(cs, phi_t, w)
    loss.backward()
    assert torch.isfinite(cs.grad).all() and cs.grad.abs().sum() > 0
    # bf16 prediction (autocast output)
    cs16 = cs.detach().to(torch.bfloat16).requires_grad_()
    wca_loss(cs16, phi_t, w).backward()
    assert torch.isfinite(cs16.grad.float()).all()


def test_phasor_to_phase():
    phi = torch.from_numpy(RNG.uniform(-3, 3, (2, 5, 5))).float()
    cs = torch.stack([2 * torch.cos(phi), 2 * torch.sin(phi)], 1)
    assert torch.allclose(phasor_to_phase(cs), phi, atol=1e-5)


def test_amplitude_loss_matches_the_amplitude_error_for_small_errors():
    """amplitude_loss (intensity-weighted log MSE) ~ sum (sqrt f - sqrt t)^2 / sum t, in float64 numpy."""
    from pynx_dlgap.normalize import denormalize_patch, normalize_patch
    from pynx_dlgap.training.losses import amplitude_loss
    rng = np.random.default_rng()
    I = rng.uniform(100, 1e5, (3, 1, 12, 12, 12))
    m = np.zeros(I.shape, bool)
    m[:, :, :, 5:8] = True
    tn, st = normalize_patch(torch.from_numpy(I[:, 0]), torch.from_numpy(m[:, 0]))
    delta = torch.from_numpy(rng.normal(0, 0.004, I.shape))
    pred = tn[:, None] + delta
    got = amplitude_loss(pred, tn[:, None], torch.from_numpy(m), torch.from_numpy(I), st["span"]).item()
    f = denormalize_patch(pred[:, 0].double(), st).numpy()
    ref = np.mean([np.sum((np.sqrt(f[b][m[b, 0]]) - np.sqrt(I[b, 0][m[b, 0]])) ** 2) / I[b, 0][m[b, 0]].sum()
                   for b in range(3)])
    assert got == pytest.approx(ref, rel=0.05)
    assert amplitude_loss(tn[:, None], tn[:, None], torch.from_numpy(m), torch.from_numpy(I), st["span"]).item() == 0
    with pytest.raises(ValueError, match="w_amp"):
        CombinedInpaintLoss(w_amp=1.0)(pred, tn[:, None], torch.from_numpy(m))
