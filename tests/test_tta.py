"""Test-time symmetric ensemble (pynx_dlgap.inpaint.tta, inpaint(tta=), DLInpaint(tta=), CLI --tta).

References: the group property (an average over the whole group of flips x detector-axes
transposition is exactly equivariant: f(g x) = g f(x)), checked with numpy flips on
freshly drawn inputs; the ensemble of views against an independent numpy average of the
model run on each transformed input; and the whole-pattern symmetry it gives ``inpaint``
(flipping the pattern flips the fill) with the shipped model.
"""
import numpy as np
import pytest
import torch

from pynx_dlgap.inpaint.infer import inpaint, load_inpaint_model
from pynx_dlgap.inpaint.tta import SymmetricEnsemble, n_symmetries, symmetry_views, with_views
from pynx_dlgap.simulate.gaps import cross

from test_infer import _cli, cli_inputs, pattern, tiny  # noqa: E402


def _np_apply(a, flips, t):
    """g x on a numpy (B, C, *spatial) array: flip the spatial axes, then swap the last two."""
    for ax in flips:
        a = np.flip(a, 2 + ax)
    return np.swapaxes(a, -1, -2) if t else a


def _np_invert(a, flips, t):
    if t:
        a = np.swapaxes(a, -1, -2)
    for ax in flips:
        a = np.flip(a, 2 + ax)
    return a


@pytest.mark.parametrize("dims", [2, 3])
def test_views_are_the_whole_group_without_repeats(dims):
    n = n_symmetries(dims)
    views = symmetry_views(dims, n)
    assert len(set(views)) == n == 2 ** dims * 2
    assert views[0] == ((), False)
    assert views[1] == (tuple(range(dims)), True)  # the most different view comes second
    for k in (0, n + 1):
        with pytest.raises(ValueError, match="between 1 and"):
            symmetry_views(dims, k)


def test_with_views_one_is_the_model_and_bad_values_refused():
    m = tiny()
    assert with_views(m, 1) is m
    e = with_views(m, 4)
    assert isinstance(e, SymmetricEnsemble) and e.k == 4 and e.config == m.config
    with pytest.raises(ValueError, match=">= 1"):
        with_views(m, 0)
    with pytest.raises(ValueError, match="between 1 and 16"):
        with_views(m, 17)
    with pytest.raises(ValueError, match="already"):
        SymmetricEnsemble(e, 2)
    plain = torch.nn.Conv3d(3, 1, 3, padding=1)  # a model without a card/config: 3-D assumed
    x = torch.randn(1, 3, 6, 8, 8)
    with torch.no_grad():
        y = with_views(plain, 2)(x)
        ref = (plain(x) + plain(x.flip([2, 3, 4]).transpose(-1, -2)).transpose(-1, -2).flip([2, 3, 4])) / 2
    torch.testing.assert_close(y, ref)


@pytest.mark.parametrize("k", [2, 5])
def test_ensemble_is_the_numpy_mean_of_the_views(k):
    rng = np.random.default_rng()
    m = tiny(perturb=True, seed=int(rng.integers(1000))).double()
    x = rng.normal(size=(2, 3, 8, 12, 12))
    ens = SymmetricEnsemble(m, k)
    got = ens(torch.from_numpy(x)).detach().numpy()
    ref = np.zeros_like(got)
    with torch.no_grad():
        for flips, t in symmetry_views(3, k):
            y = m(torch.from_numpy(np.ascontiguousarray(_np_apply(x, flips, t)))).numpy()
            ref += _np_invert(y, flips, t)
    ref /= k
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    assert np.abs(got - m(torch.from_numpy(x)).detach().numpy()).max() > 1e-3  # the views differ
    # the first views handed in (as the bright patches do)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        for n in range(1, k):
            first = m(xt) if n == 1 else SymmetricEnsemble(m, n)(xt)
            np.testing.assert_allclose(ens(xt, first=first, n_first=n).numpy(), ref, rtol=1e-5, atol=1e-6)
        with pytest.raises(ValueError, match="n_first"):
            ens(xt, first=first, n_first=k + 1)
        with pytest.raises(ValueError, match="not an output"):
            ens(xt, first=first[:1])


@pytest.mark.parametrize("dims", [2, 3])
def test_full_ensemble_is_equivariant(dims):
    rng = np.random.default_rng()
    m = tiny(dims=dims, perturb=True, seed=int(rng.integers(1000))).double()
    shape = (2, 3) + ((8,) if dims == 3 else ()) + (12, 12)
    x = rng.normal(size=shape)
    ens = SymmetricEnsemble(m, n_symmetries(dims))
    with torch.no_grad():
        fx = ens(torch.from_numpy(x)).numpy()
        for flips, t in symmetry_views(dims, n_symmetries(dims))[1:]:
            fgx = ens(torch.from_numpy(np.ascontiguousarray(_np_apply(x, flips, t)))).numpy()
            np.testing.assert_allclose(fgx, _np_apply(fx, flips, t), rtol=1e-5, atol=1e-6)
        # the model alone is not: the test can fail
        y, yg = m(torch.from_numpy(x)).numpy(), m(torch.from_numpy(np.ascontiguousarray(_np_apply(x, (0,), False))))
        assert np.abs(yg.numpy() - _np_apply(y, (0,), False)).max() > 1e-3


def test_inpaint_tta_full_group_commutes_with_flipping_the_pattern():
    """With all 16 views the shipped model's whole-pattern fill of a flipped pattern is the
    flipped fill (the plan is flip-symmetric for an even-width gap); with one view it is not."""
    model, _ = load_inpaint_model()
    shape = (32, 40, 40)
    seed = int(np.random.default_rng().integers(1 << 30))
    I = pattern(shape, seed)
    m = cross(6, 14, 20).mask(shape)
    axes = (0, 1, 2)
    fl = lambda a: np.flip(a, axes).copy()  # noqa: E731
    for k, same in ((16, True), (1, False)):
        a = inpaint(I, m, model, progress=False, tta=k, batch_size=8)
        b = inpaint(fl(I), fl(m), model, progress=False, tta=k, batch_size=8)
        la, lb = np.log1p(a[m]), np.log1p(fl(b)[m])
        if same:
            np.testing.assert_allclose(lb, la, atol=2e-4)
        else:
            assert np.abs(lb - la).max() > 1e-3
    info = inpaint(I, m, model, progress=False, tta=2, return_info=True)[1]
    assert info["tta"] == 2 and info["method"] == "dl"
    with pytest.raises(ValueError, match="between 1 and 16"):
        inpaint(I, m, model, progress=False, tta=20)


def operator_fill(**kw):
    """``(I, m, model, cdi, DLInpaint)``: a fresh pattern with a 4-px cross, a perturbed tiny
    model, and the PyNX CPU-family CDI after ``DLInpaint(model=model, family='cpu', **kw)``."""
    pytest.importorskip("pynx.cdi.cpu_operator", reason="real PyNX is needed (make setup)")
    from pynx_dlgap.evaluate.phasing import import_pynx_cdi
    from pynx_dlgap.operators import DLInpaint
    pc = import_pynx_cdi("cpu")
    shape = (32, 40, 40)
    I = pattern(shape, int(np.random.default_rng().integers(1 << 30)))
    m = cross(4, 12, 22).mask(shape)
    model = tiny(perturb=True)
    cdi = pc.CDI(np.fft.fftshift(I).copy(), mask=np.fft.fftshift(m).astype(np.int8))
    return I, m, model, DLInpaint(model=model, family="cpu", **kw) * cdi, DLInpaint


@pytest.mark.pynx
def test_dlinpaint_operator_tta_matches_inpaint():
    I, m, model, cdi, DLInpaint = operator_fill(tta=3)
    assert cdi.dl_inpaint_info["tta"] == 3
    got = cdi.get_iobs(shift=True)[m]
    ref = inpaint(np.where(m, 0, I), m, model, progress=False, tta=3)[m]
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    with pytest.raises(ValueError, match="between 1 and 16"):
        DLInpaint(model=model, family="cpu", tta=17)


def test_cli_tta(tmp_path, capsys):
    I, m, w = cli_inputs(tmp_path, 3)
    out = tmp_path / "out.npz"
    args = ["inpaint", str(tmp_path / "data.npz"), "--mask", str(tmp_path / "mask.npz"), "--weights", str(w),
            "--quiet", "--no-check"]
    assert _cli(args + ["-o", str(out), "--tta", "4"]) == 0
    with np.load(out) as z:
        np.testing.assert_allclose(z["data"], inpaint(I, m, weights=w, progress=False, tta=4), rtol=1e-6)
    assert _cli(args + ["-o", str(tmp_path / "bad.npz"), "--tta", "40"]) == 2
    assert "between 1 and 16" in capsys.readouterr().err
    assert not (tmp_path / "bad.npz").exists()


def _split_level(values):
    """A level between two of the sorted ``values`` (near the middle, with the widest ratio), so
    that no value is close to it."""
    v = np.sort(np.asarray(values, float))
    gaps = [i for i in range(len(v) - 1) if v[i + 1] > 1.01 * v[i]]
    assert gaps, v
    k = max(gaps, key=lambda i: min(i + 1, len(v) - 1 - i))
    return float(np.sqrt(max(v[k], 1e-12) * v[k + 1]))


def test_tta_bright_uses_the_ensemble_on_the_bright_patches_only():
    """Reference: the bright patches found independently (numpy log-linear fill of each patch of
    the plan, its maximum over the masked voxels against bright x the brightest measured voxel);
    voxels predicted only by non-bright patches equal the plain fill, voxels predicted only by
    bright ones equal the fill of the tta_bright-view ensemble."""
    from pynx_dlgap.inpaint.baselines import fill_loglinear
    from pynx_dlgap.inpaint.infer import _checked_plan
    model = tiny(perturb=True)
    shape = (40, 64, 64)
    I = pattern(shape, int(np.random.default_rng().integers(1 << 30)))
    m = cross(6, 14, 37).mask(shape)
    _, plan, *_ = _checked_plan(I, m, model, None, None, None, 32)
    top = [float(fill_loglinear(I[plan.slices(i)], m[plan.slices(i)])[m[plan.slices(i)]].max())
           for i in range(len(plan))]
    level = _split_level(top)
    frac = level / float(I[~m].max())
    got, info = inpaint(I, m, model, progress=False, tta_bright=4, bright=frac, return_info=True)
    hot = [t >= level for t in top]
    assert info["n_bright"] == sum(hot) and 0 < sum(hot) < len(plan) and info["tta_bright"] == 4
    one = inpaint(I, m, model, progress=False)
    four = inpaint(I, m, model, progress=False, tta=4)
    by_hot, by_cold = np.zeros(shape, bool), np.zeros(shape, bool)
    for i in range(len(plan)):
        sl = plan.slices(i)
        (by_hot if hot[i] else by_cold)[sl] |= plan.trusted(i) & m[sl]
    only_cold, only_hot = m & by_cold & ~by_hot, m & by_hot & ~by_cold
    assert only_cold.any() and only_hot.any()
    np.testing.assert_allclose(got[only_cold], one[only_cold], rtol=1e-5)
    np.testing.assert_allclose(got[only_hot], four[only_hot], rtol=1e-5)
    assert not np.allclose(got[only_hot], one[only_hot], rtol=1e-3)
    assert np.array_equal(got[~m], I[~m])
    # an ensemble everywhere and a bigger one on the bright patches (which reuses the first views)
    got2 = inpaint(I, m, model, progress=False, tta=2, tta_bright=4, bright=frac)
    np.testing.assert_allclose(got2[only_cold], inpaint(I, m, model, progress=False, tta=2)[only_cold], rtol=1e-5)
    np.testing.assert_allclose(got2[only_hot], four[only_hot], rtol=1e-5)
    for kw, msg in ((dict(tta_bright=0), "tta_bright"), (dict(tta_bright=17), "tta_bright"),
                    (dict(tta_bright=4, bright=0.0), "bright"), (dict(tta_bright=4, bright=1.5), "bright")):
        with pytest.raises(ValueError, match=msg):
            inpaint(I, m, model, progress=False, **kw)


@pytest.mark.pynx
def test_dlinpaint_operator_tta_bright_matches_inpaint(tmp_path, capsys):
    I, m, model, cdi, DLInpaint = operator_fill(tta=2, tta_bright=4, bright=0.05)
    assert cdi.dl_inpaint_info["tta_bright"] == 4 and cdi.dl_inpaint_info["n_bright"] > 0
    ref = inpaint(np.where(m, 0, I), m, model, progress=False, tta=2, tta_bright=4, bright=0.05)[m]
    np.testing.assert_allclose(cdi.get_iobs(shift=True)[m], ref, rtol=1e-5)
    with pytest.raises(ValueError, match="bright"):
        DLInpaint(weights="/nonexistent.safetensors", family="cpu", tta_bright=4, bright=2.0)
    I2, m2, w = cli_inputs(tmp_path, 6)
    args = ["inpaint", str(tmp_path / "data.npz"), "--mask", str(tmp_path / "mask.npz"), "--weights", str(w),
            "--quiet", "--no-check"]
    assert _cli(args + ["-o", str(tmp_path / "o.npz"), "--tta-bright", "4", "--bright", "0.05"]) == 0
    with np.load(tmp_path / "o.npz") as z:
        np.testing.assert_allclose(z["data"], inpaint(I2, m2, weights=w, progress=False, tta_bright=4, bright=0.05),
                                   rtol=1e-6)
    assert _cli(args + ["-o", str(tmp_path / "bad.npz"), "--tta-bright", "40"]) == 2
    assert "tta_bright" in capsys.readouterr().err and not (tmp_path / "bad.npz").exists()
