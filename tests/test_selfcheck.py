"""The self-check (DL vs log-linear on held-back shifted copies of the gap) and fine-tuning
on the measured pattern. References: masks built independently from the gap geometry, an
analytic amplitude error, and fills/scores recomputed here in float64 numpy."""
import json

import numpy as np
import pytest

from pynx_dlgap.inpaint import fill_loglinear
from pynx_dlgap.inpaint.infer import inpaint, load_inpaint_model
from pynx_dlgap.inpaint.selfcheck import (acf_outside, heldout_copies, heldout_masks, mirror_copies, pattern_peak,
                                          score_fill, self_check)
from pynx_dlgap.models import save_weights
from pynx_dlgap.simulate.gaps import GapLayout, cross, plane
from pynx_dlgap.training.finetune import finetune, finetune_patches

from test_infer import pattern, tiny  # noqa: E402


def test_heldout_masks_are_shifted_copies_of_the_gap():
    rng = np.random.default_rng()
    shape = (32, 64, 60)
    w, wx = int(rng.integers(2, 9)), int(rng.integers(2, 9))
    py, px = int(rng.integers(22, 30)), int(rng.integers(22, 28))
    m = cross(w, py, px, width_x=wx).mask(shape)
    sep = int(rng.integers(2, 5))
    masks = heldout_masks(m, sep=sep)
    assert [n[:7] for n, _ in masks] == ["shift +", "shift -"]
    for (name, art), s in zip(masks, (1, -1)):
        expect = (plane(-2, w, py + s * (w + sep)).mask(shape) | plane(-1, wx, px + s * (wx + sep)).mask(shape)) & ~m
        assert np.array_equal(art, expect), name
        assert not np.any(art & m)
    # only isolated dead pixels: shifted by 8
    d = np.zeros(shape, bool)
    d[10, 20, 30] = d[5, 40, 12] = True
    (_, a), (_, b) = heldout_masks(d, min_voxels=1)
    assert a[10, 28, 30] and a[10, 20, 38] and b[10, 12, 30] and b[5, 40, 4]
    assert heldout_masks(np.zeros(shape, bool)) == []
    # reps=2 adds the copies at twice the shift, disjoint from the real gap and the nearer copies
    w2 = int(rng.integers(2, 7))  # copies at 2 x (w2 + sep) <= 20 px stay inside the 64-px axis
    m2 = plane(-2, w2, py).mask(shape)
    two = heldout_masks(m2, sep=sep, reps=2)
    assert [n.split()[1] for n, _ in two] == ["+", "-", "+2", "-2"]
    for (name, art), s in zip(two[2:], (2, -2)):
        near = two[0][1] | two[1][1]
        expect = plane(-2, w2, py + s * (w2 + sep)).mask(shape) & ~m2 & ~near
        assert np.array_equal(art, expect), name
    with pytest.raises(ValueError, match="reps"):
        heldout_masks(m, reps=0)


def test_heldout_copies_are_filled_as_whole_gap_planes():
    # a cross's copies at two shifts lose their crossings with the nearer copies in the scored voxels;
    # the mask they are filled with must still hold whole planes, or the inpainting reads them as dead
    # pixels and fills them by log-linear interpolation (the DL fill of those copies was log-linear)
    rng = np.random.default_rng()
    shape = (16, 64, 64)
    w = int(rng.integers(4, 7))  # from 4 px the crossings cut more than 10 % of a far copy's plane
    py, px = int(rng.integers(26, 32)), int(rng.integers(26, 32))
    m = cross(w, py, px).mask(shape)
    copies = heldout_copies(m, reps=2)
    assert [c.name for c in copies] == [n for n, _ in heldout_masks(m, reps=2)]
    for c, (k, s) in zip(copies, ((1, 1), (1, -1), (2, 1), (2, -1))):
        d = s * k * (w + 3)
        expect = m | plane(-2, w, py + d).mask(shape) | plane(-1, w, px + d).mask(shape)
        assert np.array_equal(c.fill_mask, expect), c.name
        assert not np.any(c.voxels & ~c.fill_mask) and not np.any(c.voxels & m)
        layout, rest = GapLayout.from_mask(c.fill_mask)
        assert not rest.any() and len(layout.gaps) == 4, (c.name, layout)
    # the scored voxels of the far copies exclude the near ones: alone, they are no longer gap planes
    assert GapLayout.from_mask(m | copies[2].voxels)[1].any()


def _reflect_loop(m, ax, p):
    """Written-out reference: out[i] = m[2p - i] along ``ax`` (False off the array)."""
    out = np.zeros_like(m)
    mv, ov = np.moveaxis(m, ax, 0), np.moveaxis(out, ax, 0)
    for i in range(m.shape[ax]):
        j = 2 * p - i
        if 0 <= j < m.shape[ax]:
            ov[i] = mv[j]
    return out


def test_mirror_copies_are_the_gap_reflected_through_the_peak():
    rng = np.random.default_rng()
    shape = (24, 48, 40)
    py, px = int(rng.integers(20, 28)), int(rng.integers(17, 23))
    iobs = rng.poisson(5.0, shape).astype(np.float32)
    iobs[12, py, px] = 1e6  # the peak
    wy, wx = int(rng.integers(2, 7)), int(rng.integers(2, 7))
    y0, x0 = py - 4 - wy - int(rng.integers(0, 6)), px + 3 + int(rng.integers(0, 5))
    m = cross(wy, y0, x0, width_x=wx).mask(shape)
    m[3, 2, 2] = True  # an isolated dead pixel is reflected too (its row is never the one counted below)
    before_i, before_m = iobs.copy(), m.copy()
    assert pattern_peak(iobs, m) == (12, py, px)
    copies = mirror_copies(iobs, m)
    assert [c.name for c in copies] == [f"mirror (y {py})", f"mirror (x {px})"]
    ref_y = _reflect_loop(m, 1, py) & ~m
    ref_x = _reflect_loop(m, 2, px) & ~m & ~ref_y
    np.testing.assert_array_equal(copies[0].voxels, ref_y)
    np.testing.assert_array_equal(copies[1].voxels, ref_x)
    # the scored voxels of the y image: its whole planes, minus the real x plane crossing them
    yimg = np.zeros(shape, bool)
    yimg[:, 2 * py - (y0 + wy - 1):2 * py - y0 + 1] = True
    np.testing.assert_array_equal(copies[0].fill_mask, m | yimg)
    assert copies[0].voxels[:, 2 * py - y0, :].sum() == shape[0] * (shape[2] - wx)
    np.testing.assert_array_equal(iobs, before_i)
    np.testing.assert_array_equal(m, before_m)
    # a gap through the peak has no image apart from it: no copy; the peak is a measured voxel
    m2 = plane(-1, 6, px - 2).mask(shape)
    assert mirror_copies(iobs, m2, peak=(12, py, px)) == []
    assert not m2[pattern_peak(iobs, m2)] and pattern_peak(iobs, m2) != (12, py, px)
    assert [c.name for c in mirror_copies(iobs, m2, peak=(12, py, px + 8))] == [f"mirror (x {px + 8})"]


def test_self_check_rejects_a_bad_margin():
    I = pattern((32, 48, 48), 1)
    with pytest.raises(ValueError, match="margin"):
        self_check(I, cross(4, 20, 20).mask(I.shape), tiny(), margin=1.5)
    with pytest.raises(ValueError, match="rule"):
        self_check(I, cross(4, 20, 20).mask(I.shape), tiny(), rule="majority")
    with pytest.raises(ValueError, match="acf_threshold"):
        self_check(I, cross(4, 20, 20).mask(I.shape), tiny(), acf_threshold=0.0)


def test_score_fill_analytic():
    rng = np.random.default_rng()
    t = rng.uniform(1, 1e4, 500)
    s = score_fill(t, 4 * t)  # sqrt(4t) - sqrt(t) = sqrt(t): amplitude error exactly 1
    assert s["amp"] == pytest.approx(1.0, rel=1e-12)
    assert s["pcc_log"] > 0.99
    assert score_fill(t, t)["amp"] == 0.0 and score_fill(t, t)["mae_log"] == 0.0


def _acf_outside_reference(fills, threshold, dilate):
    """acf_outside written out: the inverse DFT as explicit float64 sums of complex exponentials, the
    dilation as a loop over face neighbours on a padded array (no numpy FFT, no scipy)."""
    shape = np.shape(fills[0])
    acfs = []
    for f in fills:
        c = np.fft.ifftshift(np.asarray(f, np.float64))  # the origin of reciprocal space at index 0
        for ax, n in enumerate(shape):  # separable inverse DFT, one axis at a time
            k = np.arange(n)
            w = np.exp(2j * np.pi * np.outer(k, k) / n) / n
            c = np.moveaxis(np.tensordot(w, np.moveaxis(c, ax, 0), axes=(1, 0)), 0, ax)
        acfs.append(np.roll(np.abs(c), [n // 2 for n in shape], axis=tuple(range(len(shape)))))
    low = np.min(acfs, axis=0)
    sup = low > threshold * low.max()
    for _ in range(dilate):
        pad = np.pad(sup, 1)
        grown = sup.copy()
        for ax in range(sup.ndim):
            for d in (-1, 1):
                sl = [slice(1, -1)] * sup.ndim
                sl[ax] = slice(1 + d, pad.shape[ax] - 1 + d)
                grown |= pad[tuple(sl)]
        sup = grown
    return [float(np.sum(a[~sup] ** 2)) for a in acfs]


@pytest.mark.parametrize("shape", [(11, 14), (9, 10, 8)])
def test_acf_outside_matches_a_written_out_reference(shape):
    rng = np.random.default_rng()
    fills = [rng.gamma(0.5, 100.0, shape) for _ in range(2)]
    fills[1][:3] *= rng.uniform(0.5, 2.0)  # the fills differ, so the minimum of their ACFs matters
    before = [f.copy() for f in fills]
    thr, dil = float(rng.uniform(0.01, 0.3)), int(rng.integers(0, 3))
    got = acf_outside(fills, threshold=thr, dilate=dil)
    ref = _acf_outside_reference(fills, thr, dil)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12 * max(ref))
    assert all(np.array_equal(a, b) for a, b in zip(fills, before))


def test_acf_outside_prefers_the_true_intensity_of_a_compact_crystal():
    """Analytic case: a box crystal's autocorrelation vanishes beyond twice its size, so the exact
    intensity has (to rounding) no ACF energy outside the support; an error on a gap slab adds some."""
    rng = np.random.default_rng()
    n, L = 48, int(rng.integers(5, 9))
    rho = np.zeros((n,) * 3, dtype=complex)
    o = rng.integers(4, n - L - 4, 3)
    rho[o[0]:o[0] + L, o[1]:o[1] + L, o[2]:o[2] + L] = np.exp(1j * rng.uniform(0, 0.3))
    I = np.fft.fftshift(np.abs(np.fft.fftn(rho)) ** 2)
    wrong = I.copy()
    z = n // 2 - int(rng.integers(1, 5))
    wrong[z:z + 6] *= rng.uniform(1.3, 2.0)  # a 6-plane gap filled 30-100 % too bright
    e_true, e_wrong = acf_outside([I, wrong])
    assert e_true < 1e-12 * np.sum(I ** 2) / I.size  # Parseval: the total ACF energy is sum(I^2) / N
    assert e_wrong > 1e6 * max(e_true, 1e-30)
    with pytest.raises(ValueError, match="shapes"):
        acf_outside([I, I[:-1]])
    with pytest.raises(ValueError, match="threshold"):
        acf_outside([I], threshold=1.5)


@pytest.mark.parametrize("perturb", [False, True])
def test_self_check_decision_matches_independent_scores(perturb):
    seed = int(np.random.default_rng().integers(0, 2**31))
    shape = (32, 56, 52)
    I = pattern(shape, seed)
    m = cross(5, 24, 22).mask(shape)
    model = tiny(perturb=perturb, seed=seed % 1000)
    before = (I.copy(), m.copy())
    sc = self_check(I, m, model, rule="acf")
    assert np.array_equal(I, before[0]) and np.array_equal(m, before[1])
    # recompute in float64 from the public fills
    t, fd, fl = [], [], []
    masks = heldout_copies(m, reps=2)
    assert len(masks) == 4 and sc.masks == [c.name for c in masks]
    for _, art, fm in masks:
        t.append(I[art].astype(np.float64)); fd.append(inpaint(I, fm, model, progress=False)[art])
        fl.append(fill_loglinear(I, fm)[art])
    amp_of = lambda t, f: np.sum((np.sqrt(np.float64(f)) - np.sqrt(t)) ** 2) / t.sum()  # noqa: E731
    wins = [amp_of(a, b) < amp_of(a, c) for a, b, c in zip(t, fd, fl)]
    ratios = [amp_of(a, b) / amp_of(a, c) for a, b, c in zip(t, fd, fl)]
    t, fd, fl = (np.concatenate(x).astype(np.float64) for x in (t, fd, fl))
    amp = {k: amp_of(t, f) for k, f in (("dl", fd), ("loglinear", fl))}
    assert sc.n_voxels == t.size and sc.wins == wins and sc.rule == "acf"
    np.testing.assert_allclose(sc.ratios, ratios, rtol=1e-9)
    geo = float(np.prod(ratios) ** (1 / len(ratios)))
    assert sc.geomean_ratio == pytest.approx(geo, rel=1e-9)
    # the 0.7.10 rule: the real gap filled both ways, the ACF energy outside the support (written-out DFT)
    e_dl, e_ll = _acf_outside_reference([inpaint(I, m, model, progress=False), fill_loglinear(I, m)], 3e-3, 2)
    np.testing.assert_allclose(sc.acf, (e_dl, e_ll), rtol=1e-9)
    if abs(e_dl / e_ll - 1) > 1e-9:
        assert sc.choice == ("dl" if e_dl < e_ll else "loglinear")
    sg = self_check(I, m, model, rule="geomean")  # 0.7.6-0.7.9: the geometric mean of the per-copy ratios
    assert sg.acf is None and sg.ratios == sc.ratios
    if abs(geo - 1) > 1e-9:
        assert sg.choice == ("dl" if geo < 1 else "loglinear")
    # the rule of 0.5-0.7.5: DL only if it wins on every copy
    assert self_check(I, m, model, rule="every").choice == ("dl" if all(wins) else "loglinear")
    # the pooled rule with a margin: DL only when its pooled error beats log-linear's by that fraction
    mg = float(np.random.default_rng().uniform(0, 0.3))
    assert self_check(I, m, model, rule="pooled", margin=mg).choice == \
        ("dl" if amp["dl"] < (1 - mg) * amp["loglinear"] else "loglinear")
    if not perturb:  # an untrained residual model returns the log-linear fill (to float32 rounding)
        assert amp["dl"] == pytest.approx(amp["loglinear"], rel=1e-5)


def test_finetune_patches_never_use_unknown_voxels():
    rng = np.random.default_rng()
    shape = (32, 48, 48)
    I = pattern(shape, int(rng.integers(0, 1000)))
    known = rng.random(shape) > 0.3
    marked = np.where(known, I, -7.0)  # unknown voxels carry a value no count can have
    for Ip, mi, ml in finetune_patches(marked, known, [3, 6], (32, 32, 32), rng, 6):
        assert ml.any() and np.all(Ip[ml] >= 0)  # the loss sees known voxels only ...
        assert np.all(mi[Ip < 0])  # ... every unknown voxel is masked in the input ...
        assert not np.any(ml & ~mi)  # ... and the loss voxels are hidden from the input
    # the same draw on an all-known pattern: the input mask is exactly the artificial gap
    for Ip, mi, ml in finetune_patches(I, np.ones(shape, bool), [4], (32, 32, 32), rng, 4):
        assert np.array_equal(mi, ml)


def test_finetune_improves_held_back_error_and_cli(tmp_path, capsys):
    from pynx_dlgap.cli import main
    seed = int(np.random.default_rng().integers(0, 2**31))
    shape = (32, 48, 48)
    I = pattern(shape, seed)
    m = plane(-1, 4, 22).mask(shape)
    model = tiny(perturb=True, seed=1)
    w = tmp_path / "parent.safetensors"
    save_weights(model, w, {"task": "inpaint", "gap_widths_supported": [1, 12], "input": {"patch": [32] * 3}})
    parent_bytes = w.read_bytes()
    np.savez(tmp_path / "d.npz", data=np.where(m, 0, I))
    np.savez(tmp_path / "m.npz", mask=m)
    out = tmp_path / "ft.safetensors"
    rc = main(["finetune", str(tmp_path / "d.npz"), "--mask", str(tmp_path / "m.npz"), "-o", str(out),
               "--weights", str(w), "--epochs", "3", "--patches-per-epoch", "16", "--batch", "4", "--lr", "2e-3",
               "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "model before" in text and "model after" in text
    assert w.read_bytes() == parent_bytes  # the parent weights are never touched
    card = json.loads(out.with_suffix(".json").read_text())
    ft = card["finetune"]
    assert ft["steps"] == 12 and card["parent"]["sha256"] == json.loads(w.with_suffix(".json").read_text())["sha256"]
    # a perturbed random model is far from the data: 12 steps must lower its held-back error
    assert ft["after"]["scores"]["dl"]["amp"] < ft["before"]["scores"]["dl"]["amp"], ft
    new, _ = load_inpaint_model(out)
    sc = self_check(np.where(m, 0, I), m, new)
    assert sc.scores["dl"]["amp"] == pytest.approx(ft["after"]["scores"]["dl"]["amp"], rel=1e-5)
    rc = main(["finetune", str(tmp_path / "d.npz"), "--mask", str(tmp_path / "m.npz"), "-o", str(out),
               "--weights", str(w), "--quiet"])
    assert rc == 2 and "exists" in capsys.readouterr().err  # no silent overwrite
    with pytest.raises(ValueError, match=">= 1"):
        finetune(I, m, new, epochs=0)
    from pynx_dlgap import PatternError
    wide = plane(-1, 16, 16).mask(shape)
    with pytest.raises(PatternError, match="wider than the 12 px"):  # refused before any work
        finetune(I, wide, new)


@pytest.mark.parametrize("perturb", [False, True])
def test_self_check_mirror_rule_matches_independent_scores(perturb):
    seed = int(np.random.default_rng().integers(0, 2**31))
    shape = (32, 56, 52)
    I = pattern(shape, seed)
    _, py, px = pattern_peak(I, np.zeros(shape, bool))
    m = cross(5, py - 12, px + 7).mask(shape)  # beside the peak: both planes have an image on its other side
    model = tiny(perturb=perturb, seed=seed % 1000)
    before = (I.copy(), m.copy())
    sc = self_check(I, m, model)  # the default rule since 0.7.11
    assert np.array_equal(I, before[0]) and np.array_equal(m, before[1]) and sc.rule == "mirror"
    images = mirror_copies(I, m)
    assert len(images) == 2 and sc.mirrors == [c.name for c in images]
    amp_of = lambda t, f: np.sum((np.sqrt(np.float64(f)) - np.sqrt(t)) ** 2) / t.sum()  # noqa: E731
    ratios = []
    for _, art, fm in images:
        t = I[art].astype(np.float64)
        ratios.append(amp_of(t, inpaint(I, fm, model, progress=False)[art]) / amp_of(t, fill_loglinear(I, fm)[art]))
    np.testing.assert_allclose(sc.mirror_ratios, ratios, rtol=1e-9)
    geo = float(np.sqrt(ratios[0] * ratios[1]))
    assert sc.mirror_ratio == pytest.approx(geo, rel=1e-9)
    if abs(geo - 1) > 1e-9:
        assert sc.choice == ("dl" if geo < 1 else "loglinear")
    assert sc.to_dict()["mirror_ratios"] == pytest.approx(ratios, rel=1e-9)
    out, info = inpaint(I, m, model, progress=False, check=True, return_info=True)  # inpaint's self-check
    assert info["method"] == sc.choice and info["check"]["mirror_ratios"] == pytest.approx(ratios, rel=1e-9)
    np.testing.assert_array_equal(out, inpaint(I, m, model, progress=False) if sc.choice == "dl"
                                  else fill_loglinear(I, m))
    # check= may name a rule; anything else is refused before any work
    _, info = inpaint(I, m, model, progress=False, check="geomean", return_info=True)
    sg = self_check(I, m, model, rule="geomean")
    assert info["check"]["rule"] == "geomean" and info["method"] == sg.choice
    assert info["check"]["ratios"] == pytest.approx(sg.ratios, rel=1e-9) and info["check"]["mirror_ratios"] == []
    for bad in ("bogus", 1, "MIRROR"):
        with pytest.raises(ValueError, match="self-check rule"):
            inpaint(I, m, model, progress=False, check=bad)
    # the shifted copies are still scored, and the ACF is reported; a gap through the peak has no image: the ACF decides
    assert sc.ratios == self_check(I, m, model, rule="geomean").ratios and sc.acf is not None
    m2 = cross(5, py - 2, px - 2).mask(shape)
    I2 = I.copy()
    I2[16, py + 3, px + 3] = 2 * I.max()  # the brightest measured voxel, just beside both planes
    s2, s2a = self_check(I2, m2, model, rule="mirror"), self_check(I2, m2, model, rule="acf")
    assert s2.mirrors == [] and s2.mirror_ratio is None and s2.choice == s2a.choice and s2.acf == s2a.acf
