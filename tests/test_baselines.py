"""Tests of the classical gap fills (pynx_dlgap.inpaint.baselines) and the PyNX backend helpers."""
import time

import numpy as np
import pytest

from pynx_dlgap import PatternError
from pynx_dlgap import pynx_backend as pb
from pynx_dlgap.inpaint.baselines import (BASELINES, fill_biharmonic, fill_logcubic, fill_loglinear,
                                          fill_none, fill_pynx_interp, get_baseline)

FAST_FILLS = [fill_none, fill_loglinear, fill_logcubic, fill_biharmonic]


# ---------------------------------------------------------------------------
# test data (no dependency on the simulator)
# ---------------------------------------------------------------------------
def fresh_rng():
    seed = int(np.random.SeedSequence().entropy % (2 ** 32))
    return np.random.default_rng(seed), seed


def fringe_pattern(shape, rng, peak=1e5, bg=3.0, noise=True, width=(3, 8)):
    """sinc² fringes × a Gaussian envelope + background, optionally with Poisson noise.

    ``width``: range of the sinc widths (fringe period) in pixels.
    """
    c = np.meshgrid(*[np.arange(n) - n / 2 + rng.uniform(-2, 2) for n in shape], indexing="ij")
    widths = rng.uniform(width[0], width[1], len(shape))
    amp = np.ones(shape)
    for x, w in zip(c, widths):
        amp = amp * np.sinc(x / w)
    env = np.exp(-sum(x ** 2 for x in c) / (2 * (max(shape) / 4) ** 2))
    lam = peak * amp ** 2 * env + bg
    return (rng.poisson(lam) if noise else lam).astype(np.float32)


def mask_cases(shape, rng):
    """Masks: plane normal to y, to x, a cross, several gaps, edge gaps, dead pixels."""
    ny, nx = shape[-2], shape[-1]
    out = {}

    def m():
        return np.zeros(shape, dtype=bool)

    a = m(); y0 = int(rng.integers(2, ny - 10)); a[..., y0:y0 + 6, :] = True; out["plane_y"] = a
    a = m(); x0 = int(rng.integers(2, nx - 12)); a[..., :, x0:x0 + 9] = True; out["plane_x"] = a
    a = m(); a[..., y0:y0 + 6, :] = True; a[..., :, x0:x0 + 6] = True; out["cross"] = a
    a = m(); a[..., 3:5, :] = True; a[..., ny // 2:ny // 2 + 3, :] = True
    a[..., :, 5:9] = True; a[..., :, nx - 9:nx - 6] = True; out["several"] = a
    a = m(); a[..., :4, :] = True; a[..., :, nx - 3:] = True; a[..., :, 10:13] = True; out["edges"] = a
    a = m(); a[..., y0:y0 + 6, :] = True
    a |= rng.random(shape) < 0.01; out["plane_dead"] = a
    a = rng.random(shape) < 0.02; out["dead_only"] = a
    return out


SHAPES = [(40, 48), (37, 30), (16, 32, 28), (15, 21, 24)]


# ---------------------------------------------------------------------------
# generic contract
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("fill", FAST_FILLS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_measured_voxels_bit_identical_and_input_untouched(fill, shape):
    rng, seed = fresh_rng()
    iobs = fringe_pattern(shape, rng)
    for name, mask in mask_cases(shape, rng).items():
        i0, m0 = iobs.copy(), mask.copy()
        out = fill(iobs, mask)
        msg = f"{fill.__name__} {shape} {name} seed={seed}"
        assert out.dtype == np.float32 and out.shape == iobs.shape, msg
        assert out is not iobs and not np.shares_memory(out, iobs), msg
        assert np.array_equal(out[~mask], iobs[~mask]), msg
        assert np.all(np.isfinite(out)) and out.min() >= 0, msg
        assert np.array_equal(iobs, i0) and np.array_equal(mask, m0), msg
        if fill is fill_none:
            assert np.all(out[mask] == 0), msg
        out[0] = 1  # the output is a normal writable array


@pytest.mark.parametrize("fill", FAST_FILLS, ids=lambda f: f.__name__)
def test_other_dtypes_and_int_mask(fill):
    rng, seed = fresh_rng()
    iobs64 = fringe_pattern((12, 20, 22), rng).astype(np.float64) + 0.1234567891234
    iobs_int = rng.poisson(50, (12, 20, 22)).astype(np.int32)
    mask = np.zeros((12, 20, 22), dtype=np.uint8)
    mask[:, 8:11] = 1
    mb = mask.astype(bool)
    for iobs in (iobs64, iobs_int):
        out = fill(iobs, mask)
        assert out.dtype == np.float32
        assert np.array_equal(out[~mb], iobs.astype(np.float32)[~mb]), seed


@pytest.mark.parametrize("fill", FAST_FILLS, ids=lambda f: f.__name__)
def test_nan_inside_the_mask_is_ignored(fill):
    rng, seed = fresh_rng()
    iobs = fringe_pattern((10, 24, 26), rng)
    mask = np.zeros(iobs.shape, bool)
    mask[:, 10:14] = True
    iobs[mask] = np.nan
    out = fill(iobs, mask)
    assert np.all(np.isfinite(out)), seed


def test_no_masked_voxel_returns_copy():
    rng, _ = fresh_rng()
    iobs = fringe_pattern((8, 16, 16), rng)
    for fill in FAST_FILLS:
        out = fill(iobs, np.zeros(iobs.shape, bool))
        assert np.array_equal(out, iobs) and not np.shares_memory(out, iobs)
        out = fill(iobs, None)
        assert np.array_equal(out, iobs)


@pytest.mark.parametrize("fill", FAST_FILLS + [fill_pynx_interp], ids=lambda f: f.__name__)
def test_bad_input_raises_pattern_error(fill):
    good = np.ones((8, 10, 12), np.float32)
    m = np.zeros(good.shape, bool)
    m[:, 4:6] = True
    with pytest.raises(PatternError):
        fill(np.ones(10, np.float32), np.zeros(10, bool))  # 1-D
    with pytest.raises(PatternError):
        fill(np.ones((2, 3, 4, 5), np.float32), np.zeros((2, 3, 4, 5), bool))  # 4-D
    bad = good.copy(); bad[0, 0, 0] = np.nan
    with pytest.raises(PatternError):
        fill(bad, m)
    bad = good.copy(); bad[0, 0, 0] = np.inf
    with pytest.raises(PatternError):
        fill(bad, m)
    bad = good.copy(); bad[1, 1, 1] = -3
    with pytest.raises(PatternError):
        fill(bad, m)
    with pytest.raises(PatternError):
        fill(good, m[:, :, :-1])  # shape mismatch
    with pytest.raises(PatternError):
        fill(good, np.ones(good.shape, bool))  # everything masked
    with pytest.raises(PatternError):
        fill(good.astype(np.complex64), m)
    with pytest.raises(PatternError):
        fill(good, np.full(good.shape, 2))  # not a 0/1 mask


# ---------------------------------------------------------------------------
# analytic cases
# ---------------------------------------------------------------------------
def _grid(shape):
    return np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")


def _rel(a, b):
    return np.max(np.abs(a.astype(np.float64) - b) / (np.abs(b) + 1))


@pytest.mark.parametrize("shape", [(40, 44), (12, 30, 34)], ids=str)
def test_loglinear_reproduces_linear_log_field(shape):
    g = _grid(shape)
    coef = [0.031, -0.052, 0.043][-len(shape):]
    L = 6.0 + sum(c * x for c, x in zip(coef, g))  # linear in log(I+1), positive
    I = np.expm1(L).astype(np.float32)
    Ltrue = np.log1p(I.astype(np.float64))
    rng, seed = fresh_rng()
    masks = {}
    m = np.zeros(shape, bool); m[..., 9:21, :] = True; masks["plane_y"] = m
    m = np.zeros(shape, bool); m[..., 9:21, :] = True; m[..., :, 15:27] = True; masks["cross"] = m
    m = np.zeros(shape, bool); m[..., 9:13, :] = True; m[..., 14:17, :] = True
    m[..., :, 3:6] = True; m[..., :, 20:28] = True; masks["several"] = m
    m = rng.random(shape) < 0.05
    for ax in range(len(shape)):  # at an edge the rule is constant extrapolation, not exact
        idx = [slice(None)] * len(shape)
        for e in (0, -1):
            idx[ax] = e
            m[tuple(idx)] = False
    masks["dead"] = m
    for name, m in masks.items():
        out = fill_loglinear(I, m)
        err = np.max(np.abs(np.log1p(out[m].astype(np.float64)) - Ltrue[m]))
        assert err < 2e-6, f"{name}: max log error {err} (seed {seed})"


def test_loglinear_edge_gap_is_constant_extrapolation():
    rng, seed = fresh_rng()
    I = fringe_pattern((6, 30, 32), rng)
    m = np.zeros(I.shape, bool)
    m[:, :5] = True        # top edge, normal to y
    m[:, :, -4:] = True    # right edge, normal to x
    out = fill_loglinear(I, m)
    # arms: copies of the nearest measured row / column
    np.testing.assert_allclose(out[:, :5, :-4], np.repeat(I[:, 5:6, :-4], 5, axis=1), rtol=2e-6)
    np.testing.assert_allclose(out[:, 5:, -4:], np.repeat(I[:, 5:, -5:-4], 4, axis=2), rtol=2e-6)
    # corner (both runs one-sided, equal widths would tie; here 5 vs 4): along x from the filled arm
    np.testing.assert_allclose(out[:, :5, -4:], np.repeat(out[:, :5, -5:-4], 4, axis=2), rtol=2e-6)


def test_loglinear_cross_centre_averages_both_directions():
    # L = f(y) + g(x) with f, g non-linear: in the crossing square of a cross with
    # equal widths, the second pass averages the y- and x-interpolations.
    shape = (40, 40)
    y, x = _grid(shape)
    L = 5 + np.sin(y / 4.0) + 0.5 * np.cos(x / 3.0)
    I = np.expm1(L)
    m = np.zeros(shape, bool)
    m[15:21] = True
    m[:, 22:28] = True
    out = np.log1p(fill_loglinear(I, m).astype(np.float64))
    # reference, by hand: pass 1 along y in the x-stripe rows, along x in the y-stripe columns
    ref = L.copy()
    for yy in range(15, 21):
        t = (yy - 14) / 7
        ref[yy, :] = L[14, :] + t * (L[21, :] - L[14, :])
    for xx in range(22, 28):
        t = (xx - 21) / 7
        ref[:, xx] = L[:, 21] + t * (L[:, 28] - L[:, 21])
    # crossing: average of interpolating the pass-1 arms along y and along x
    cy = np.empty((6, 6)); cx = np.empty((6, 6))
    for i, yy in enumerate(range(15, 21)):
        for j, xx in enumerate(range(22, 28)):
            ty, tx = (yy - 14) / 7, (xx - 21) / 7
            cy[i, j] = ref[14, xx] + ty * (ref[21, xx] - ref[14, xx])
            cx[i, j] = ref[yy, 21] + tx * (ref[yy, 28] - ref[yy, 21])
    ref[15:21, 22:28] = 0.5 * (cy + cx)
    np.testing.assert_allclose(out, ref, atol=2e-6)


@pytest.mark.parametrize("shape", [(40, 44), (10, 34, 36)], ids=str)
def test_logcubic_reproduces_cubic_and_loglinear_does_not(shape):
    g = _grid(shape)
    y, x = g[-2], g[-1]
    fy = 6 + 0.25 * (y - 17) - 0.012 * (y - 17) ** 2 + 0.0009 * (y - 17) ** 3
    fx = 0.2 * (x - 18) - 0.01 * (x - 18) ** 2 - 0.0006 * (x - 18) ** 3
    L = fy + fx
    L = L - L.min() + 0.5
    I = np.expm1(L).astype(np.float32)
    Ltrue = np.log1p(I.astype(np.float64))
    m = np.zeros(shape, bool)
    m[..., 12:22, :] = True
    m[..., :, 14:24] = True
    out = fill_logcubic(I, m)
    err = np.max(np.abs(np.log1p(out[m].astype(np.float64)) - Ltrue[m]))
    assert err < 1e-5, err
    lin = fill_loglinear(I, m)
    err_lin = np.max(np.abs(np.log1p(lin[m].astype(np.float64)) - Ltrue[m]))
    assert err_lin > 0.1, err_lin  # the test can fail: linear is not exact on a cubic


def test_logcubic_falls_back_when_outer_points_missing():
    # a 1-px measured row between two gaps: only p is measured, not p-1
    shape = (30, 20)
    y, x = _grid(shape)
    L = 3 + 0.1 * y + 0.05 * x
    I = np.expm1(L)
    m = np.zeros(shape, bool)
    m[5:10] = True
    m[11:15] = True  # row 10 measured alone
    out = fill_logcubic(I, m)
    np.testing.assert_allclose(np.log1p(out[m].astype(np.float64)), L[m], atol=2e-6)


def test_fills_are_reasonable_on_a_smooth_pattern():
    rng, seed = fresh_rng()
    shape = (24, 48, 48)
    I = fringe_pattern(shape, rng, peak=1e6, bg=50, noise=False, width=(10, 16))
    m = np.zeros(shape, bool)
    m[:, 20:26] = True
    m[:, :, 27:33] = True
    truth_l = np.log1p(I[m].astype(np.float64))
    for fill in (fill_loglinear, fill_logcubic, fill_biharmonic):
        out = fill(I, m)
        err = np.mean(np.abs(np.log1p(out[m].astype(np.float64)) - truth_l))
        assert err < 1.2, (fill.__name__, err, seed)
        zero_err = np.mean(truth_l)
        assert err < 0.2 * zero_err, (fill.__name__, err, zero_err, seed)


def test_biharmonic_fully_masked_frame_falls_back():
    rng, seed = fresh_rng()
    I = fringe_pattern((6, 20, 24), rng)
    m = np.zeros(I.shape, bool)
    m[:, 8:12] = True
    m[3] = True  # a dead rocking frame
    out = fill_biharmonic(I, m)
    ref = fill_loglinear(I, m)
    np.testing.assert_array_equal(out[3], ref[3])
    assert np.array_equal(out[~m], I[~m])


def test_loglinear_speed_128_cross():
    rng, _ = fresh_rng()
    I = fringe_pattern((128, 128, 128), rng)
    m = np.zeros(I.shape, bool)
    m[:, 58:70] = True
    m[:, :, 40:52] = True
    fill_loglinear(I[:8], m[:8])  # warm-up
    t0 = time.perf_counter()
    out = fill_loglinear(I, m)
    dt = time.perf_counter() - t0
    assert np.array_equal(out[~m], I[~m])
    assert dt < 3.0, f"log-linear fill took {dt:.2f} s on 128³ (target well under 1 s)"


def test_registry():
    assert set(BASELINES) == {"none", "loglinear", "logcubic", "biharmonic", "pynx_interp"}
    assert get_baseline("loglinear") is fill_loglinear
    assert get_baseline("pynx_interp") is fill_pynx_interp
    with pytest.raises(ValueError, match="unknown baseline"):
        get_baseline("nearest")


# ---------------------------------------------------------------------------
# PyNX InterpIobsMask through real PyNX (OpenCL, PoCL on this machine)
# ---------------------------------------------------------------------------
needs_pynx = pytest.mark.skipif(not pb.pynx_available(), reason="PyNX is not installed (run `make setup`)")
needs_opencl = pytest.mark.skipif(not pb.has_opencl_device(),
                                  reason="no OpenCL platform/device (install PoCL: pocl-binary-distribution)")


def idw_reference(I, mask, d, n):
    """Independent numpy version of PyNX's mask_interp_dist kernel (3-D, periodic)."""
    val = np.where(mask, 0.0, I.astype(np.float64))
    ok = (~mask).astype(np.float64)
    num = np.zeros(I.shape)
    den = np.zeros(I.shape)
    for dz in range(-d, d + 1):
        for dy in range(-d, d + 1):
            for dx in range(-d, d + 1):
                r2 = dx * dx + dy * dy + dz * dz
                w = 1.0 / np.sqrt(max(r2, 1e-6)) ** n
                sh = (-dz, -dy, -dx)
                num += w * np.roll(val, sh, axis=(0, 1, 2))
                den += w * np.roll(ok, sh, axis=(0, 1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den, den > 0


@pytest.mark.pynx
@pytest.mark.opencl
@needs_pynx
@needs_opencl
def test_pynx_interp_matches_independent_idw_on_odd_shape():
    rng, seed = fresh_rng()
    shape = (11, 14, 13)  # odd sizes: fft-shift conventions must be right
    I = fringe_pattern(shape, rng, peak=1e4, bg=5)
    m = np.zeros(shape, bool)
    m[:, 5:7] = True
    m[:, :, 8:10] = True
    m |= rng.random(shape) < 0.01
    i0 = I.copy()
    out = fill_pynx_interp(I, m, d=3, n=2)
    ref, _ = idw_reference(I, m, 3, 2)
    assert np.array_equal(I, i0)
    assert np.array_equal(out[~m], I[~m])
    np.testing.assert_allclose(out[m], ref[m], rtol=2e-4, atol=1e-3, err_msg=f"seed {seed}")


@pytest.mark.pynx
@pytest.mark.opencl
@needs_pynx
@needs_opencl
def test_pynx_interp_32_cube_close_to_truth():
    rng, seed = fresh_rng()
    shape = (32, 32, 32)
    z, y, x = np.meshgrid(*[np.arange(n) - n / 2 for n in shape], indexing="ij")
    lam = 1e4 * np.exp(-(x ** 2 + y ** 2 + z ** 2) / (2 * 6.0 ** 2)) + 20
    I = rng.poisson(lam).astype(np.float32)
    m = np.zeros(shape, bool)
    m[:, 14:18] = True
    m[:, :, 10:14] = True
    i0, m0 = I.copy(), m.copy()
    out = fill_pynx_interp(I, m)
    assert out.dtype == np.float32 and out.shape == shape
    assert np.array_equal(I, i0) and np.array_equal(m, m0)
    assert np.array_equal(out[~m], I[~m])
    v = out[m].astype(np.float64)
    assert np.all(np.isfinite(v)) and v.min() >= 0
    lt, lf = np.log1p(lam[m]), np.log1p(v)
    assert np.corrcoef(lt, lf)[0, 1] > 0.95, seed
    assert np.mean(np.abs(lt - lf)) < 0.5, seed
    # 2-D: processed as a stack of identical frames
    out2 = fill_pynx_interp(I[16], m[16], d=4, n=4)
    assert np.array_equal(out2[~m[16]], I[16][~m[16]])
    v2 = out2[m[16]].astype(np.float64)
    assert np.all(np.isfinite(v2)) and v2.min() >= 0
    assert np.corrcoef(np.log1p(lam[16][m[16]]), np.log1p(v2))[0, 1] > 0.9


@pytest.mark.pynx
@pytest.mark.opencl
@needs_pynx
@needs_opencl
def test_pynx_interp_rejects_axes_shorter_than_d():
    I = np.ones((6, 20, 20), np.float32)
    m = np.zeros(I.shape, bool)
    m[:, 5:7] = True
    with pytest.raises(PatternError, match="shorter"):
        fill_pynx_interp(I, m, d=8)


def test_pynx_interp_missing_pynx_clear_error(monkeypatch):
    monkeypatch.setattr(pb, "pynx_available", lambda: False)
    I = np.ones((8, 12, 12), np.float32)
    m = np.zeros(I.shape, bool)
    m[:, 4:6] = True
    with pytest.raises(pb.PyNXUnavailable, match="make setup"):
        fill_pynx_interp(I, m, d=4)


@needs_pynx
def test_pynx_interp_missing_opencl_clear_error(monkeypatch):
    monkeypatch.setattr(pb, "opencl_devices", lambda device_type=None: [])
    monkeypatch.setattr(pb, "pynx_has_cuda", lambda: False)
    I = np.ones((8, 12, 12), np.float32)
    m = np.zeros(I.shape, bool)
    m[:, 4:6] = True
    with pytest.raises(pb.OpenCLUnavailable, match="PoCL|OpenCL"):
        fill_pynx_interp(I, m, d=4)


def test_opencl_devices_handles_platform_not_found(monkeypatch):
    cl = pytest.importorskip("pyopencl")

    def boom():
        raise cl.LogicError("clGetPlatformIDs failed: PLATFORM_NOT_FOUND_KHR")

    monkeypatch.setattr(cl, "get_platforms", boom)
    assert pb.opencl_devices() == []
    assert pb.has_opencl_device() is False
    with pytest.raises(pb.OpenCLUnavailable):
        pb.select_opencl_device()


@needs_opencl
def test_select_opencl_device_by_platform():
    dev = pb.select_opencl_device()
    assert dev in pb.opencl_devices()
    pname = dev.platform.name
    assert pb.select_opencl_device(platform=pname[:6]).platform.name == pname
    with pytest.raises(pb.OpenCLUnavailable, match="no OpenCL device matches"):
        pb.select_opencl_device(name="no-such-device-xyz")


# ---------------------------------------------------------------------------
# import_pynx: backend families (fresh interpreters: PyNX's choice is per process)
# ---------------------------------------------------------------------------
def _run_fresh(code, env_extra=None):
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "PYNX_PU"}
    env.update(env_extra or {})
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


@pytest.mark.pynx
@needs_pynx
def test_import_pynx_sets_backend_in_fresh_process():
    out = _run_fresh(
        "import os\n"
        "from pynx_dlgap.pynx_backend import import_pynx\n"
        "pc = import_pynx('cpu')\n"
        "print(os.environ['PYNX_PU'], pc.ER.__module__, pc.CDI.__module__)\n")
    assert "cpu pynx.cdi.cpu_operator pynx.cdi.cdi" in out


@pytest.mark.pynx
@pytest.mark.opencl
@needs_pynx
@needs_opencl
def test_cpu_family_still_available_after_an_opencl_fill():
    # fill_pynx_interp imports PyNX first (PyNX's default: OpenCL family on this machine);
    # a later import_pynx('cpu') must still give working CPU operators
    out = _run_fresh(
        "import numpy as np\n"
        "from pynx_dlgap.inpaint.baselines import fill_pynx_interp\n"
        "from pynx_dlgap.pynx_backend import import_pynx\n"
        "I = np.random.default_rng(0).poisson(100, (16, 16, 16)).astype(np.float32)\n"
        "m = np.zeros(I.shape, bool); m[:, 7:9] = True\n"
        "f = fill_pynx_interp(I, m, d=4)\n"
        "pc = import_pynx('cpu')\n"
        "cdi = pc.CDI(np.fft.fftshift(f))\n"
        "cdi.set_support(np.ones(f.shape, np.int8))\n"
        "cdi = pc.ER(calc_llk=1) ** 3 * pc.InitObjRandom(src='support') * cdi\n"
        "po = import_pynx('opencl')\n"
        "print('OK', pc.ER.__module__, po.ER.__module__, po.InterpIobsMask.__module__)\n")
    assert "OK pynx.cdi.cpu_operator pynx.cdi.cl_operator pynx.cdi.cl_operator" in out


@pytest.mark.parametrize("fill", FAST_FILLS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("flag", [-1.0, np.nan, 4294967295.0])
def test_detector_flags_inside_the_mask_are_never_read(flag, fill):
    """Detectors flag gap pixels with -1, NaN or 2^32-1: under the mask they change nothing and
    raise no floating-point warning (the fill equals the one with zeros there)."""
    import warnings
    rng, seed = fresh_rng()
    iobs = fringe_pattern((10, 24, 26), rng)
    mask = np.zeros(iobs.shape, bool)
    mask[:, 9:13] = True
    mask[..., 5:8] = True
    ref = fill(np.where(mask, 0, iobs), mask)
    flagged = np.where(mask, flag, iobs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = fill(flagged, mask)
    assert np.array_equal(out, ref), seed
