"""The device kernels (``pynx_dlgap/kernels``): OpenCL run on the PoCL CPU platform against
the numpy references on freshly drawn data; CUDA compiled with nvcc (fails on a compile
error), and run through CuPy when a GPU is there."""
import shutil
import subprocess

import numpy as np
import pytest

from pynx_dlgap.gpu import (KERNEL_DIR, blend_write_iobs_reference, gather_patches_reference, kernel_source,
                            phasor_amplitude_reference, scatter_blend_reference, write_iobs_reference)

KERNELS = ("dl_write_iobs", "dl_phasor_amplitude", "dl_gather_patches", "dl_scatter_patch", "dl_blend_write_iobs")

SHAPES = [(16, 20, 24), (15, 17, 9), (32, 31), (1, 8, 8)]


@pytest.fixture(scope="module")
def clk():
    from pynx_dlgap.pynx_backend import opencl_devices
    devs = opencl_devices("cpu") or opencl_devices()
    if not devs:
        pytest.skip("no OpenCL device (install PoCL: pip install pocl-binary-distribution)")
    import pyopencl as cl
    from pynx_dlgap.gpu import OpenCLKernels
    return OpenCLKernels(cl.Context([devs[0]]))


def _data(shape, rng):
    I = rng.poisson(50 * rng.random(shape)).astype(np.float32)
    I[rng.random(shape) < 0.05] = -3  # negative values are clipped to 0 by both
    ph = rng.uniform(-np.pi, np.pi, shape).astype(np.float32)
    ph[rng.random(shape) < 0.05] = np.nan
    m = rng.random(shape) < 0.1
    return I, ph, m


@pytest.mark.opencl
@pytest.mark.parametrize("shape", SHAPES)
def test_opencl_phasor_amplitude_matches_numpy(clk, shape):
    rng = np.random.default_rng()
    I, ph, m = _data(shape, rng)
    got = clk.phasor_amplitude_numpy(I, ph, m)
    ref = phasor_amplitude_reference(I, ph, m)
    assert got.dtype == np.complex64 and got.shape == shape
    np.testing.assert_allclose(got, ref, rtol=2e-6, atol=2e-5)
    # the layout is PyNX's: fftshift of the result is the centred array
    c = np.fft.fftshift(got)
    k = tuple(n // 2 for n in shape)
    if np.isfinite(ph[k]) and not m[k]:
        assert abs(c[k] - np.sqrt(max(I[k], 0)) * np.exp(1j * ph[k])) < 1e-4


@pytest.mark.opencl
@pytest.mark.parametrize("mode", ["observed", "estimate"])
def test_opencl_write_iobs_matches_numpy(clk, mode):
    rng = np.random.default_rng()
    iobs = rng.poisson(20, (12, 14, 16)).astype(np.float32)
    iobs[rng.random(iobs.shape) < 0.2] = -1e38  # masked, PyNX encoding
    vals = (100 * rng.random(iobs.shape)).astype(np.float32)
    fill = iobs < -1e37
    got = clk.write_iobs_numpy(iobs, vals, fill, mode)
    np.testing.assert_array_equal(got, write_iobs_reference(iobs, vals, fill, mode))
    np.testing.assert_array_equal(got[~fill], iobs[~fill])
    if mode == "estimate":  # PyNX decodes -(I+1)*1e19 back to I
        np.testing.assert_allclose(-got[fill] / 1e19 - 1, vals[fill], rtol=1e-5, atol=1e-3)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_cuda_kernels_compile_with_nvcc(tmp_path, arch):
    out = tmp_path / "dlgap.ptx"
    r = subprocess.run(["nvcc", "--ptx", f"-arch={arch}", "-o", str(out), str(KERNEL_DIR / "dlgap.cu")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    ptx = out.read_text()
    for name in KERNELS:
        assert f".entry {name}" in ptx


def test_sources_define_the_same_kernels():
    for name in KERNELS:
        assert name in kernel_source("opencl") and name in kernel_source("cuda")


def _corners(rng, shape, patch, n):
    return [tuple(int(rng.integers(0, s - p + 1)) for s, p in zip(shape, patch)) for _ in range(n)]


@pytest.mark.opencl
@pytest.mark.parametrize("shape,patch", [((20, 22, 19), (8, 8, 8)), ((17, 16, 15), (5, 7, 6)), ((21, 18), (8, 8))])
@pytest.mark.parametrize("stored", [False, True])
def test_opencl_gather_patches_matches_numpy(clk, shape, patch, stored):
    rng = np.random.default_rng()
    src = rng.normal(size=shape).astype(np.float32)
    corners = _corners(rng, shape, patch, 7)
    got = clk.gather_patches_numpy(src, corners, patch, stored=stored)
    np.testing.assert_array_equal(got, gather_patches_reference(src, corners, patch, stored=stored))
    if stored:  # the stored layout is numpy's ifftshift of the centred one
        np.testing.assert_array_equal(got, gather_patches_reference(np.fft.fftshift(src), corners, patch))


@pytest.mark.opencl
@pytest.mark.parametrize("shape,patch", [((20, 22, 19), (8, 8, 8)), ((21, 18), (8, 8))])
@pytest.mark.parametrize("mode", ["observed", "estimate"])
def test_opencl_scatter_and_blend_match_numpy(clk, shape, patch, mode):
    rng = np.random.default_rng()
    corners = _corners(rng, shape, patch, 9)  # overlapping patches
    preds = rng.uniform(0, 1e4, (9,) + patch).astype(np.float32)
    preds[:, 0] = -1  # negative predictions are clipped to 0
    weights = (rng.uniform(0.05, 1, (9,) + patch) * (rng.random((9,) + patch) < 0.6)).astype(np.float32)
    acc, wsum = clk.scatter_blend_numpy(shape, preds, weights, corners)
    ra, rw = scatter_blend_reference(shape, preds, weights, corners)
    np.testing.assert_allclose(acc, ra, rtol=2e-5, atol=1e-5)
    np.testing.assert_allclose(wsum, rw, rtol=2e-5, atol=1e-6)
    iobs = rng.poisson(30, shape).astype(np.float32)
    got = clk.blend_write_iobs_numpy(iobs, ra.astype(np.float32), rw.astype(np.float32), mode)
    np.testing.assert_allclose(got, blend_write_iobs_reference(iobs, ra, rw, mode), rtol=2e-5)
    assert np.array_equal(got[np.fft.ifftshift(rw) == 0], iobs[np.fft.ifftshift(rw) == 0])


@pytest.mark.opencl
def test_opencl_gather_scatter_reproduce_inpaint(clk):
    """Gather from PyNX's stored iobs, the model on the host, scatter + blend on the device:
    the gap values of :func:`inpaint` (its plan, window and trusted voxels) to float32 rounding."""
    import torch
    from pynx_dlgap.inpaint.infer import blend_window, inpaint, plan_patches
    from pynx_dlgap.inpaint.patches import prepare_batch, to_counts
    from pynx_dlgap.simulate.gaps import cross
    from test_infer import pattern, tiny
    rng = np.random.default_rng()
    shape = (32, 48, 44)
    I = pattern(shape, int(rng.integers(0, 1000)))
    m = cross(5, int(rng.integers(12, 30)), int(rng.integers(12, 26))).mask(shape)
    model = tiny(perturb=True, seed=int(rng.integers(0, 100)))
    ref = inpaint(I, m, model, progress=False)
    stored = np.fft.ifftshift(np.where(m, np.float32(-1.05e38), I)).astype(np.float32)
    plan = plan_patches(m, (32, 32, 32))
    corners = [tuple(int(v) for v in plan.corners[i]) for i in range(len(plan))]
    P = (32, 32, 32)
    patches = clk.gather_patches_numpy(stored, corners, P, stored=True)
    M = np.stack([m[plan.slices(i)] for i in range(len(plan))])
    x, st = prepare_batch(np.where(M, 0, patches), M)
    with torch.inference_mode():
        preds = to_counts(model(x), st).numpy()
    win = blend_window(P)
    weights = np.stack([win * (M[i] & plan.trusted(i)) for i in range(len(plan))]).astype(np.float32)
    acc, wsum = clk.scatter_blend_numpy(shape, preds, weights, corners)
    out = np.fft.fftshift(clk.blend_write_iobs_numpy(stored, acc, wsum))
    np.testing.assert_allclose(out[m], ref[m], rtol=1e-4, atol=1e-3)
    assert np.array_equal(out[~m], I[~m])


def test_cuda_kernels_run_on_gpu():
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no GPU")
    except Exception:
        pytest.skip("no GPU")
    from pynx_dlgap.gpu import cuda_module
    mod = cuda_module()
    rng = np.random.default_rng()
    shape = (15, 16, 17)
    I, ph, m = _data(shape, rng)
    out = cupy.empty(shape, cupy.complex64)
    n = int(np.prod(shape))
    mod.get_function("dl_phasor_amplitude")(((n + 255) // 256,), (256,),
                                            (out, cupy.asarray(I), cupy.asarray(ph), cupy.asarray(m.astype(np.int8)),
                                             np.int32(15), np.int32(16), np.int32(17)))
    np.testing.assert_allclose(cupy.asnumpy(out), phasor_amplitude_reference(I, ph, m), rtol=2e-6, atol=2e-5)
    # gather (stored layout) and scatter of overlapping patches
    src = rng.normal(size=shape).astype(np.float32)
    P = (8, 8, 8)
    corners = _corners(rng, shape, P, 6)
    c3 = cupy.asarray(np.asarray(corners, np.int32))
    out = cupy.empty((6,) + P, cupy.float32)
    nt = 6 * 512
    mod.get_function("dl_gather_patches")(((nt + 255) // 256,), (256,),
                                          (out, cupy.asarray(src), c3, *(np.int32(v) for v in P + shape),
                                           np.int32(1), np.int32(6)))
    np.testing.assert_array_equal(cupy.asnumpy(out), gather_patches_reference(src, corners, P, stored=True))
    preds = rng.uniform(0, 1e3, (6,) + P).astype(np.float32)
    w = rng.uniform(0, 1, (6,) + P).astype(np.float32)
    acc, ws = cupy.zeros(shape, cupy.float32), cupy.zeros(shape, cupy.float32)
    pd, wd = cupy.asarray(preds), cupy.asarray(w)
    for b, lo in enumerate(corners):
        mod.get_function("dl_scatter_patch")((2,), (256,), (acc, ws, pd, wd, np.int32(b), *(np.int32(v) for v in lo),
                                                            *(np.int32(v) for v in P + shape)))
    ra, rw = scatter_blend_reference(shape, preds, w, corners)
    np.testing.assert_allclose(cupy.asnumpy(acc), ra, rtol=2e-5, atol=1e-5)
    np.testing.assert_allclose(cupy.asnumpy(ws), rw, rtol=2e-5, atol=1e-6)
