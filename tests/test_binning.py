"""Binning a pattern for the phase model (:mod:`pynx_dlgap.phase.binning`).

References: float64 loops over the bins and over the interpolation weights, written out
here; hand-computed layouts; crystals of the independent recipe with known extent.
"""
import numpy as np
import pytest
import torch

from pynx_dlgap.models import build_model
from pynx_dlgap.phase.binning import (auto_bin, bin_layout, bin_pattern, estimate_oversampling, resolve_bin,
                                      unbin_phase)
from pynx_dlgap.phase.predict import predict_phase


def test_layout_puts_the_centre_voxel_in_the_centre_bin():
    assert bin_layout((128,), (2,)) == ((1,), (63,))  # c=64 is voxel 1 of bin [63, 64], bin 31 of 63
    assert bin_layout((64,), (3,)) == ((1,), (21,))  # c=32 is the middle of bin [31, 33], bin 10 of 21
    assert bin_layout((10, 7), (1, 1)) == ((0, 0), (10, 7))
    rng = np.random.default_rng()
    for _ in range(200):
        N, b = int(rng.integers(1, 90)), int(rng.integers(1, 6))
        if N < b:
            continue
        (o,), (nb,) = bin_layout((N,), (b,))
        assert o >= 0 and o + nb * b <= N
        assert o + (nb // 2) * b + b // 2 == N // 2  # the centre voxel, at position b//2 of the centre bin
        # no whole bin can be added on both sides while keeping the centre bin in the middle
        assert o - b < 0 or o + (nb + 1) * b > N or nb % 2 == 0


def test_bin_pattern_matches_a_float64_loop():
    rng = np.random.default_rng()
    shape = tuple(int(v) for v in rng.integers(9, 24, 3))
    bins = tuple(int(v) for v in rng.integers(1, 4, 3))
    I = rng.gamma(0.5, 50.0, shape).astype(np.float32)
    m = rng.random(shape) < 0.3
    m[:4, :4, :4] = True  # whole bins masked
    I0, m0 = I.copy(), m.copy()
    Ib, mb, offs = bin_pattern(I, m, bins)
    _, nbs = bin_layout(shape, bins)
    assert Ib.shape == nbs and mb.shape == nbs and Ib.dtype == np.float32
    per = int(np.prod(bins))
    for k in np.ndindex(*nbs):
        tot, n = 0.0, 0
        for d in np.ndindex(*bins):
            j = tuple(o + kk * b + dd for o, kk, b, dd in zip(offs, k, bins, d))
            if not m[j]:
                tot += float(I[j])
                n += 1
        assert mb[k] == (2 * n < per)
        ref = tot * per / n if n else 0.0
        assert Ib[k] == pytest.approx(ref, rel=1e-6, abs=1e-6)
    np.testing.assert_array_equal(I, I0)
    np.testing.assert_array_equal(m, m0)


def _trilinear_ref(pb, pos):
    """The angle of the float64 trilinear phasor interpolation at a position on the binned grid
    (clamped to the grid), written out over the 8 corners."""
    pos = [min(max(p, 0.0), n - 1.0) for p, n in zip(pos, pb.shape)]
    lo = [min(int(np.floor(p)), n - 2) if n > 1 else 0 for p, n in zip(pos, pb.shape)]
    acc = 0j
    for corner in np.ndindex(2, 2, 2):
        w, idx = 1.0, []
        for p, l, c, n in zip(pos, lo, corner, pb.shape):
            t = p - l
            w *= t if c else 1.0 - t
            idx.append(min(l + c, n - 1))
        acc += w * np.exp(1j * pb[tuple(idx)])
    return np.angle(acc)


def test_unbin_phase_is_the_interpolated_phasor():
    rng = np.random.default_rng()
    shape = (40, 36, 30)
    bins = (2, 3, 2)
    offs, nbs = bin_layout(shape, bins)
    pb = rng.uniform(-np.pi, np.pi) + np.cumsum(rng.normal(0, 0.6, nbs), axis=0)  # wraps freely
    pb[:, :, -2:] = np.nan  # outside the prediction box
    ph = unbin_phase(pb, bins, offs, shape)
    assert ph.shape == shape and ph.dtype == np.float32
    for _ in range(300):
        j = tuple(int(rng.integers(0, n)) for n in shape)
        pos = [(jj - o - (b - 1) / 2) / b for jj, o, b in zip(j, offs, bins)]
        near = tuple(min(max(int(np.rint(p)), 0), n - 1) for p, n in zip(pos, nbs))
        if np.isnan(pb[near]):
            assert np.isnan(ph[j])
            continue
        if pos[2] > nbs[2] - 3:  # a corner in the unknown bins: the interpolation leans on 0 there
            continue
        d = np.angle(np.exp(1j * (ph[j] - _trilinear_ref(pb, pos))))
        assert abs(d) < 1e-5
    # a written-out voxel: axis 1's bin is odd (3), so voxel 3 k + 1 of it sits on bin k's centre
    assert abs(np.angle(np.exp(1j * (ph[offs[0] + 10, offs[1] + 3 * 4 + 1, offs[2] + 7] - _trilinear_ref(
        pb, [(10 - 0.5) / 2, 4.0, (7 - 0.5) / 2]))))) < 1e-5


def test_oversampling_estimate_and_auto_bins_on_independent_crystals():
    from pynx_dlgap.evaluate.analytic import analytic_crystal
    rng = np.random.default_rng()
    for os_range, want_bin in (((14.0, 16.0), True), ((2.5, 3.5), False)):
        s = analytic_crystal(int(rng.integers(100_000)), 3, 128, np.pi, oversampling=os_range)
        ext = [s["support"].any(axis=tuple(j for j in range(3) if j != ax)).sum() for ax in range(3)]
        true_os = np.array([128 / e for e in ext])
        I0 = s["intensity"].copy()
        est = np.array(estimate_oversampling(s["intensity"], s["mask"]))
        # 0.91-2.0x on 40 such draws (2.36x seen at 2 pi): the estimate only has to place the bin factor
        assert np.all(est >= 0.8 * true_os) and np.all(est <= 2.5 * true_os), (est, true_os)
        bins, est2 = auto_bin(s["intensity"], s["mask"], (64, 64, 64))
        assert est2 == tuple(est)
        assert bins == (max(1, min(int(np.median(est) // 6), 2)),) * 3
        if want_bin:
            assert all(b == 2 for b in bins)
        else:
            assert all(b == 1 for b in bins)
        np.testing.assert_array_equal(s["intensity"], I0)
        # a detector gap (a 6-px cross beside the peak) moves the estimate by < 35 % (filled before the ACF;
        # at most 23 % on 40 draws; left empty, the gap moved it by up to 50 %)
        from pynx_dlgap.simulate.gaps import cross
        m = cross(6, 58, 70).mask((128, 128, 128))
        est_gap = np.array(estimate_oversampling(np.where(m, 0, s["intensity"]), m))
        assert np.all(np.abs(est_gap / est - 1) < 0.35), (est_gap, est)
    # never more than the box allows: a 100-px axis holds no bin of 2 for a 64 box (50 < 0.9 x 64),
    # a 126-px axis does (PyNX's runner centres 128-px data into 126: 63 of the box's 64)
    s = analytic_crystal(int(rng.integers(100_000)), 3, 100, np.pi, oversampling=(14, 16))
    assert auto_bin(s["intensity"], None, (64, 64, 64))[0] == (1, 1, 1)
    s = analytic_crystal(int(rng.integers(100_000)), 3, 128, np.pi, oversampling=(14, 16))
    sl = (slice(None), slice(1, 127), slice(0, 115))
    assert auto_bin(s["intensity"][sl], None, (64, 64, 64))[0] == (2, 2, 1)


def test_predict_phase_bins_then_unbins_and_auto_leaves_small_patterns():
    torch.manual_seed(0)
    from test_phase import TINY_PHASE3
    model = build_model(TINY_PHASE3)
    rng = np.random.default_rng()
    I = rng.poisson(3, (130, 128, 96)).astype(np.float32)
    I[65, 64, 48] = 1e5
    m = rng.random(I.shape) < 0.01
    m[65, 64, 48] = False  # the peak is measured: masked (1 draw in 100), the box centred elsewhere (CI)
    I0 = I.copy()
    ph, info = predict_phase(I, m, model=model, return_info=True, bin=(2, 2, 1))
    Ib, mb, offs = bin_pattern(I, m, (2, 2, 1))
    ref = unbin_phase(predict_phase(Ib, mb, model=model, bin=1), (2, 2, 1), offs, I.shape)
    np.testing.assert_array_equal(np.isnan(ph), np.isnan(ref))
    np.testing.assert_allclose(ph[np.isfinite(ph)], ref[np.isfinite(ref)], atol=1e-6)
    assert info["bin"] == [2, 2, 1] and info["binned_shape"] == list(Ib.shape) and info["bin_offsets"] == list(offs)
    assert np.isfinite(ph[2:-2, 2:-2, 16:80]).all() and np.isnan(ph[:, :, :10]).all()  # the box spans 64 of 96 on axis 2
    np.testing.assert_array_equal(I, I0)
    # 'auto' on a pattern under 1.8 times the box: no binning, no estimate, the unbinned prediction
    small = I[:100, :100, :96]
    ph_a, info_a = predict_phase(small, None, model=model, return_info=True)
    assert info_a["bin"] == [1, 1, 1] and info_a["oversampling_estimate"] is None
    np.testing.assert_array_equal(ph_a, predict_phase(small, None, model=model, bin=1))


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "x", (2, 2), (2, 0, 1)])
def test_bad_bins_are_refused_before_any_work(bad):
    model = build_model(__import__("test_phase").TINY_PHASE3)
    with pytest.raises(ValueError, match="bin"):
        resolve_bin(bad, 3)
    with pytest.raises(ValueError, match="bin"):
        predict_phase(np.full((64, 64, 64), np.nan, np.float32), model=model, bin=bad)  # the bin is checked first
