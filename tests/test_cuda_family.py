"""The CUDA family of DLInpaint / DLPhaseInit on a GPU, with real PyNX (pycuda + pyvkfft).

Skipped where torch sees no GPU or pycuda is missing (CI has neither); run on a GPU
machine with ``scripts/gpu_check.sh``. Checks: PyNX's ``GPUArray`` and the torch tensor
share one device pointer (zero copy, both directions), and the operators give the CPU
family's results (the untrained tiny inpainting model equals its log-linear prefill:
an independent numpy reference).
"""
import warnings

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("torch sees no CUDA GPU", allow_module_level=True)
pytest.importorskip("pycuda.driver", reason="pycuda is not installed")
pytest.importorskip("pynx.cdi.cu_operator", reason="PyNX's CUDA family cannot be imported")

from conftest import TINY_INPAINT  # noqa: E402
from pynx_dlgap.evaluate.phasing import import_pynx_cdi  # noqa: E402
from pynx_dlgap.gpu import torch_view  # noqa: E402
from pynx_dlgap.inpaint.baselines import fill_loglinear  # noqa: E402
from pynx_dlgap.models import build_model  # noqa: E402
from pynx_dlgap.operators import DLInpaint, DLPhaseInit  # noqa: E402
from pynx_dlgap.pynx_backend import init_pynx_cuda  # noqa: E402
from pynx_dlgap.simulate import simulate_2d, simulate_3d  # noqa: E402
from pynx_dlgap.simulate.gaps import cross  # noqa: E402

pytestmark = [pytest.mark.pynx, pytest.mark.gpu]


@pytest.fixture(scope="module")
def shared():
    return init_pynx_cuda()


def _cdi(pc, I, m):
    return pc.CDI(np.fft.fftshift(I).copy(), mask=np.fft.fftshift(m).astype(np.int8))


def test_pynx_and_torch_share_the_primary_context(shared):
    assert shared
    pu = import_pynx_cdi("cuda")  # noqa: F841 (PyNX's CUDA family imports)
    import pycuda.driver as cu_drv
    from pynx.cdi.cu_operator import default_processing_unit as pu
    assert int(pu.cu_ctx.handle) == int(cu_drv.Device(torch.cuda.current_device()).retain_primary_context().handle)


@pytest.mark.parametrize("dtype", [np.float32, np.complex64, np.int8])
def test_torch_view_is_zero_copy_both_ways(shared, dtype):
    import pycuda.gpuarray as cua
    rng = np.random.default_rng()
    a0 = (rng.normal(size=(5, 6, 7)) * 10).astype(dtype)
    if np.iscomplexobj(a0):
        a0 = a0 + 1j * rng.normal(size=a0.shape).astype(np.float32)
    a = cua.to_gpu(a0)
    t = torch_view(a)
    assert t.data_ptr() == int(a.gpudata) and tuple(t.shape) == a0.shape
    np.testing.assert_array_equal(t.cpu().numpy(), a0)
    t.add_(t.new_ones(()) if dtype == np.int8 else 1)  # torch writes, pycuda reads
    torch.cuda.synchronize()
    np.testing.assert_array_equal(a.get(), a0 + 1)
    a.fill(3)  # pycuda writes, torch reads
    import pycuda.driver as cu_drv
    cu_drv.Context.synchronize()
    assert bool((t == 3).all())


def test_cuda_dlinpaint_on_device_matches_loglinear_and_cpu(shared):
    torch.manual_seed(0)
    tiny = build_model(TINY_INPAINT)
    shape = (64, 64, 64)
    seed = int(np.random.default_rng().integers(1_000_000))
    I = np.asarray(simulate_3d(seed, shape, "measured", floor=0.0, diffuse=0.0)["intensity"], np.float32)
    m = cross(6, 28, 36).mask(shape)
    pcu, pc = import_pynx_cdi("cuda"), import_pynx_cdi("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        op = DLInpaint(model=tiny, family="cuda")
        assert op.family == "cuda" and op.shared_context
        cdi = op * _cdi(pc, I, m)
        info = cdi.dl_inpaint_info
        dev_iobs = cdi._cu_iobs.get()
        cdi = pcu.ER() ** 5 * cdi
        assert np.all(np.isfinite(cdi.get_obj()))
    assert info["zero_copy"] and info["device_pointer"] == info["torch_pointer"]
    assert info["device"].startswith("cuda") and info["voxels_filled"] == int(m.sum())
    np.testing.assert_array_equal(dev_iobs, cdi.iobs)  # the host mirror
    got = cdi.get_iobs(shift=True)
    np.testing.assert_array_equal(got[~m], I[~m])
    ref = fill_loglinear(I, m)
    np.testing.assert_allclose(np.log1p(got[m].astype(np.float64)), np.log1p(ref[m].astype(np.float64)), atol=2e-3)
    cpu = DLInpaint(model=tiny, family="cpu") * _cdi(pc, I, m)
    np.testing.assert_allclose(np.log1p(got[m].astype(np.float64)),
                               np.log1p(cpu.get_iobs(shift=True)[m].astype(np.float64)), atol=2e-3)
    # ReleaseFill: the filled voxels masked on the device and in the host mirror, the rest kept
    from pynx_dlgap.operators import ReleaseFill
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        cdi = pcu.ER() ** 2 * ReleaseFill(family="cuda") * cdi
        assert np.all(np.isfinite(cdi.get_obj()))
    for arr in (cdi._cu_iobs.get(), cdi.iobs):
        a = np.fft.fftshift(arr)
        assert np.all(a[m] <= -1e38) and np.array_equal(a[~m], I[~m])
    cdi = ReleaseFill(restore=True, family="cuda") * cdi  # the fill written back, device and host
    for arr in (cdi._cu_iobs.get(), cdi.iobs):
        np.testing.assert_array_equal(arr, dev_iobs)


def test_cuda_dlinpaint_tta_matches_cpu(shared):
    """The test-time ensemble (tta=4) on the GPU gives the CPU family's fill (a perturbed tiny
    model, so that the views differ)."""
    torch.manual_seed(1)
    tiny = build_model(TINY_INPAINT)
    with torch.no_grad():
        for p in tiny.parameters():
            p.add_(0.05 * torch.randn_like(p))
    shape = (48, 48, 48)
    seed = int(np.random.default_rng().integers(1_000_000))
    I = np.asarray(simulate_3d(seed, shape, "measured", floor=0.0, diffuse=0.0)["intensity"], np.float32)
    m = cross(4, 20, 26).mask(shape)
    pc = import_pynx_cdi("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        gpu = DLInpaint(model=tiny, family="cuda", tta=4) * _cdi(pc, I, m)
    assert gpu.dl_inpaint_info["tta"] == 4
    got = np.log1p(gpu.get_iobs(shift=True)[m].astype(np.float64))
    ref = np.log1p((DLInpaint(model=tiny, family="cpu", tta=4) * _cdi(pc, I, m)).get_iobs(shift=True)[m]
                   .astype(np.float64))
    one = np.log1p((DLInpaint(model=tiny, family="cpu") * _cdi(pc, I, m)).get_iobs(shift=True)[m].astype(np.float64))
    np.testing.assert_allclose(got, ref, atol=2e-3)
    assert np.abs(one - ref).max() > 1e-2  # the ensemble differs from the model alone


@pytest.mark.parametrize("bf16", [False, True])
def test_cuda_dlphaseinit_on_device_matches_cpu(shared, bf16):
    """bf16: the GPU start under bfloat16 autocast against the CPU float32 start (close, not equal)."""
    from test_phase import TINY_PHASE2
    torch.manual_seed(0)
    tiny = build_model(TINY_PHASE2)
    shape = (128, 128)
    seed = int(np.random.default_rng().integers(1_000_000))
    d = simulate_2d(seed, shape, "measured", floor=0.0, diffuse=0.0, gaps="none", crop_shift=[0, 0], phase_range=6.0)
    I = np.asarray(d["intensity"], np.float32)
    m = cross(3, 40, 90).mask(shape)
    pcu, pc = import_pynx_cdi("cuda"), import_pynx_cdi("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        cdi = DLPhaseInit(model=tiny, family="cuda", bf16=bf16) * _cdi(pc, I, m)
        info = cdi.dl_phase_init_info
        obj = cdi.get_obj(shift=True)
        sup = cdi.get_support(shift=True).astype(bool)
        cdi = pcu.ER() ** 5 * cdi
        assert np.all(np.isfinite(cdi.get_obj()))
    assert info["zero_copy"] and info["device"].startswith("cuda")
    cpu = DLPhaseInit(model=tiny, family="cpu") * _cdi(pc, I, m)
    ref = cpu.get_obj(shift=True)
    ncc = abs(np.vdot(obj, ref)) / np.linalg.norm(obj) / np.linalg.norm(ref)
    assert ncc > (0.98 if bf16 else 1 - 1e-4)
    assert np.count_nonzero(sup != cpu.get_support(shift=True).astype(bool)) <= max(2, sup.size // (50 if bf16 else 2000))


def test_cuda_dlphaseinit_bins_on_the_host_like_the_cpu_family(shared):
    """A 256^2 pattern of a small crystal: the CUDA family bins it 2x2 on the host (one copy each
    way) and writes the start the CPU family writes into PyNX's GPU arrays."""
    from test_phase import TINY_PHASE2
    from pynx_dlgap.evaluate.analytic import analytic_crystal
    torch.manual_seed(0)
    tiny = build_model(TINY_PHASE2)
    s = analytic_crystal(int(np.random.default_rng().integers(100_000)), 2, 256, 3.0, oversampling=(14, 16))
    I, m = np.asarray(s["intensity"], np.float32), np.zeros((256, 256), bool)
    m[120:124, :] = True
    pc = import_pynx_cdi("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        cdi = DLPhaseInit(model=tiny, family="cuda") * _cdi(pc, I, m)
        info = cdi.dl_phase_init_info
        obj, sup = cdi.get_obj(shift=True), cdi.get_support(shift=True).astype(bool)
    assert info["binned_on_host"] and info["bin"] == [2, 2] and info["binned_shape"] == [127, 127]
    cpu = DLPhaseInit(model=tiny, family="cpu") * _cdi(pc, I, m)
    ref = cpu.get_obj(shift=True)
    assert abs(np.vdot(obj, ref)) / np.linalg.norm(obj) / np.linalg.norm(ref) > 1 - 1e-4
    assert np.count_nonzero(sup != cpu.get_support(shift=True).astype(bool)) <= 2


@pytest.mark.parametrize("bf16", [False, True])
def test_cuda_graph_phase_start_equals_eager_and_is_never_stale(shared, bf16):
    """DLPhaseInit(cuda_graph=True) gives the eager start on two different patterns in turn (the
    graph's static output is copied out, not returned stale), reuses its capture, and captures
    again after an in-place change of the weights."""
    from test_phase import TINY_PHASE3
    from pynx_dlgap.phase.predict import _GRAPHS
    torch.manual_seed(0)
    tiny = build_model(TINY_PHASE3)
    shape = (64, 64, 64)
    pc = import_pynx_cdi("cpu")
    seeds = np.random.default_rng().integers(1_000_000, size=2)
    pats = []
    for k, sd in enumerate(seeds):
        d = simulate_3d(int(sd), shape, "measured", floor=0.0, diffuse=0.0, gaps="none", crop_shift=[0, 0, 0],
                        phase_range=3.0 + 3 * k)
        pats.append((np.asarray(d["intensity"], np.float32), cross(4, 30, 36).mask(shape)))

    def start(I, m, graph):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            cdi = DLPhaseInit(model=tiny, family="cuda", bf16=bf16, cuda_graph=graph) * _cdi(pc, I, m)
        assert cdi.dl_phase_init_info["cuda_graph"] == graph
        return cdi.get_obj(shift=True)

    def ncc(a, b):
        return abs(np.vdot(a, b)) / np.linalg.norm(a) / np.linalg.norm(b)

    got = [start(I, m, True) for I, m in pats]
    calls = list(_GRAPHS[tiny].values())
    assert len(calls) == 1
    ref = [start(I, m, False) for I, m in pats]
    tol = 1e-3 if bf16 else 1e-4  # fp32: cuDNN may pick other algorithms under capture (H100: 1 - 1e-5)
    for g, r in zip(got, ref):
        assert ncc(g, r) > 1 - tol
    assert ncc(got[0], got[1]) < 0.9  # two different crystals: a stale output would fail above
    start(*pats[0], True)
    assert list(_GRAPHS[tiny].values())[0] is calls[0]  # replayed, not captured again
    with torch.no_grad():
        for p in tiny.parameters():
            p.mul_(1.5)
    assert ncc(start(*pats[1], True), start(*pats[1], False)) > 1 - tol
    assert list(_GRAPHS[tiny].values())[0] is not calls[0]
