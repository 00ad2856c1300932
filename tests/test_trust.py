"""Trust region of the DL fill around log-linear interpolation (inpaint(trust=), to_counts(trust=),
DLInpaint(trust=), pynx-dlgap inpaint|phase --trust, pynx-cdi-id01-dl --dl-inpaint-trust).

References: a float64 numpy computation of the clipped correction; the bound it implies on
the whole-pattern fill, checked against numpy ``fill_loglinear`` on a freshly drawn
pattern with the shipped model; trust 0 giving the log-linear fill itself.
"""
import argparse

import numpy as np
import pytest
import torch

from pynx_dlgap.inpaint.baselines import fill_loglinear
from pynx_dlgap.inpaint.infer import inpaint, load_inpaint_model, resolve_trust, trust_arg
from pynx_dlgap.inpaint.tta import with_views
from pynx_dlgap.simulate.gaps import cross

from test_infer import _cli, cli_inputs, pattern, tiny  # noqa: E402
from test_tta import operator_fill  # noqa: E402


def test_to_counts_trust_matches_float64_reference():
    """Correction (model output - prefill, normalised) clipped to +-trust/span, then the patch
    bound, then inverted: against the same steps in float64 numpy."""
    from pynx_dlgap.inpaint.patches import prepare_batch, to_counts
    rng = np.random.default_rng()
    I = rng.poisson(rng.uniform(5, 3e4, (3, 1, 1, 1)) * rng.uniform(0, 1, (3, 12, 16, 16))).astype(np.float32)
    m = np.zeros(I.shape, bool)
    m[:, :, 6:10] = True
    x, stats = prepare_batch(I, m)
    x0 = x[:, :1].numpy().astype(np.float64)
    y = (x0 + rng.normal(0, 0.3, x0.shape)).astype(np.float32)
    t = float(rng.uniform(0.2, 1.0))
    got = to_counts(torch.from_numpy(y), stats, prefill=x[:, :1], trust=t).numpy()
    for b in range(3):
        L = np.log1p(I[b][~m[b]].astype(np.float64))
        lo, hi = L.min(), L.max()
        span = hi - lo
        d = t / span
        yc = x0[b, 0] + np.clip(y[b, 0] - x0[b, 0], -d, d)
        ref = np.expm1(np.maximum(np.minimum(yc, 1.0) * span + lo, 0))
        np.testing.assert_allclose(got[b], ref, rtol=3e-5, atol=1e-3)
    raw = to_counts(torch.from_numpy(y), stats).numpy()
    assert not np.allclose(raw, got, rtol=1e-3)  # the clip did something on this draw
    with pytest.raises(ValueError, match="prefill"):
        to_counts(torch.from_numpy(y), stats, trust=t)


def test_inpaint_trust_bounds_the_shipped_model_fill_around_loglinear():
    """Every filled voxel lies within e^T of numpy's whole-pattern log-linear fill (in I+1);
    without the trust region the shipped model goes further on this pattern; T = 0 gives the
    log-linear fill; measured voxels are bit-identical and the input is untouched."""
    model, card = load_inpaint_model()
    shape = (32, 48, 48)
    seed = int(np.random.default_rng().integers(1 << 30))
    I = pattern(shape, seed)
    m = cross(8, 18, 25).mask(shape)
    I0, m0 = I.copy(), m.copy()
    ll = np.log1p(fill_loglinear(I, m)[m].astype(np.float64))
    T = 0.1
    f, info = inpaint(I, m, model, progress=False, trust=T, return_info=True)
    assert info["trust"] == T
    assert np.array_equal(f[~m], I[~m]) and np.array_equal(I, I0) and np.array_equal(m, m0)
    r = np.log1p(f[m].astype(np.float64)) - ll
    assert np.abs(r).max() <= T + 1e-4
    raw = inpaint(I, m, model, progress=False, trust=None)
    assert np.abs(np.log1p(raw[m].astype(np.float64)) - ll).max() > T + 0.05
    zero = inpaint(I, m, model, progress=False, trust=0)
    np.testing.assert_allclose(np.log1p(zero[m].astype(np.float64)), ll, atol=1e-4)


def test_trust_from_the_card_and_errors():
    model, card = load_inpaint_model()
    T = (card.get("inference") or {}).get("trust")
    assert resolve_trust(model, "card") == T
    assert resolve_trust(model, None) is None and resolve_trust(model, float("inf")) is None
    assert resolve_trust(model, 0.7) == 0.7 and resolve_trust(tiny(), "card") is None
    assert with_views(model, 4).card is model.card  # the ensemble sees the same card
    for bad in (-0.1, float("nan"), "wide", [1]):
        with pytest.raises(ValueError, match="trust"):
            resolve_trust(model, bad)
    assert trust_arg("card") == "card" and trust_arg("off") is None and trust_arg("0.25") == 0.25
    for bad in ("-1", "nan", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            trust_arg(bad)
    shape = (32, 40, 40)
    I = pattern(shape, int(np.random.default_rng().integers(1 << 30)))
    m = cross(6, 14, 20).mask(shape)
    a, ia = inpaint(I, m, model, progress=False, return_info=True)  # default: the card's value
    b = inpaint(I, m, model, progress=False, trust=T)
    assert ia["trust"] == T and np.array_equal(a, b)
    with pytest.raises(ValueError, match="trust"):
        inpaint(I, m, model, progress=False, trust=-1)


def test_cli_trust(tmp_path, capsys):
    I, m, w = cli_inputs(tmp_path, 5)
    out = tmp_path / "out.npz"
    args = ["inpaint", str(tmp_path / "data.npz"), "--mask", str(tmp_path / "mask.npz"), "--weights", str(w),
            "--quiet", "--no-check"]
    assert _cli(args + ["-o", str(out), "--trust", "0.05"]) == 0
    with np.load(out) as z:
        np.testing.assert_allclose(z["data"], inpaint(I, m, weights=w, progress=False, trust=0.05), rtol=1e-6)
    with pytest.raises(SystemExit) as e:
        _cli(args + ["-o", str(tmp_path / "bad.npz"), "--trust", "-2"])
    assert e.value.code == 2 and "expected 'card', 'off'" in capsys.readouterr().err
    assert not (tmp_path / "bad.npz").exists()


@pytest.mark.pynx
def test_dlinpaint_operator_trust_matches_inpaint():
    I, m, model, cdi, DLInpaint = operator_fill(trust=0.02)
    assert cdi.dl_inpaint_info["trust"] == 0.02
    got = cdi.get_iobs(shift=True)[m]
    ref = inpaint(np.where(m, 0, I), m, model, progress=False, trust=0.02)[m]
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    assert not np.allclose(ref, inpaint(np.where(m, 0, I), m, model, progress=False, trust=None)[m], rtol=1e-3)
    with pytest.raises(ValueError, match="trust"):
        DLInpaint(weights="/nonexistent.safetensors", family="cpu", trust="wide")  # before the weights
