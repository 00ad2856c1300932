"""Tests of the in-gap detector-space metrics (pynx_dlgap.evaluate.metrics)."""
import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from pynx_dlgap import PatternError
from pynx_dlgap.evaluate.metrics import amp_error, gap_metrics, mae, mae_log, pcc, pcc_log, r_factor, ssim_log


def fresh_rng():
    seed = int(np.random.SeedSequence().entropy % (2 ** 32))
    return np.random.default_rng(seed), seed


def random_case(shape, rng):
    truth = rng.gamma(0.7, 300.0, shape).astype(np.float32)
    filled = (truth * rng.lognormal(0, 0.4, shape) + rng.uniform(0, 5, shape)).astype(np.float32)
    mask = np.zeros(shape, bool)
    y0 = int(rng.integers(0, shape[-2] - 6))
    x0 = int(rng.integers(0, shape[-1] - 4))
    mask[..., y0:y0 + 6, :] = True
    mask[..., :, x0:x0 + 4] = True
    mask |= rng.random(shape) < 0.01
    filled[~mask] = truth[~mask]  # a fill only changes the gap
    return truth, filled, mask


def ssim_map_reference(a, b, data_range, win=7):
    """Independent float64 SSIM map (Wang et al. 2004, uniform window, sample covariance)."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    npx = win ** a.ndim
    cn = npx / (npx - 1)
    ua, ub = uniform_filter(a, win), uniform_filter(b, win)
    vaa = cn * (uniform_filter(a * a, win) - ua * ua)
    vbb = cn * (uniform_filter(b * b, win) - ub * ub)
    vab = cn * (uniform_filter(a * b, win) - ua * ub)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return ((2 * ua * ub + c1) * (2 * vab + c2)) / ((ua ** 2 + ub ** 2 + c1) * (vaa + vbb + c2))


SHAPES = [(40, 36), (12, 30, 28)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_metrics_match_independent_float64(shape):
    rng, seed = fresh_rng()
    truth, filled, mask = random_case(shape, rng)
    t = truth[mask].astype(np.float64)
    f = filled[mask].astype(np.float64)
    lt, lf = np.log1p(t), np.log1p(f)
    exp = {
        "pcc_log": np.corrcoef(lt, lf)[0, 1],
        "pcc": np.corrcoef(t, f)[0, 1],
        "r_factor": np.sum(np.abs(f - t)) / np.sum(t),
        "mae_log": np.mean(np.abs(lf - lt)),
        "mae": np.mean(np.abs(f - t)),
        "amp": np.sum((np.sqrt(f) - np.sqrt(t)) ** 2) / np.sum(t),
    }
    ltf = np.log1p(truth.astype(np.float64))
    smap = ssim_map_reference(ltf, np.log1p(filled.astype(np.float64)), ltf.max() - ltf.min())
    exp["ssim_log"] = smap[mask].mean()
    got = gap_metrics(truth, filled, mask)
    assert got["n_gap"] == int(mask.sum())
    for k, v in exp.items():
        assert got[k] == pytest.approx(v, rel=1e-9, abs=1e-12), (k, seed)
    singles = {"pcc_log": pcc_log, "pcc": pcc, "r_factor": r_factor, "mae_log": mae_log, "mae": mae, "amp": amp_error,
               "ssim_log": ssim_log}
    for k, fn in singles.items():
        assert fn(truth, filled, mask) == pytest.approx(exp[k], rel=1e-9, abs=1e-12), (k, seed)
    # metrics only look inside the gap: changing measured voxels of the fill changes nothing
    f2 = filled.copy()
    f2[~mask] *= 3
    assert pcc_log(truth, f2, mask) == pytest.approx(exp["pcc_log"], rel=1e-12)
    assert r_factor(truth, f2, mask) == pytest.approx(exp["r_factor"], rel=1e-12)


def test_perfect_fill():
    rng, seed = fresh_rng()
    truth, _, mask = random_case((10, 24, 26), rng)
    m = gap_metrics(truth, truth.copy(), mask)
    assert m["pcc_log"] == pytest.approx(1.0, abs=1e-12)
    assert m["pcc"] == pytest.approx(1.0, abs=1e-12)
    assert m["ssim_log"] == pytest.approx(1.0, abs=1e-12)
    assert m["r_factor"] == 0.0 and m["mae"] == 0.0 and m["mae_log"] == 0.0


def test_constant_and_zero_fill_defined():
    rng, seed = fresh_rng()
    truth, filled, mask = random_case((8, 20, 22), rng)
    zero = truth.copy()
    zero[mask] = 0
    m = gap_metrics(truth, zero, mask)
    assert m["pcc"] == 0.0 and m["pcc_log"] == 0.0  # a constant carries no correlation
    assert m["r_factor"] == pytest.approx(1.0, rel=1e-12)  # sum|0 - t| / sum t
    assert m["mae"] == pytest.approx(truth[mask].astype(np.float64).mean(), rel=1e-9)
    assert np.isfinite(m["ssim_log"])
    const = truth.copy()
    const[mask] = 7.0
    m = gap_metrics(truth, const, mask)
    assert m["pcc"] == 0.0 and m["pcc_log"] == 0.0
    # constant truth and identical constant fill -> perfect
    t = np.full((6, 12, 12), 5.0, np.float32)
    m = gap_metrics(t, t.copy(), mask[:6, :12, :12] | True)
    assert m["pcc"] == 1.0 and m["pcc_log"] == 1.0 and m["r_factor"] == 0.0
    assert m["ssim_log"] == pytest.approx(1.0)
    # zero truth in the gap: R-factor 0 for a perfect fill, inf otherwise
    t = np.ones((6, 12, 12), np.float32)
    gm = np.zeros(t.shape, bool)
    gm[:, 4:6] = True
    t[gm] = 0
    assert r_factor(t, t.copy(), gm) == 0.0
    f = t.copy()
    f[gm] = 1
    assert r_factor(t, f, gm) == float("inf")


def test_anticorrelated_and_scaled():
    rng, seed = fresh_rng()
    truth, _, mask = random_case((30, 30), rng)
    f = truth.copy()
    f[mask] = truth[mask].max() - truth[mask]
    assert pcc(truth, f, mask) == pytest.approx(-1.0, abs=1e-6)
    f[mask] = 2 * truth[mask]
    assert pcc(truth, f, mask) == pytest.approx(1.0, abs=1e-6)
    assert r_factor(truth, f, mask) == pytest.approx(1.0, rel=1e-6)


def test_bad_inputs():
    t = np.ones((8, 10, 12), np.float32)
    m = np.zeros(t.shape, bool)
    m[:, 3:5] = True
    with pytest.raises(PatternError):
        gap_metrics(t, t, np.zeros(t.shape, bool))  # empty gap
    with pytest.raises(PatternError):
        gap_metrics(t, t, None)
    with pytest.raises(PatternError):
        gap_metrics(t, t[:, :, :-1], m)
    with pytest.raises(PatternError):
        gap_metrics(t, t, m[:, :, :-1])
    bad = t.copy()
    bad[m] = np.nan
    with pytest.raises(PatternError):
        gap_metrics(t, bad, m)  # a fill must be finite in the gap
    with pytest.raises(PatternError):
        gap_metrics(bad, t, m)  # the truth must be valid everywhere
    bad = t.copy()
    bad[0, 4, 0] = -1
    with pytest.raises(PatternError):
        pcc(t, bad, m)
    with pytest.raises(PatternError):
        pcc(np.ones(5), np.ones(5), np.ones(5, bool))
    # a full mask is allowed: score every voxel
    assert gap_metrics(t, t, np.ones(t.shape, bool))["n_gap"] == t.size


def test_inputs_not_modified_and_small_arrays():
    rng, seed = fresh_rng()
    truth, filled, mask = random_case((5, 12, 9), rng)  # z=5 < 7: SSIM window shrinks to 5
    c = (truth.copy(), filled.copy(), mask.copy())
    m = gap_metrics(truth, filled, mask)
    assert all(np.array_equal(a, b) for a, b in zip((truth, filled, mask), c))
    assert np.isfinite(m["ssim_log"])
    assert np.isnan(gap_metrics(truth, filled, mask, ssim=False)["ssim_log"])
