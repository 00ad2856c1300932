"""Whole-pattern deep-learning inpainting (pynx_dlgap.inpaint.infer): patch plan, batched
inference, blending, errors, weights and CLI.

The reference for the numbers: an *untrained residual* model returns exactly its input
channel 0, the log-linear prefill of each patch. So ``inpaint`` with it must equal the
window-blend of per-patch ``fill_loglinear`` fills (computed here independently, patch by
patch in numpy), and, for masks made only of gap planes (each trusted patch holds the whole
interpolation line of each gap voxel), ``fill_loglinear`` on the whole pattern.
"""
import argparse

import numpy as np
import pytest
import torch

from pynx_dlgap import PatternError
from pynx_dlgap.inpaint import fill_loglinear
from pynx_dlgap.inpaint import infer
from pynx_dlgap.inpaint.infer import add_cli, blend_window, inpaint, load_inpaint_model, plan_patches
from pynx_dlgap.models import WeightsError, build_model, save_weights
from pynx_dlgap.simulate.gaps import Gap, GapLayout, cross, plane, random_layout

from conftest import TINY_INPAINT as TINY  # noqa: E402


def tiny(dims=3, perturb=False, seed=0):
    torch.manual_seed(seed)
    cfg = {"class": TINY["class"], "kwargs": dict(TINY["kwargs"], dims=dims)}
    m = build_model(cfg)
    if perturb:  # a non-trivial output (the residual output conv starts at zero)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.05 * torch.randn_like(p))
    return m.eval()


def pattern(shape, seed=0):
    """Positive counts with structure and a few zeros (log-space fills see real variation)."""
    rng = np.random.default_rng(seed)
    c = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r2 = sum(x ** 2 for x in c)
    lam = 1e4 * np.exp(-4 * r2) * (1 + np.cos(9 * c[-1] + 5 * c[-2]) ** 2) + 0.5
    return rng.poisson(lam).astype(np.float32)


def add_dead(rng, mask, n_iso=6, n_lines=2, cluster=True):
    m = mask.copy()
    shape = m.shape
    for _ in range(n_iso):
        m[tuple(int(rng.integers(0, s)) for s in shape)] = True
    if m.ndim == 3:
        for _ in range(n_lines):  # a dead detector pixel: a line along z over the rocking scan
            m[:, int(rng.integers(0, shape[1])), int(rng.integers(0, shape[2]))] = True
    if cluster:
        lo = [int(rng.integers(0, s - 3)) for s in shape]
        m[tuple(slice(a, a + 3) for a in lo)] = True
    return m


def reference_blend(I, mask, plan):
    """Window-blend of per-patch fill_loglinear fills, with the trusted-gap rule, in numpy."""
    lay = GapLayout.from_mask(mask)[0]
    P = plan.patch
    win = np.ones(P)
    for ax, p in enumerate(P):
        sh = [1] * len(P)
        sh[ax] = p
        win = win * np.sin(np.pi * (np.arange(p) + 0.5) / p).reshape(sh)
    acc = np.zeros(I.shape)
    ws = np.zeros(I.shape)
    for c in plan.corners:
        sl = tuple(slice(int(a), int(a) + p) for a, p in zip(c, P))
        f = fill_loglinear(I[sl], mask[sl])
        ok = mask[sl].copy()
        for g in lay:
            ax = I.ndim + g.axis
            lo, hi = int(c[ax]), int(c[ax]) + P[ax]
            crossed = lo <= max(g.start - 1, 0) and min(g.stop, I.shape[ax] - 1) < hi
            if not crossed:
                idx = np.arange(lo, hi)
                sh = [1] * len(P)
                sh[ax] = P[ax]
                ok &= ~((idx >= g.start) & (idx < g.stop)).reshape(sh)
        acc[sl] += win * ok * np.log1p(f.astype(np.float64))
        ws[sl] += win * ok
    out = I.astype(np.float32).copy()
    out[mask] = np.expm1(acc[mask] / ws[mask])
    return out


def assert_log_close(a, b, mask, tol=5e-6):
    d = np.abs(np.log1p(a[mask].astype(np.float64)) - np.log1p(b[mask].astype(np.float64)))
    assert d.max() < tol, d.max()


# ---------------------------------------------------------------------------
# patch plan
# ---------------------------------------------------------------------------
def test_plan_covers_every_masked_voxel_random_layouts():
    rng = np.random.default_rng(12345)
    shapes = [(32, 32, 32), (40, 77, 65), (33, 100, 45), (64, 50, 96), (50, 70), (32, 129), (96, 33)]
    n = 0
    while n < 40:
        shape = shapes[n % len(shapes)]
        lay = random_layout(rng, shape[-2:], widths=range(1, 13), p_cross=0.35, p_multi=0.35, margin=0)
        m = lay.mask(shape)
        if GapLayout.from_mask(m)[0].max_width > 12:  # overlapping random gaps merged into a wide one
            continue
        if n % 3:
            m = add_dead(rng, m, cluster=bool(n % 2))
        overlap = [None, 0, 8, 24][n % 4]
        plan = plan_patches(m, 32, overlap)
        assert len(plan) > 0 and plan.corners.shape[1] == len(shape)
        assert (plan.corners >= 0).all() and (plan.corners + 32 <= np.array(shape)).all()
        cov = plan.covered(m)
        assert not (cov & ~m).any()
        assert (cov == m).all(), (shape, str(lay), overlap, int((m & ~cov).sum()))
        n += 1


def test_plan_dead_pixels_only_and_no_mask():
    rng = np.random.default_rng(3)
    m = add_dead(rng, np.zeros((48, 70, 40), bool), n_iso=20, n_lines=3)
    plan = plan_patches(m, 32)
    assert plan.counts()["dead"] == len(plan) > 0 and (plan.covered(m) == m).all()
    # dead voxels sit >= dead_margin from the faces of at least one patch (array faces excepted)
    pts = np.argwhere(m)
    ok = np.zeros(len(pts), bool)
    for c in plan.corners:
        lo = np.where(c > 0, c + plan.dead_margin, 0)
        hi = np.where(c + 32 < np.array(m.shape), c + 32 - plan.dead_margin, np.array(m.shape))
        ok |= np.all((pts >= lo) & (pts < hi), axis=1)
    assert ok.all()
    assert len(plan_patches(np.zeros((32, 40, 40), bool), 32)) == 0


def test_plan_counts_128_cross_and_centring():
    for w in (6, 12):
        m = cross(w, 64 - w // 2, 64 - w // 2).mask((128, 128, 128))
        plan = plan_patches(m, 32)
        assert len(plan) == 91, plan.summary()  # vs ~18,800 single-patch calls in the reference code
        assert len(plan_patches(m, 32, overlap=0)) == 36
        # gap patches are centred on the gap along its normal
        gy = [c for c, k in zip(plan.corners, plan.kinds) if k != "dead" and c[1] == 64 - 16]
        assert len(gy) >= 49
    m = plane(-1, 6, 0).mask((32, 40, 128))  # gap at an edge: patches shifted inside the array
    plan = plan_patches(m, 32)
    assert set(plan.corners[:, 2]) == {0}


def test_plan_refuses_small_pattern_and_wide_gap():
    with pytest.raises(PatternError, match="smaller than"):
        plan_patches(np.zeros((31, 64, 64), bool), 32)
    with pytest.raises(PatternError, match="fill --method loglinear"):
        plan_patches(plane(-2, 31, 10).mask((32, 64, 64)), 32)
    with pytest.raises(ValueError, match="overlap"):
        plan_patches(plane(-2, 6, 10).mask((32, 64, 64)), 32, overlap=32)


def test_blend_window():
    w = blend_window((32, 32, 32))
    assert w.shape == (32, 32, 32) and w.min() > 0.0 and w.max() <= 1.0
    assert np.isclose(w[15, 15, 15], w.max()) and np.isclose(w[16, 16, 16], w.max()) and np.isclose(w[0, 0, 0], w.min())


# ---------------------------------------------------------------------------
# numbers: untrained residual model == log-linear references
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape,lay", [
    ((40, 64, 56), plane(-2, 6, 29)),                     # plane normal to y
    ((32, 48, 70), plane(-1, 12, 40)),                    # plane normal to x, 12 px
    ((36, 45, 40), plane(-2, 5, 0)),                      # touching the array edge
    ((40, 72, 65), cross(6, 30, 20)),                     # cross
    ((32, 80, 60), GapLayout((Gap(-2, 0, 5), Gap(-2, 50, 3), Gap(-1, 55, 5), Gap(-1, 20, 9)))),  # several
])
def test_untrained_equals_global_loglinear(shape, lay):
    I = pattern(shape, seed=sum(shape))
    m = lay.mask(shape)
    out = inpaint(I, m, tiny(), progress=False)
    assert_log_close(out, fill_loglinear(I, m), m)


def test_untrained_equals_global_loglinear_2d():
    I = pattern((70, 50), seed=1)
    m = cross(4, 30, 10).mask(I.shape)
    out, info = inpaint(I, m, tiny(dims=2), progress=False, return_info=True)
    assert info["patch"] == [32, 32]
    assert_log_close(out, fill_loglinear(I, m), m)


@pytest.mark.parametrize("seed", [0, 1])
def test_untrained_equals_blend_of_patch_fills_with_dead_pixels(seed):
    rng = np.random.default_rng(seed)
    shape = (40, 70, 52)
    I = pattern(shape, seed)
    m = add_dead(rng, cross(7, 20, 40).mask(shape), n_iso=8, n_lines=2)
    if seed:
        m = add_dead(rng, plane(-1, 3, 49).mask(shape), n_iso=4, n_lines=1)  # edge gap + dead pixels
    out, info = inpaint(I, m, tiny(), progress=False, return_info=True, batch_size=7, dead="dl")
    plan = plan_patches(m, 32)
    assert info["n_patches"] == len(plan) and plan.counts()["dead"] > 0
    assert_log_close(out, reference_blend(I, m, plan), m)
    # default dead='loglinear': no dead-pixel patch; gap planes from the patches, the rest log-linear
    out2, info2 = inpaint(I, m, tiny(), progress=False, return_info=True, batch_size=7)
    plan2 = plan_patches(m, 32, dead_patches=False)
    assert info2["n_patches"] == len(plan2) == plan.counts()["gap"] + plan.counts()["cross"]
    lay, rest = GapLayout.from_mask(m)
    assert rest.any()
    with np.errstate(invalid="ignore"):  # the reference leaves the dead pixels (no patch) at 0/0
        ref2 = reference_blend(I, m, plan2)
    assert_log_close(out2, ref2, m & ~rest)
    assert_log_close(out2, fill_loglinear(I, m), rest)


# ---------------------------------------------------------------------------
# guarantees
# ---------------------------------------------------------------------------
def test_measured_bit_identical_input_untouched_output_float32():
    shape = (32, 50, 44)
    I64 = pattern(shape, 5).astype(np.float64) * 1.37  # float64 input: measured = its float32 conversion
    m = add_dead(np.random.default_rng(5), cross(6, 20, 10).mask(shape))
    keep_I, keep_m = I64.copy(), m.copy()
    out = inpaint(I64, m, tiny(perturb=True), progress=False)
    assert out.dtype == np.float32 and out.shape == shape
    assert np.array_equal(I64, keep_I) and np.array_equal(m, keep_m)
    ref32 = I64.astype(np.float32)
    assert np.array_equal(out[~m].view(np.uint32), ref32[~m].view(np.uint32))
    assert np.isfinite(out).all() and (out >= 0).all()
    Iint = pattern(shape, 6).astype(np.int32)  # integer counts, 0/1 int mask
    out2 = inpaint(Iint, m.astype(np.uint8), tiny(perturb=True), progress=False)
    assert np.array_equal(out2[~m], Iint[~m].astype(np.float32))


def test_batch_size_does_not_change_result():
    shape = (32, 48, 50)
    I = pattern(shape, 8)
    m = add_dead(np.random.default_rng(8), cross(5, 10, 30).mask(shape), n_iso=3, n_lines=1, cluster=False)
    model = tiny(perturb=True)
    a, ia = inpaint(I, m, model, batch_size=1, progress=False, return_info=True)
    b, ib = inpaint(I, m, model, batch_size=5, progress=False, return_info=True)
    c = inpaint(I, m, model, batch_size=1000, progress=False)
    assert ia["n_batches"] == ia["n_patches"] and ib["n_batches"] == -(-ib["n_patches"] // 5)
    # equal up to the float32 rounding of the convolutions (their channels-last kernels depend on
    # the batch size; 5e-5 in log(I+1) was seen)
    assert np.array_equal(a[~m], b[~m]) and np.array_equal(a[~m], c[~m])
    assert_log_close(a, b, m, tol=2e-4)
    assert_log_close(a, c, m, tol=2e-4)
    # the perturbed model changes the fill (so the test above is not trivial)
    assert np.abs(np.log1p(a[m]) - np.log1p(fill_loglinear(I, m)[m])).max() > 1e-3


def test_info_and_model_state_restored():
    shape = (32, 40, 40)
    m = plane(-2, 6, 17).mask(shape)
    model = tiny()
    model.train()
    out, info = inpaint(pattern(shape), m, model, progress=False, return_info=True, overlap=8)
    assert model.training  # mode restored
    for k in ("n_patches", "n_batches", "seconds", "layout", "widths", "patch_kinds", "plan", "device"):
        assert k in info
    assert info["widths"] == [6] and info["overlap"] == 8 and "6px@y=17" in info["layout"]
    # nothing masked: a copy, no patch
    out, info = inpaint(pattern(shape), np.zeros(shape, bool), model, progress=False, return_info=True)
    assert info["n_patches"] == 0 and np.array_equal(out, pattern(shape))


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------
def test_errors():
    shape = (32, 48, 48)
    I = pattern(shape)
    model = tiny()
    with pytest.raises(PatternError, match=r"13px@y=10.*12 px.*fill --method loglinear"):
        inpaint(I, plane(-2, 13, 10).mask(shape), model, progress=False)
    out = inpaint(I, plane(-2, 13, 10).mask(shape), model, max_width=14, progress=False)  # override
    assert np.isfinite(out).all()
    with pytest.raises(PatternError, match="wider"):
        inpaint(I, plane(-1, 31, 10).mask(shape), model, max_width=40, progress=False)  # never > patch - 2
    with pytest.raises(PatternError, match="smaller than the model's patch"):
        inpaint(pattern((31, 48, 48)), plane(-2, 6, 10).mask((31, 48, 48)), model, progress=False)
    bad = I.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(PatternError, match="NaN"):
        inpaint(bad, plane(-2, 6, 10).mask(shape), model, progress=False)
    bad[0, 0, 0] = -3
    with pytest.raises(PatternError, match="negative"):
        inpaint(bad, plane(-2, 6, 10).mask(shape), model, progress=False)
    with pytest.raises(PatternError, match="shape"):
        inpaint(I, np.zeros((32, 48, 47), bool), model, progress=False)
    with pytest.raises(PatternError, match="2-D"):
        inpaint(I[0], plane(-2, 6, 10).mask(shape[1:]), model, progress=False)
    blob = plane(-2, 6, 10).mask(shape)
    blob[:, 12:48, 0:40] = True  # a masked block (not a gap plane) larger than a patch
    with pytest.raises(PatternError, match="whole"):
        inpaint(I, blob, model, progress=False, dead="dl")
    lay, rest = GapLayout.from_mask(blob)  # default: the block is not a gap plane, it is filled log-linear
    with pytest.warns(infer.PartialGapWarning, match="log-linear"):  # and the user is told
        assert_log_close(inpaint(I, blob, model, progress=False), fill_loglinear(I, blob), rest)
    with pytest.raises(ValueError, match="dead"):
        inpaint(I, blob, model, progress=False, dead="zero")
    with pytest.raises(ValueError, match="either"):
        inpaint(I, plane(-2, 6, 10).mask(shape), model, weights="x.safetensors", progress=False)


def test_missing_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(infer, "DEFAULT_WEIGHTS", tmp_path / "weights" / "inpaint3d.safetensors")
    with pytest.raises(WeightsError, match=r"shipped.*missing.*pynx-dlgap train --out runs/x --export"):
        load_inpaint_model()
    with pytest.raises(WeightsError, match="shipped"):
        inpaint(pattern((32, 40, 40)), plane(-2, 6, 10).mask((32, 40, 40)), progress=False)
    with pytest.raises(WeightsError, match="not found"):
        load_inpaint_model(tmp_path / "nope.safetensors")


def test_weights_round_trip(tmp_path):
    model = tiny(perturb=True, seed=3)
    path = tmp_path / "w" / "tiny.safetensors"
    save_weights(model, path, {"task": "inpaint", "gap_widths_supported": [1, 8],
                               "input": {"patch": [32, 32, 32]}})
    loaded, card = load_inpaint_model(path)
    assert card["gap_widths_supported"] == [1, 8] and loaded.card is card
    shape = (32, 44, 40)
    I = pattern(shape, 2)
    m = cross(6, 12, 20).mask(shape)
    a = inpaint(I, m, model, progress=False)
    b = inpaint(I, m, weights=path, progress=False)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    with pytest.raises(PatternError, match=r"supports.*\[1, 8\]"):  # the card's widths are enforced
        inpaint(I, plane(-2, 10, 12).mask(shape), weights=path, progress=False)
    save_weights(build_model("phase2d_small", channels=[4, 4, 4, 4, 4]), tmp_path / "phase.safetensors",
                 {"task": "phase"})
    with pytest.raises(WeightsError, match="not a gap-inpainting model"):
        load_inpaint_model(tmp_path / "phase.safetensors")


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------
def _cli(argv):
    p = argparse.ArgumentParser(prog="pynx-dlgap")
    sub = p.add_subparsers(dest="command", required=True)
    add_cli(sub)
    a = p.parse_args(argv)
    return a.func(a)


def cli_inputs(tmp_path, seed):
    """``(I, m, w)``: a pattern with a 6-px cross written to ``data.npz`` / ``mask.npz`` in
    ``tmp_path`` and a perturbed tiny model written to ``tiny.safetensors`` (path ``w``)."""
    shape = (32, 40, 44)
    I = pattern(shape, seed)
    m = cross(6, 15, 20).mask(shape)
    np.savez(tmp_path / "data.npz", data=I)
    np.savez(tmp_path / "mask.npz", mask=m)
    w = tmp_path / "tiny.safetensors"
    save_weights(tiny(perturb=True), w, {"task": "inpaint", "gap_widths_supported": [1, 12]})
    return I, m, w


def test_cli(tmp_path, capsys):
    I, m, w = cli_inputs(tmp_path, 4)
    out = tmp_path / "out.npz"
    rc = _cli(["inpaint", str(tmp_path / "data.npz"), "--mask", str(tmp_path / "mask.npz"), "-o", str(out),
               "--weights", str(w), "--png", str(tmp_path / "ba.png"), "--overlap", "8", "--batch-size", "4",
               "--quiet", "--no-check"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "patches" in text and " s " in text
    with np.load(out) as z:
        filled = z["data"]
    assert np.array_equal(filled[~m], I[~m])
    np.testing.assert_allclose(filled, inpaint(I, m, weights=w, overlap=8, batch_size=4, progress=False), rtol=1e-6)
    assert (tmp_path / "ba.png").stat().st_size > 1000
    with pytest.raises(FileExistsError):  # no silent overwrite
        _cli(["inpaint", str(tmp_path / "data.npz"), "--mask", str(tmp_path / "mask.npz"), "-o", str(out),
              "--weights", str(w), "--quiet"])
    with pytest.raises(PatternError, match="input"):  # never the input file
        _cli(["inpaint", str(tmp_path / "data.npz"), "--mask", str(tmp_path / "mask.npz"),
              "-o", str(tmp_path / "data.npz"), "--weights", str(w), "--quiet", "--overwrite"])
    rc = _cli(["inpaint", str(tmp_path / "data.npz"), "--mask", str(tmp_path / "mask.npz"),
               "-o", str(tmp_path / "o2.npz"), "--weights", str(tmp_path / "missing.safetensors"), "--quiet"])
    assert rc == 2 and "not found" in capsys.readouterr().err


def test_cli_check_rule(tmp_path, capsys):
    import json
    import h5py
    from pynx_dlgap.inpaint.selfcheck import self_check
    I, m, w = cli_inputs(tmp_path, int(np.random.default_rng().integers(1000)))
    out = tmp_path / "out.h5"
    rc = _cli(["inpaint", str(tmp_path / "data.npz"), "--mask", str(tmp_path / "mask.npz"), "-o", str(out),
               "--weights", str(w), "--quiet", "--check-rule", "acf"])
    assert rc == 0 and "self-check (rule 'acf')" in capsys.readouterr().out
    with h5py.File(out, "r") as f:
        sc, filled = json.loads(f.attrs["self_check"]), f["data"][()]
    model, _ = load_inpaint_model(w)
    ref = self_check(I, m, model, rule="acf")
    assert sc["rule"] == "acf" and sc["choice"] == ref.choice
    np.testing.assert_allclose(sc["acf_outside"], ref.acf, rtol=1e-6)
    np.testing.assert_array_equal(filled, inpaint(I, m, model, progress=False) if ref.choice == "dl"
                                  else fill_loglinear(I, m))
    with pytest.raises(SystemExit):  # argparse: not a rule
        _cli(["inpaint", str(tmp_path / "data.npz"), "--mask", str(tmp_path / "mask.npz"), "-o",
              str(tmp_path / "o2.npz"), "--weights", str(w), "--check-rule", "bogus"])
    assert not (tmp_path / "o2.npz").exists()


def test_to_counts_is_bounded_by_the_brightest_measured_voxel_of_each_patch():
    """Reference: float64 numpy min-max of log(I+1) over the measured voxels, the model output
    capped at the patch's measured maximum, inverted."""
    from pynx_dlgap.inpaint.patches import prepare_batch, to_counts
    rng = np.random.default_rng()
    I = rng.poisson(rng.uniform(0.5, 3e4, (4, 1, 1, 1)) * rng.uniform(0, 1, (4, 12, 16, 16))).astype(np.float32)
    m = np.zeros(I.shape, bool)
    m[:, :, 5:9] = True
    I[3][~m[3]] = 7.0  # a constant patch: its fill is that constant at most
    _, stats = prepare_batch(I, m)
    y = rng.normal(0.5, 1.0, (4, 1) + I.shape[1:]).astype(np.float32)
    got = to_counts(torch.from_numpy(y), stats).numpy()
    for b in range(4):
        L = np.log1p(I[b][~m[b]].astype(np.float64))
        lo, hi = L.min(), L.max()
        span = hi - lo if hi > lo else 1.0
        ref = np.expm1(np.maximum(np.minimum(y[b, 0].astype(np.float64), (hi - lo) / span) * span + lo, 0))
        np.testing.assert_allclose(got[b], ref, rtol=2e-5, atol=1e-3)
        assert got[b].max() <= I[b][~m[b]].max() * (1 + 1e-5)


def test_partial_gap_planes_warn_once_and_full_planes_do_not():
    """A gap masked over only part of its plane (here: a pattern padded with unmasked zeros) is not a
    gap plane for the model; the user is told, once (not again for the self-check's copies), which
    planes, and the fill there is log-linear. Full planes and isolated dead pixels do not warn."""
    import warnings
    rng = np.random.default_rng()
    n = int(rng.integers(34, 40))
    I = pattern((n, n, n), seed=int(rng.integers(1 << 30)))
    y0, x0 = int(rng.integers(10, n - 16)), int(rng.integers(10, n - 16))
    m = cross(4, y0, x0).mask(I.shape)
    m[rng.random(m.shape) < 1e-3] = True  # isolated dead pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error", infer.PartialGapWarning)
        inpaint(I, m, tiny(), progress=False, check=True)
    pad = int(rng.integers(12, 20))  # padding that the gap planes' mask does not cover: 35-60 % of a plane
    Ip = np.pad(I, ((0, 0), (0, 0), (pad, pad)))
    mp = np.pad(m, ((0, 0), (0, 0), (pad, pad)))
    model = tiny(perturb=True)
    with pytest.warns(infer.PartialGapWarning) as rec:
        inpaint(Ip, mp, model, progress=False, check=True)
    rec = [r for r in rec if issubclass(r.category, infer.PartialGapWarning)]
    assert len(rec) == 1
    assert "4 plane(s) normal to y" in str(rec[0].message) and "normal to x" not in str(rec[0].message)
    lay, rest = GapLayout.from_mask(mp)  # the x plane spans the unpadded y and z: still a gap
    assert [(g.axis, g.start, g.width) for g in lay] == [(-1, x0 + pad, 4)]
    with pytest.warns(infer.PartialGapWarning):
        out = inpaint(Ip, mp, model, progress=False, check=False)
    ll = fill_loglinear(Ip, mp)
    assert_log_close(out, ll, rest)  # the partial plane: log-linear, as the warning says
    assert not np.allclose(np.log1p(out[mp & ~rest]), np.log1p(ll[mp & ~rest]), atol=1e-3)  # the x gap: model


@pytest.mark.parametrize("flag", [-1.0, np.nan, 4294967295.0])
def test_detector_flags_inside_the_mask_change_nothing(flag):
    """-1 / NaN / 2^32-1 under the mask: the DL fill (self-check included) is the one with zeros there,
    bit for bit, and no floating-point warning is raised."""
    import warnings
    rng = np.random.default_rng()
    n = int(rng.integers(34, 42))
    I = pattern((n, n, n), seed=int(rng.integers(1 << 30)))
    m = cross(int(rng.integers(2, 7)), int(rng.integers(8, n - 14)), int(rng.integers(8, n - 14))).mask(I.shape)
    model = tiny(perturb=True)
    ref = inpaint(np.where(m, 0, I), m, model, progress=False, check=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = inpaint(np.where(m, flag, I), m, model, progress=False, check=True)
    assert np.array_equal(out, ref)
