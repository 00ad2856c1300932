"""bf16 only where native (pynx_dlgap.precision): the fallback to float32 is exact, warned about and
recorded; a forced bf16 run really runs bf16 (its numbers differ from float32's, by little)."""
import json
import warnings

import numpy as np
import pytest
import torch

import pynx_dlgap.precision as precision
from pynx_dlgap.inpaint.infer import inpaint
from pynx_dlgap.models import build_model
from pynx_dlgap.phase.predict import predict_phase
from pynx_dlgap.simulate import simulate_3d
from pynx_dlgap.simulate.gaps import cross

from conftest import TINY_INPAINT

TINY_PHASE3 = {"class": "UNet", "kwargs": dict(dims=3, in_channels=5, out_channels=2, depth=2, channels=(4, 8),
                                               norm="group", norm_groups=2, out_activation="phasor")}


def _seed():
    return int(np.random.default_rng().integers(1 << 30))


def _model(cfg):
    torch.manual_seed(_seed())
    m = build_model(cfg)
    with torch.no_grad():  # a non-trivial output (the residual output conv starts at zero)
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m.eval()


@pytest.fixture
def crystal():
    s = simulate_3d(_seed(), (32,) * 3, "measured", floor=0.0, diffuse=0.0, gaps="none", crop_shift=[0, 0, 0])
    m = cross(3, 14, 18).mask((32,) * 3)
    return np.where(m, 0, s["intensity"]).astype(np.float32), m


def test_resolve_bf16_rules(monkeypatch):
    monkeypatch.delenv("PYNX_DLGAP_BF16", raising=False)
    for native in (False, True):
        monkeypatch.setattr(precision, "bf16_native", lambda device, n=native: n)
        assert precision.resolve_bf16("auto", "cpu") is native and precision.resolve_bf16("AUTO", "cpu") is native
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # False and 'auto' never warn, nor True where native
            assert precision.resolve_bf16(False, "cpu") is False
            if native:
                assert precision.resolve_bf16(True, "cpu") is True
        if not native:
            with pytest.warns(RuntimeWarning, match="no native bfloat16.*using float32"):
                assert precision.resolve_bf16(True, "cpu") is False
            monkeypatch.setenv("PYNX_DLGAP_BF16", "force")
            assert precision.resolve_bf16(True, "cpu") is True
            monkeypatch.delenv("PYNX_DLGAP_BF16")
    with pytest.raises(ValueError, match="True, False or 'auto'"):
        precision.resolve_bf16("yes", "cpu")


def test_native_check_agrees_with_onednn():
    """The CPU answer is oneDNN's own; a CUDA device without CUDA is not native."""
    assert precision.bf16_native("cpu") == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if not torch.cuda.is_available():
        assert precision.bf16_native("cuda") is False


def test_phase_fallback_is_float32_exactly(monkeypatch, crystal):
    """bf16=True where bf16 is not native: a warning, and the float32 prediction bit for bit,
    recorded as bf16 False."""
    monkeypatch.delenv("PYNX_DLGAP_BF16", raising=False)
    monkeypatch.setattr(precision, "bf16_native", lambda device: False)
    model = _model(TINY_PHASE3)
    I, m = crystal
    I0 = I.copy()
    ref, i32 = predict_phase(I, m, model=model, return_info=True)
    with pytest.warns(RuntimeWarning, match="phase model"):
        got, i16 = predict_phase(I, m, model=model, return_info=True, bf16=True)
    assert i16["bf16"] is False and i32["bf16"] is False
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(I, I0)


def test_inpaint_fallback_is_float32_exactly(monkeypatch, crystal):
    monkeypatch.delenv("PYNX_DLGAP_BF16", raising=False)
    monkeypatch.setattr(precision, "bf16_native", lambda device: False)
    model = _model(TINY_INPAINT)
    I, m = crystal
    ref, i32 = inpaint(I, m, model=model, progress=False, return_info=True, device="cpu", trust=None)
    with pytest.warns(RuntimeWarning, match="inpainting model"):
        got, i16 = inpaint(I, m, model=model, progress=False, return_info=True, device="cpu", trust=None, bf16=True)
    assert i16["bf16"] is False
    np.testing.assert_array_equal(got, ref)


def test_forced_bf16_runs_bf16(monkeypatch, crystal):
    """PYNX_DLGAP_BF16=force: bf16 really runs (recorded, and the numbers move a little from
    float32's: phase by < 0.1 rad weighted RMS, fill by < 5 % in log space)."""
    monkeypatch.setenv("PYNX_DLGAP_BF16", "force")
    monkeypatch.setattr(precision, "bf16_native", lambda device: False)
    I, m = crystal
    model = _model(TINY_PHASE3)
    p32 = predict_phase(I, m, model=model)
    p16, info = predict_phase(I, m, model=model, return_info=True, bf16=True)
    assert info["bf16"] is True
    from pynx_dlgap.phase.inputs import phase_input
    w = phase_input(I, m)[0].astype(np.float64)
    d = np.angle(np.exp(1j * (p16.astype(np.float64) - p32)))
    rms = np.sqrt(np.sum(w * d ** 2) / np.sum(w))
    assert 0 < rms < 0.1, rms
    imodel = _model(TINY_INPAINT)
    f32 = inpaint(I, m, model=imodel, progress=False, device="cpu", trust=None)
    f16, info = inpaint(I, m, model=imodel, progress=False, device="cpu", trust=None, bf16=True, return_info=True)
    assert info["bf16"] is True
    e = np.abs(np.log1p(f16[m].astype(np.float64)) - np.log1p(f32[m].astype(np.float64)))
    assert 0 < e.max() and e.mean() < 0.05 * np.log1p(f32[m].astype(np.float64)).mean()
    np.testing.assert_array_equal(f16[~m], I[~m])


def test_training_default_precision_is_native(tmp_path):
    """train() without --bf16/--no-bf16 runs bf16 exactly where native; the run's config says which."""
    from pynx_dlgap.training.trainer import train
    out = tmp_path / "run"
    train(out, model=json.dumps(TINY_INPAINT), patch=16, source=32, batch=2, steps=1, val_batches=1, val_every=1,
          ckpt_every=1, warmup=1)
    cfg = json.loads((out / "config.json").read_text())
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    assert cfg["bf16"] is precision.bf16_native(dev)
