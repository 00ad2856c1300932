"""Training data, model inputs, resumable training and 2-process DDP (gloo on the CPU)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from pynx_dlgap.inpaint.baselines import fill_loglinear
from pynx_dlgap.inpaint.patches import prepare_batch, to_counts
from pynx_dlgap.models import build_model
from pynx_dlgap.models.dilated import SubLatticeDilatedConv
from pynx_dlgap.simulate.gaps import GapLayout
from pynx_dlgap.training.data import PatchStream

from conftest import TINY_INPAINT as TINY  # noqa: E402


@pytest.mark.parametrize("dims,shape", [(3, (2, 5, 20, 17, 16)), (2, (2, 5, 19, 24))])
@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_sublattice_dilated_conv_equals_dilated_conv(dims, shape, d):
    conv = SubLatticeDilatedConv(dims, 5, 7, 3, d).double()
    x = torch.randn(*shape, dtype=torch.float64)
    f = torch.nn.functional.conv3d if dims == 3 else torch.nn.functional.conv2d
    ref = f(x, conv.conv.weight, conv.conv.bias, padding=d, dilation=d)
    assert torch.allclose(conv(x), ref, atol=1e-12)
    # float32: CPU inference takes oneDNN's dilated kernel, training the sub-lattices; both agree
    c32, x32 = conv.float(), x.float()
    with torch.no_grad():
        fast = c32(x32)
    assert torch.allclose(fast.double(), ref, atol=1e-4, rtol=1e-4)
    assert torch.allclose(c32(x32.requires_grad_()).detach().double(), ref, atol=1e-4, rtol=1e-4)


def test_patch_stream_batches():
    seed = int(np.random.default_rng().integers(0, 10**6))
    # p_multi=0: one plane or one cross per patch, so every gap run is a single drawn gap (<= 12 px);
    # with several gaps, adjacent ones merge into wider runs
    a = PatchStream(seed=seed, batch=4, patch=16, source=32, patches_per_source=2, p_multi=0)
    I, m = next(a)
    assert I.shape == m.shape == (4, 16, 16, 16) and I.dtype == np.float32 and m.dtype == bool
    assert np.all(I >= 0) and np.array_equal(I, np.round(I))  # Poisson counts
    for b in range(4):
        lay, _ = GapLayout.from_mask(m[b])
        assert 1 <= len(lay) and lay.max_width <= 12 and not m[b].all()
    b2 = PatchStream(seed=seed, batch=4, patch=16, source=32, patches_per_source=2, p_multi=0)
    I2, m2 = next(b2)
    assert np.array_equal(I, I2) and np.array_equal(m, m2)  # reproducible from the seed
    b2.load_state_dict(a.state_dict())
    assert np.array_equal(next(a)[0], next(b2)[0])  # resumable stream


def test_patch_stream_expected_gap_target():
    """gap_target='expected': the same measured voxels, the simulator's noise-free counts in the gap."""
    from pynx_dlgap.simulate import simulate_3d
    seed = int(np.random.default_rng().integers(0, 10**6))
    kw = dict(seed=seed, batch=2, patch=16, source=32, patches_per_source=2, p_multi=0, flux_aug=False)
    I, m = next(PatchStream(**kw))
    E, m2 = next(PatchStream(**kw, gap_target="expected"))
    assert np.array_equal(m, m2) and np.array_equal(E[~m], I[~m])
    assert not np.array_equal(E[m], np.round(E[m]))  # expected counts, not integers
    # independent check: the gap holds the simulator's expected intensity at the patch's voxels
    src = simulate_3d(seed * 1_000_003, (32,) * 3, "mixed", gaps="none")["expected"]
    vals = np.sort(src.ravel().astype(np.float32))
    assert np.all(np.isin(E[m], vals))  # every gap value is one of the source's expected values
    # the input the model sees is the same for both targets
    np.testing.assert_array_equal(prepare_batch(I, m)[0].numpy(), prepare_batch(E, m)[0].numpy())
    with pytest.raises(ValueError, match="gap_target"):
        PatchStream(seed=1, gap_target="poisson")


def test_untrained_residual_model_returns_the_loglinear_fill():
    """The residual models start from the log-linear prefill: an untrained one reproduces it."""
    st = PatchStream(seed=5, batch=3, patch=16, source=32)
    I, m = next(st)
    x, stats = prepare_batch(I, m)
    assert x.shape == (3, 3, 16, 16, 16)
    model = build_model(TINY).eval()
    with torch.no_grad():
        y = to_counts(model(x), stats).numpy()
    for b in range(3):
        ref = fill_loglinear(I[b], m[b])
        np.testing.assert_allclose(y[b][m[b]], ref[m[b]], rtol=2e-4, atol=1e-3)
        np.testing.assert_allclose(y[b][~m[b]], I[b][~m[b]], rtol=2e-4, atol=1e-3)


def _tiny_args(out, steps):
    return dict(model=json.dumps(TINY), patch=16, source=32, batch=2, steps=steps, val_batches=1,
                val_every=2, ckpt_every=1, warmup=1, bf16=False)


def test_train_checkpoint_resume_and_export(tmp_path):
    from pynx_dlgap.models.weights import load_weights
    from pynx_dlgap.training.trainer import export, train
    out = tmp_path / "run"
    train(out, **_tiny_args(out, 2))
    st = torch.load(out / "checkpoint.pt", weights_only=True)
    assert int(st["step"]) == 2
    w0 = {k: v.clone() for k, v in st["model"].items()}
    last = train(out, **_tiny_args(out, 4))  # resumes at step 2
    st = torch.load(out / "checkpoint.pt", weights_only=True)
    assert int(st["step"]) == 4 and int(st["stream_k"][0]) > 0
    assert any(not torch.equal(w0[k], st["model"][k]) for k in w0)
    rows = (out / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and rows[0].startswith("step,")  # header + steps 2 and 4
    assert 0 <= last["val_mixed_win"] <= 1
    card = export(out, tmp_path / "w.safetensors")
    model, card2 = load_weights(tmp_path / "w.safetensors")
    assert card2["training"]["steps"] == 4 and card2["gap_widths_supported"] == [1, 12]
    with pytest.raises(ValueError, match="trained with"):
        train(out, **dict(_tiny_args(out, 6), patch=32))


def test_kept_checkpoints_and_averaged_export(tmp_path):
    """keep_every keeps the weights of steps 2 and 4; export(average=2) writes their mean,
    checked against a float64 numpy mean of the two kept state dicts."""
    from pynx_dlgap.models.weights import load_weights
    from pynx_dlgap.training.trainer import average_state_dicts, export, kept_checkpoints, train
    out = tmp_path / "run"
    train(out, **dict(_tiny_args(out, 4), keep_every=2))
    kept = kept_checkpoints(out)
    assert [s for s, _ in kept] == [2, 4]
    sd = [torch.load(f, weights_only=True)["model"] for _, f in kept]
    assert "opt" not in torch.load(kept[0][1], weights_only=True)  # weights only
    assert any(not torch.equal(sd[0][k], sd[1][k]) for k in sd[0])
    export(out, tmp_path / "avg.safetensors", average=2)
    model, card = load_weights(tmp_path / "avg.safetensors")
    assert card["training"]["averaged_checkpoint_steps"] == [2, 4]
    got = model.state_dict()
    for k, v in sd[0].items():
        if v.is_floating_point():
            ref = (sd[0][k].numpy().astype(np.float64) + sd[1][k].numpy().astype(np.float64)) / 2
            np.testing.assert_allclose(got[k].numpy(), ref, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="keeps 2 checkpoints"):
        export(out, tmp_path / "x.safetensors", average=3)
    with pytest.raises(ValueError, match="different architectures"):
        average_state_dicts([{"a": torch.zeros(2)}, {"b": torch.zeros(2)}])


def test_average_last_without_kept_checkpoints_fails_before_training(tmp_path):
    out = tmp_path / "run"
    base = [sys.executable, "-m", "pynx_dlgap.cli", "train", "--out", str(out), "--steps", "1"]
    for extra, msg in ((["--average-last", "3", "--export", str(tmp_path / "w.safetensors")], "--keep-every"),
                       (["--average-last", "3"], "--export")):
        r = subprocess.run(base + extra, capture_output=True, text=True, timeout=300)
        assert r.returncode != 0 and msg in r.stderr, r.stderr[-1000:]
        assert not out.exists()  # no training started


def test_ddp_two_processes_gloo(tmp_path):
    out = tmp_path / "ddp"
    a = _tiny_args(out, 2)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "pynx_dlgap.cli", "train", "--out", str(out), "--no-bf16"]
    for k, v in a.items():
        if k != "bf16":
            cmd += [f"--{k.replace('_', '-')}", str(v)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    st = torch.load(out / "checkpoint.pt", weights_only=True)
    assert int(st["step"]) == 2
    seeds = st["stream_seed"].tolist()
    assert len(seeds) == 2 and seeds[0] != seeds[1]  # one data stream per rank
