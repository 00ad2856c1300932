"""Input validation and file I/O: clear errors before any work, inputs never modified."""
import numpy as np
import pytest

from pynx_dlgap import PatternError, check_pattern
from pynx_dlgap.data.io import load_mask, load_pattern, save_arrays


@pytest.fixture
def pattern():
    rng = np.random.default_rng()
    return rng.poisson(50, size=(8, 16, 16)).astype(np.float32)


def test_check_pattern_returns_readonly_without_copy(pattern):
    out, m = check_pattern(pattern)
    assert np.shares_memory(out, pattern) and not out.flags.writeable
    assert pattern.flags.writeable  # the caller's array is unchanged
    assert m.dtype == bool and not m.any()


def test_check_pattern_converts_integer_counts(pattern):
    out, _ = check_pattern(pattern.astype(np.int32))
    assert out.dtype == np.float32 and np.array_equal(out, pattern)


@pytest.mark.parametrize("bad, msg", [
    (lambda p: p[0, 0], "ndim=1"),
    (lambda p: p[None], "ndim=4"),
    (lambda p: p.astype(np.complex64), "dtype complex64"),
    (lambda p: np.where(np.arange(p.size).reshape(p.shape) == 7, np.nan, p), "NaN/inf"),
    (lambda p: np.where(np.arange(p.size).reshape(p.shape) == 7, np.inf, p), "NaN/inf"),
    (lambda p: np.where(np.arange(p.size).reshape(p.shape) == 7, -3.0, p), "negative counts"),
])
def test_bad_patterns_raise(pattern, bad, msg):
    with pytest.raises(PatternError, match=msg):
        check_pattern(bad(pattern))


def test_bad_masks_raise(pattern):
    with pytest.raises(PatternError, match="shape"):
        check_pattern(pattern, np.zeros((8, 16, 15), bool))
    with pytest.raises(PatternError, match="covers every pixel"):
        check_pattern(pattern, np.ones(pattern.shape, bool))
    with pytest.raises(PatternError, match="0/1"):
        check_pattern(pattern, np.full(pattern.shape, 2))


def test_masked_nan_and_negative_are_allowed(pattern):
    p = pattern.copy()
    m = np.zeros(p.shape, bool)
    p[:, 3, :] = np.nan
    p[:, 4, :] = -1e38  # PyNX-style encoded masked pixels
    m[:, 3:5, :] = True
    out, mm = check_pattern(p, m.astype(np.uint8))
    assert np.array_equal(mm, m)


def test_too_small_pattern(pattern):
    with pytest.raises(PatternError, match="smaller than 32"):
        check_pattern(pattern, min_shape=32)


@pytest.mark.parametrize("ext", [".npy", ".npz", ".h5", ".cxi"])
def test_roundtrip_files(tmp_path, pattern, ext):
    mask = np.zeros(pattern.shape, bool)
    mask[:, 5:8] = True
    f = tmp_path / f"p{ext}"
    arrays = {"data": pattern} if ext == ".npy" else {"data": pattern, "mask": mask}
    save_arrays(f, arrays)
    assert np.array_equal(load_pattern(f), pattern)
    if ext != ".npy":
        assert np.array_equal(load_mask(f), mask)
    with pytest.raises(FileExistsError):
        save_arrays(f, arrays)
    before = f.read_bytes()
    with pytest.raises(PatternError, match="overwrite the input"):
        save_arrays(f, arrays, inputs=[f], overwrite=True)
    assert f.read_bytes() == before


def test_pynx_cxi_layout(tmp_path, pattern):
    import h5py
    f = tmp_path / "scan.cxi"
    with h5py.File(f, "w") as h:
        h["entry_1/instrument_1/detector_1/data"] = pattern
        h["entry_1/instrument_1/detector_1/mask"] = (pattern > 55).astype(np.int8)
    assert np.array_equal(load_pattern(f), pattern)
    assert np.array_equal(load_mask(f), pattern > 55)


def test_ambiguous_and_missing(tmp_path, pattern):
    f = tmp_path / "two.npz"
    np.savez(f, a=pattern, b=pattern)
    with pytest.raises(KeyError, match="several arrays"):
        load_pattern(f)
    assert np.array_equal(load_pattern(f, key="b"), pattern)
    with pytest.raises(FileNotFoundError):
        load_pattern(tmp_path / "nope.npz")
    txt = tmp_path / "p.txt"
    txt.write_text("x")
    with pytest.raises(PatternError, match="unsupported"):
        load_pattern(txt)


def test_2d_detector_mask_is_repeated_over_the_frames(tmp_path, capsys):
    """A 2-D detector mask of a 3-D pattern (frames, y, x) is repeated over the frames, as
    pynx-cdi-id01 does, and said; any other shape is left for the checks to refuse."""
    rng = np.random.default_rng()
    nz, ny, nx = (int(v) for v in rng.integers(5, 20, 3))
    m2 = rng.random((ny, nx)) < 0.2
    np.save(tmp_path / "m2.npy", m2.astype(np.uint8))
    m = load_mask(tmp_path / "m2.npy", shape=(nz, ny, nx))
    assert m.shape == (nz, ny, nx) and m.dtype == bool
    for k in range(nz):  # every frame is the detector mask, independently of how it was expanded
        assert np.array_equal(m[k], m2)
    assert f"repeated over the pattern's {nz} frames" in capsys.readouterr().out
    assert load_mask(tmp_path / "m2.npy").shape == (ny, nx)  # no shape: as stored
    assert load_mask(tmp_path / "m2.npy", shape=(ny, nx)).shape == (ny, nx)  # a 2-D pattern
    other = load_mask(tmp_path / "m2.npy", shape=(nz, ny + 1, nx))  # not the detector's shape
    assert other.shape == (ny, nx) and capsys.readouterr().out == ""
    with pytest.raises(PatternError, match="shape"):
        check_pattern(np.ones((nz, ny + 1, nx), np.float32), other)


def test_cli_fill_takes_a_2d_detector_mask(tmp_path):
    """pynx-dlgap fill with the 2-D detector mask gives the file of the 3-D mask, bit for bit."""
    from pynx_dlgap.cli import main
    rng = np.random.default_rng()
    I = rng.poisson(30, size=(6, 20, 22)).astype(np.float32)
    m2 = np.zeros((20, 22), bool)
    m2[8:11] = True
    m2[:, int(rng.integers(3, 18)):][:, :2] = True
    np.save(tmp_path / "I.npy", I)
    np.save(tmp_path / "m2.npy", m2)
    np.save(tmp_path / "m3.npy", np.repeat(m2[None], 6, axis=0))
    for k in (2, 3):
        assert main(["fill", str(tmp_path / "I.npy"), "--mask", str(tmp_path / f"m{k}.npy"),
                     "-o", str(tmp_path / f"f{k}.npz")]) in (0, None)
    a, b = np.load(tmp_path / "f2.npz"), np.load(tmp_path / "f3.npz")
    assert np.array_equal(a["data"], b["data"]) and np.array_equal(a["mask"], b["mask"])
    assert a["mask"].shape == I.shape
