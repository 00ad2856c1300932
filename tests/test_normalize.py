"""normalize_patch / denormalize_patch / build_input on numpy and torch batches."""
import math

import numpy as np
import pytest
import torch

from pynx_dlgap.normalize import LOG_LEVEL_MAX, build_input, denormalize_patch, normalize_patch

RNG = np.random.default_rng(3)


def _batch(B=4, shape=(8, 8, 8)):
    peak = 10.0 ** RNG.uniform(1, 6, B)
    I = RNG.poisson(peak[:, None, None, None] * RNG.random((B,) + shape) ** 4).astype(np.float64)
    mask = np.zeros((B,) + shape, bool)
    mask[:, :, 3:5, :] = True  # a gap plane
    I[mask] = 1e9  # garbage in the gap must not change the stats
    return I, mask


def _reference(I, mask):
    """float64 reference normalisation."""
    L = np.log1p(np.maximum(I, 0))
    lo = np.array([L[b][~mask[b]].min() for b in range(len(I))])
    hi = np.array([L[b][~mask[b]].max() for b in range(len(I))])
    return (L - lo[:, None, None, None]) / (hi - lo)[:, None, None, None], lo, hi


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_matches_float64_reference(lib):
    I, mask = _batch()
    xr, lo, hi = _reference(I, mask)
    arr = I.astype(np.float32)
    if lib == "torch":
        arr, m = torch.from_numpy(arr), torch.from_numpy(mask)
    else:
        m = mask
    x, st = normalize_patch(arr, m)
    x = np.asarray(x)
    assert x.dtype == np.float32
    np.testing.assert_allclose(np.asarray(st["lo"]), lo, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(st["hi"]), hi, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(st["level"]), np.log10(I.max(axis=(1, 2, 3), where=~mask,
                                                                        initial=0) + 1) / 7, rtol=1e-5)
    np.testing.assert_allclose(x[~mask], xr[~mask], atol=2e-6)
    assert x[~mask].min() >= 0 and x[~mask].max() <= 1


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_round_trip(lib):
    I, mask = _batch()
    I32 = I.astype(np.float32)
    src = torch.from_numpy(I32) if lib == "torch" else I32
    msk = torch.from_numpy(mask) if lib == "torch" else mask
    x, st = normalize_patch(src, msk)
    back = np.asarray(denormalize_patch(x, st))
    # float32 precision on measured voxels vs the float64 truth (exp amplifies log error by ~log(I))
    np.testing.assert_allclose(back[~mask], I[~mask], rtol=3e-6, atol=1e-4)
    # float64 input: float64 precision
    src64 = torch.from_numpy(I) if lib == "torch" else I
    x64, st64 = normalize_patch(src64, msk)
    np.testing.assert_allclose(np.asarray(denormalize_patch(x64, st64))[~mask], I[~mask], rtol=1e-12, atol=1e-9)


def test_torch_channel_axis_and_device_types():
    I, mask = _batch(B=2)
    t = torch.from_numpy(I).float()[:, None]  # (B, 1, z, y, x)
    m = torch.from_numpy(mask)[:, None]
    x, st = normalize_patch(t, m)
    assert x.shape == t.shape and st["lo"].shape == (2,)
    y = denormalize_patch(x.to(torch.bfloat16), st)  # model output in bf16
    assert y.dtype == torch.float32
    # numpy stats with a torch prediction, and the other way round
    xn, stn = normalize_patch(I.astype(np.float32), mask)
    np.testing.assert_allclose(denormalize_patch(torch.from_numpy(xn), stn).numpy(),
                               denormalize_patch(xn, stn), rtol=1e-6)
    np.testing.assert_allclose(denormalize_patch(xn, {k: torch.from_numpy(np.asarray(v)) for k, v in stn.items()}),
                               denormalize_patch(xn, stn), rtol=1e-6)


def test_constant_and_empty_patches():
    I = np.stack([np.full((4, 4), 7.0), np.full((4, 4), 0.0), RNG.random((4, 4)) * 10]).astype(np.float32)
    mask = np.zeros(I.shape, bool)
    mask[2] = True  # nothing measured in the third patch
    x, st = normalize_patch(I, mask)
    assert np.all(np.isfinite(x))
    assert np.all(x[0] == 0) and np.all(x[1] == 0)
    assert st["span"][0] == 1 and st["lo"][0] == pytest.approx(math.log(8.0))
    assert st["lo"][2] == 0 and st["hi"][2] == 0 and st["span"][2] == 1
    np.testing.assert_allclose(x[2], np.log1p(I[2]), rtol=1e-6)
    back = denormalize_patch(x, st)
    np.testing.assert_allclose(back[:2], I[:2], rtol=1e-6)
    # torch, same behaviour
    xt, stt = normalize_patch(torch.from_numpy(I), torch.from_numpy(mask))
    np.testing.assert_allclose(xt.numpy(), x, rtol=1e-6)


def test_negative_masked_values_give_no_nan():
    I = RNG.random((2, 6, 6)).astype(np.float32) * 100
    mask = np.zeros(I.shape, bool)
    mask[:, 2] = True
    I[mask] = -1.0  # PyNX-style masked pixels
    x, st = normalize_patch(I, mask)
    assert np.all(np.isfinite(x))


def test_unbatched_and_broadcast_mask():
    I, mask = _batch(B=3)
    x1, s1 = normalize_patch(I[1], mask[1], batched=False)
    xb, sb = normalize_patch(I, mask)
    np.testing.assert_allclose(x1, xb[1])
    assert np.ndim(s1["lo"]) == 0 and s1["lo"] == pytest.approx(sb["lo"][1])
    np.testing.assert_allclose(denormalize_patch(x1, s1)[~mask[1]], I[1][~mask[1]], rtol=1e-10)
    # one mask shared by the batch
    xs, ss = normalize_patch(I, mask[0])
    np.testing.assert_allclose(xs, xb)


def test_mask_none_uses_all_voxels():
    I = RNG.random((2, 5, 5)) * 50
    x, st = normalize_patch(I)
    assert x.min() == 0 and x.max() == pytest.approx(1.0)
    assert st["level"][0] == pytest.approx(math.log1p(I[0].max()) / LOG_LEVEL_MAX)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_build_input(lib):
    I, mask = _batch(B=2)
    if lib == "torch":
        I, mask = torch.from_numpy(I).float(), torch.from_numpy(mask)
    x, st = normalize_patch(I, mask)
    inp = build_input(x, mask, st)
    assert tuple(inp.shape) == (2, 3, 8, 8, 8)
    inp = np.asarray(inp)
    np.testing.assert_allclose(inp[:, 0], np.asarray(x))
    np.testing.assert_array_equal(inp[:, 1], np.asarray(mask).astype(np.float32))
    for b in range(2):
        np.testing.assert_allclose(inp[b, 2], np.asarray(st["level"])[b], rtol=1e-6)
    four = build_input(x, mask, st, channels=("intensity", "mask", "level", "floor"))
    assert four.shape[1] == 4
    with pytest.raises(ValueError, match="unknown input channel"):
        build_input(x, mask, st, channels=("intensity", "colour"))
    with pytest.raises(ValueError, match="needs mask"):
        build_input(x, None, st)
