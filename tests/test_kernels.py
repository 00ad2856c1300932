"""The device kernels (``pynx_dlgap/kernels``): OpenCL run on the PoCL CPU platform against
the numpy references on freshly drawn data; CUDA compiled with nvcc (fails on a compile
error), and run through CuPy when a GPU is there."""
import shutil
import subprocess

import numpy as np
import pytest

from pynx_dlgap.gpu import (KERNEL_DIR, kernel_source, phasor_amplitude_reference, write_iobs_reference)

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
    assert ".entry dl_write_iobs" in ptx and ".entry dl_phasor_amplitude" in ptx


def test_sources_define_the_same_kernels():
    for name in ("dl_write_iobs", "dl_phasor_amplitude"):
        assert name in kernel_source("opencl") and name in kernel_source("cuda")


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
