"""The torch versions of the inpainting steps (what runs on the GPU) against their numpy
counterparts, on freshly drawn data: the log-linear prefill, the model input, and the
device-side DLInpaint / DLPhaseInit steps run on CPU tensors against the CPU operators."""
import numpy as np
import pytest
import torch

from pynx_dlgap.inpaint.baselines import fill_loglinear
from pynx_dlgap.inpaint.patches import prepare_batch
from pynx_dlgap.inpaint.torch_ops import fill_loglinear_torch, prepare_batch_torch


def _batch(rng, nd, B=5, n=32):
    S = (n,) * nd
    I = rng.gamma(0.4, 300, size=(B,) + S).astype(np.float32)
    M = np.zeros((B,) + S, bool)
    for b in range(1, B):  # item 0 has no gap
        y0, w = rng.integers(2, n - 10), rng.integers(1, 10)
        M[b, ..., y0:y0 + w, :] = True
        if b % 2:  # a cross
            x0 = rng.integers(0, n - 4)
            M[b, ..., x0:x0 + rng.integers(1, 10)] = True
        M[b][rng.random(S) < 0.01] = True  # dead pixels
    M[-1, ..., : rng.integers(1, 4), :] = True  # a gap touching the edge
    return I, M


@pytest.mark.parametrize("nd", [2, 3])
def test_fill_loglinear_torch_matches_numpy(nd):
    rng = np.random.default_rng()
    I, M = _batch(rng, nd)
    ref = np.stack([fill_loglinear(I[b], M[b]) if M[b].any() else I[b] for b in range(len(I))])
    got = fill_loglinear_torch(torch.from_numpy(I), torch.from_numpy(M)).numpy()
    np.testing.assert_array_equal(got[~M], I[~M])
    np.testing.assert_allclose(np.log1p(got[M].astype(np.float64)), np.log1p(ref[M].astype(np.float64)),
                               rtol=0, atol=1e-5)


def test_fill_loglinear_torch_linear_field_is_exact():
    # log(I+1) linear along y: the fill across a y-gap reproduces it (analytic case)
    y = np.arange(32, dtype=np.float64)
    L = np.broadcast_to(0.2 * y[None, :, None] + 1.0, (1, 32, 32)).copy()
    I = np.expm1(L).astype(np.float32)[None]
    M = np.zeros(I.shape, bool)
    M[..., 10:17, :] = True
    got = fill_loglinear_torch(torch.from_numpy(I), torch.from_numpy(M)).numpy()
    np.testing.assert_allclose(np.log1p(got[M].astype(np.float64)), np.log1p(I[M].astype(np.float64)), atol=1e-5)


def test_prepare_batch_torch_matches_numpy():
    rng = np.random.default_rng()
    I, M = _batch(rng, 3, B=4)
    x0, s0 = prepare_batch(I, M)
    x1, s1 = prepare_batch_torch(torch.from_numpy(I), torch.from_numpy(M))
    torch.testing.assert_close(x1, x0, rtol=0, atol=2e-6)
    for k in ("lo", "span"):
        torch.testing.assert_close(s1[k].double(), s0[k].double(), rtol=1e-6, atol=1e-6)
