"""The gap-fill benchmark harness (pynx_dlgap.evaluate.gapbench): truths, the noise-ceiling row, tables."""
import numpy as np
import pytest

from pynx_dlgap.evaluate import gapbench as gb
from pynx_dlgap.inpaint.baselines import BASELINES


@pytest.fixture(scope="module")
def samples():
    seed = int(np.random.SeedSequence().entropy % 1_000_000_000)  # fresh data, below the held-out seeds
    return gb.make_test_set(2, (32, 32, 32), "mixed", seed_base=seed)


def _pcc_log64(t, f):
    """Pearson correlation of log(I+1), float64, written out."""
    a, b = np.log1p(t.astype(np.float64)), np.log1p(f.astype(np.float64))
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_oracle_row_is_the_noise_ceiling(samples):
    cases = gb.gap_cases((3, 6), ("plane", "cross"))
    ident = {"identity": lambda I, m: I.copy()}  # the measured counts themselves: a perfect fill of the measured truth
    rows = gb.detector_rows(samples, cases, ident, progress=False, ssim=False, oracle=True)
    assert {r["method"] for r in rows} == {"identity", "expected"}
    assert len(rows) == 2 * len(samples) * len(cases)
    for r in rows:
        if r["method"] == "identity":
            assert r["pcc_log"] == pytest.approx(1.0, abs=1e-12) and r["mae_log"] == 0.0
            continue
        i = r["sample"]
        case = next(c for c in cases if str(c) == r["case"])
        s = samples[i]
        m = gb.draw_layout(case, s["intensity"].shape, gb._case_rng(i, case)).mask(s["intensity"].shape)
        t, e = s["intensity"][m], s["expected"][m]
        assert r["pcc_log"] == pytest.approx(_pcc_log64(t, e), rel=1e-9)
        assert r["mae_log"] == pytest.approx(np.abs(np.log1p(t.astype(np.float64)) - np.log1p(e.astype(np.float64))).mean(),
                                             rel=1e-9)
        # Poisson noise in the truth: the noise-free intensity is not a perfect score
        assert r["pcc_log"] < 1.0 and r["mae_log"] > 0.0


def test_expected_truth_scores_the_gap_against_the_noise_free_counts(samples):
    cases = gb.gap_cases((6,), ("cross",))
    fill = BASELINES["loglinear"]
    rows = gb.detector_rows(samples, cases, {"loglinear": fill}, progress=False, ssim=True,
                            truth="expected", oracle=True)
    for r in rows:
        s = samples[r["sample"]]
        m = gb.draw_layout(cases[0], s["intensity"].shape, gb._case_rng(r["sample"], cases[0])).mask(s["intensity"].shape)
        if r["method"] == "expected":  # against its own truth the oracle is perfect, SSIM included
            assert r["pcc_log"] == pytest.approx(1.0, abs=1e-12)
            assert r["mae_log"] == 0.0 and r["ssim_log"] == pytest.approx(1.0, abs=1e-9)
        else:
            f = fill(s["intensity"], m)
            assert r["pcc_log"] == pytest.approx(_pcc_log64(s["expected"][m], f[m]), rel=1e-9)


def test_detector_rows_refuses_an_unknown_truth_or_samples_without_expected(samples):
    with pytest.raises(ValueError, match="truth"):
        gb.detector_rows(samples, gb.gap_cases((3,), ("plane",)), {}, progress=False, truth="noisy")
    bare = [{"intensity": samples[0]["intensity"]}]
    with pytest.raises(ValueError, match="expected"):
        gb.detector_rows(bare, gb.gap_cases((3,), ("plane",)), {}, progress=False, oracle=True)


def test_format_table_does_not_mark_excluded_rows():
    summ = {("c", "a"): {"x": 0.5}, ("c", "b"): {"x": 0.7}, ("c", "expected"): {"x": 0.9}}
    out = gb.format_table(summ, ("case", "method"), ["x"], best={"x": "max"}, best_exclude=("expected",))
    lines = {l.split()[1]: l for l in out.splitlines()[2:] if l.strip()}
    assert lines["b"].rstrip().endswith("0.7000*")
    assert "*" not in lines["expected"] and "*" not in lines["a"]
