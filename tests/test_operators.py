"""The ``DLInpaint`` PyNX operator (CPU and OpenCL families) with real PyNX.

Reference: an *untrained residual* UNet returns its log-linear prefill, so on a
cross gap the operator must reproduce ``fill_loglinear`` (independent code).
"""
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("pynx.cdi.cpu_operator", reason="real PyNX is needed (make setup)")

from pynx_dlgap.evaluate.phasing import import_pynx_cdi  # noqa: E402
from pynx_dlgap.inpaint.baselines import fill_loglinear  # noqa: E402
from pynx_dlgap.models import WeightsError, build_model  # noqa: E402
from pynx_dlgap.operators import DLInpaint, ReleaseFill, decode_iobs  # noqa: E402
from pynx_dlgap.simulate import simulate_3d  # noqa: E402
from pynx_dlgap.simulate.gaps import cross  # noqa: E402

pytestmark = pytest.mark.pynx

SHAPE = (48, 48, 48)


@pytest.fixture(scope="module")
def tiny():
    import torch
    torch.manual_seed(0)
    from conftest import TINY_INPAINT
    return build_model(TINY_INPAINT)


@pytest.fixture(scope="module")
def data():
    d = simulate_3d(0, SHAPE, "measured", floor=0.0, diffuse=0.0)
    I = np.asarray(d["intensity"], dtype=np.float32)
    m = cross(4, 20, 26).mask(SHAPE)
    ref = fill_loglinear(I, m)
    return I, m, ref


def _cdi(pc, I, m):
    return pc.CDI(np.fft.fftshift(I).copy(), mask=np.fft.fftshift(m).astype(np.int8))


def test_cpu_observed_matches_loglinear(tiny, data):
    I, m, ref = data
    pc = import_pynx_cdi("cpu")
    cdi = _cdi(pc, I, m)
    op = DLInpaint(model=tiny, family="cpu")
    assert op.family == "cpu"
    cdi = op * cdi
    got = cdi.get_iobs(shift=True)
    np.testing.assert_allclose(got[m], ref[m], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(got[~m], I[~m])
    info = cdi.dl_inpaint_info
    assert info["voxels_filled"] == int(m.sum()) and info["patches"] > 0 and info["mode"] == "observed"
    assert cdi.nb_observed_points == m.size
    assert cdi.iobs_sum == pytest.approx(float(got.astype(np.float64).sum()), rel=1e-4)


def test_cpu_estimate_mode_and_free_pixels(tiny, data):
    I, m, ref = data
    pc = import_pynx_cdi("cpu")
    stored = np.fft.fftshift(I).copy()
    free = np.zeros(SHAPE, bool)
    free[2:4, 5:9, 40:44] = True  # measured free pixels, stored as -(I+1): must stay untouched
    free &= ~m
    stored[np.fft.fftshift(free)] = -(np.fft.fftshift(I)[np.fft.fftshift(free)] + 1)
    cdi = pc.CDI(stored, mask=np.fft.fftshift(m).astype(np.int8))
    before = cdi.get_iobs(shift=True).copy()
    cdi = DLInpaint(model=tiny, family="cpu", mode="estimate") * cdi
    got = cdi.get_iobs(shift=True)
    assert np.all((got[m] > -1e38) & (got[m] <= -1e19))
    np.testing.assert_allclose(-got[m] / 1e19 - 1, ref[m], rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(got[~m], before[~m])
    inten, to_fill = decode_iobs(np.fft.ifftshift(got))
    assert np.array_equal(np.fft.fftshift(to_fill), m)
    # estimated pixels are re-filled (treated as masked); back to observed values
    cdi = DLInpaint(model=tiny, family="cpu") * cdi
    np.testing.assert_allclose(cdi.get_iobs(shift=True)[m], ref[m], rtol=1e-4, atol=1e-6)


def test_cpu_chain_with_er(tiny, data):
    I, m, ref = data
    pc = import_pynx_cdi("cpu")
    cdi = _cdi(pc, I, m)
    cdi = pc.ER() ** 20 * DLInpaint(model=tiny, family="cpu") * cdi
    obj = cdi.get_obj()
    assert obj.shape == SHAPE and np.all(np.isfinite(obj)) and np.abs(obj).max() > 0
    np.testing.assert_allclose(cdi.get_iobs(shift=True)[m], ref[m], rtol=1e-4, atol=1e-6)


def test_cpu_release_fill_masks_the_filled_voxels(tiny, data):
    """DLInpaint records what it filled; ReleaseFill masks exactly those voxels mid-chain,
    as PyNX's own set_mask would, and keeps the rest and the bookkeeping right."""
    I, m, ref = data
    pc = import_pynx_cdi("cpu")
    cdi = pc.ER() ** 5 * DLInpaint(model=tiny, family="cpu") * _cdi(pc, I, m)
    np.testing.assert_array_equal(np.fft.fftshift(cdi.dl_inpaint_filled), m)
    twin = pc.CDI(np.fft.fftshift(I).copy())  # the reference: PyNX's own set_mask, mid-life
    twin.set_mask(np.fft.fftshift(m).astype(np.int8))
    cdi = pc.ER() ** 5 * ReleaseFill(family="cpu") * cdi
    np.testing.assert_array_equal(cdi.iobs, twin.iobs)
    assert cdi.release_fill_info["voxels_released"] == int(m.sum())
    assert cdi.nb_observed_points == m.size - int(m.sum())
    assert cdi.iobs_sum == pytest.approx(float(twin.iobs_sum), rel=1e-6)
    assert cdi.iobs_sum == pytest.approx(float(I[~m].astype(np.float64).sum()), rel=1e-5)
    assert np.all(np.isfinite(cdi.get_obj()))
    # an explicit mask, on a CDI DLInpaint never touched
    extra = np.zeros(SHAPE, bool)
    extra[3:5, 3:5, 3:5] = True
    c2 = ReleaseFill(mask=extra, family="cpu") * pc.CDI(np.fft.fftshift(I).copy())
    got = c2.get_iobs(shift=True)
    assert np.all(got[extra] <= -1e38) and np.array_equal(got[~extra], I[~extra])


def test_cpu_release_fill_restore_writes_the_fill_back(tiny, data):
    """ReleaseFill(restore=True) undoes the last release exactly (a further --nb_run run of the
    chain starts from the same data), and PyNX's counts follow."""
    I, m, ref = data
    pc = import_pynx_cdi("cpu")
    cdi = DLInpaint(model=tiny, family="cpu") * _cdi(pc, I, m)
    filled = cdi.iobs.copy()
    counts = (cdi.nb_observed_points, float(cdi.iobs_sum))
    cdi = ReleaseFill(family="cpu") * cdi
    assert cdi.nb_observed_points == m.size - int(m.sum())
    cdi = pc.ER() ** 3 * ReleaseFill(restore=True, family="cpu") * cdi
    np.testing.assert_array_equal(cdi.iobs, filled)
    assert cdi.release_fill_info == {"voxels_restored": int(m.sum())}
    assert (cdi.nb_observed_points, float(cdi.iobs_sum)) == pytest.approx(counts, rel=1e-6)
    assert np.all(np.isfinite(cdi.get_obj()))
    before = cdi.iobs.copy()
    with pytest.raises(ValueError, match="nothing was released"):  # restored already
        ReleaseFill(restore=True, family="cpu") * cdi
    with pytest.raises(ValueError, match="takes no mask"):
        ReleaseFill(mask=m, restore=True, family="cpu")
    np.testing.assert_array_equal(cdi.iobs, before)
    cdi = ReleaseFill(family="cpu") * cdi  # the recorded fill can be released again
    assert cdi.release_fill_info["voxels_released"] == int(m.sum())


def test_release_fill_refuses_before_any_change(data):
    I, m, ref = data
    pc = import_pynx_cdi("cpu")
    cdi = pc.CDI(np.fft.fftshift(I).copy())
    before = cdi.iobs.copy()
    with pytest.raises(ValueError, match="no DLInpaint fill"):
        ReleaseFill(family="cpu") * cdi
    with pytest.raises(ValueError, match="mask shape"):
        ReleaseFill(mask=m[:-1], family="cpu") * cdi
    np.testing.assert_array_equal(cdi.iobs, before)


def test_bad_check_rule_is_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="self-check rule"):  # before the weights are read (they do not exist)
        DLInpaint(weights=tmp_path / "missing.safetensors", family="cpu", check="majority")


def test_explicit_mask_and_noop_warning(tiny, data):
    I, m, ref = data
    pc = import_pynx_cdi("cpu")
    cdi = pc.CDI(np.fft.fftshift(I).copy())  # nothing masked
    with pytest.warns(UserWarning, match="nothing to inpaint"):
        cdi = DLInpaint(model=tiny, family="cpu") * cdi
    np.testing.assert_array_equal(cdi.get_iobs(shift=True), I)
    assert cdi.dl_inpaint_info["voxels_filled"] == 0
    cdi = DLInpaint(model=tiny, family="cpu", mask=m) * cdi  # explicit mask: these voxels are refilled
    np.testing.assert_allclose(cdi.get_iobs(shift=True)[m], ref[m], rtol=1e-4, atol=1e-6)


def test_default_weights_missing_raises(data, tmp_path, monkeypatch):
    from pynx_dlgap.inpaint import infer
    monkeypatch.setattr(infer, "DEFAULT_WEIGHTS", tmp_path / "weights" / "inpaint3d.safetensors")
    with pytest.raises(WeightsError, match="missing"):
        DLInpaint(family="cpu")


def test_without_pynx_raises_pynx_unavailable():
    code = ("import sys; sys.modules['pynx'] = None\n"
            "import pynx_dlgap.operators as o\n"
            "from pynx_dlgap.pynx_backend import PyNXUnavailable\n"
            "try:\n    o.DLInpaint()\nexcept PyNXUnavailable as e:\n    print('OK', e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("OK") and "make setup" in r.stdout


@pytest.mark.opencl
def test_opencl_chain_matches_cpu(tiny, data, pynx_opencl):
    I, m, ref = data
    pcl, pc = pynx_opencl
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        op = DLInpaint(model=tiny, family="opencl")
        assert op.family == "opencl"
        cdi = _cdi(pc, I, m)
        cdi = pcl.ER() ** 5 * op * cdi
        obj = cdi.get_obj()
    assert np.all(np.isfinite(obj))
    cpu = DLInpaint(model=tiny, family="cpu") * _cdi(pc, I, m)
    np.testing.assert_array_equal(cdi.iobs, cpu.iobs)
    np.testing.assert_array_equal(cdi._cl_iobs.get(), cpu.iobs)  # device copy coherent
    np.testing.assert_allclose(cdi.get_iobs(shift=True)[m], ref[m], rtol=1e-4, atol=1e-6)
    with warnings.catch_warnings():  # ReleaseFill masks the fill again, on the host and the device
        warnings.simplefilter("ignore", DeprecationWarning)
        cdi = pcl.ER() ** 3 * ReleaseFill(family="opencl") * cdi
        assert np.all(np.isfinite(cdi.get_obj()))
    twin = _cdi(pc, I, m)
    np.testing.assert_array_equal(cdi.iobs, twin.iobs)
    np.testing.assert_array_equal(cdi._cl_iobs.get(), twin.iobs)
    with warnings.catch_warnings():  # ReleaseFill(restore=True): the fill back, host and device
        warnings.simplefilter("ignore", DeprecationWarning)
        cdi = pcl.ER() ** 2 * ReleaseFill(restore=True, family="opencl") * cdi
    np.testing.assert_array_equal(cdi.iobs, cpu.iobs)
    np.testing.assert_array_equal(cdi._cl_iobs.get(), cpu.iobs)


def test_default_family_is_pynx_choice(tiny):
    from pynx_dlgap.pynx_backend import _family_of, has_opencl_device, import_pynx
    fam = _family_of(import_pynx())
    if fam == "opencl" and not has_opencl_device():
        pytest.skip("PyNX selected OpenCL but there is no OpenCL device")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert DLInpaint(model=tiny).family == fam


@pytest.mark.opencl
def test_mixed_families_keep_host_and_device_coherent(tiny, data, pynx_opencl):
    I, m, ref = data
    pcl, pc = pynx_opencl
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        cdi = pcl.ER() ** 2 * _cdi(pc, I, m)
        o1 = cdi._cl_obj.get()
        cdi = DLInpaint(model=tiny, family="opencl") * cdi  # device object must not be reset from the host
        assert np.array_equal(o1, cdi._cl_obj.get())
        assert np.array_equal(cdi._cl_iobs.get(), cdi.iobs)
        cdi = pcl.ER() ** 2 * cdi
        o2 = cdi._cl_obj.get()
        cdi = DLInpaint(model=tiny, family="cpu", mask=m) * cdi  # CPU op inside an OpenCL chain
        assert np.array_equal(o2, cdi._obj)  # set_iobs pulled the newer device object
        cdi = pcl.ER() ** 2 * cdi  # host is newer: iobs re-uploaded
        assert np.array_equal(cdi._cl_iobs.get(), cdi.iobs)
        assert np.all(np.isfinite(cdi.get_obj()))
    np.testing.assert_allclose(cdi.get_iobs(shift=True)[m], ref[m], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("mode,explicit", [("observed", False), ("estimate", True)])
def test_device_fill_matches_host_fill(tiny, data, mode, explicit):
    """The CUDA op's device step (_fill_tensor), run here on a CPU tensor that stands for the
    torch view of cdi._cu_iobs, writes the same values in place as the host step (_new_iobs)."""
    import torch
    I, m, _ = data
    pc = import_pynx_cdi("cpu")
    rng = np.random.default_rng()
    m = m | (rng.random(m.shape) < 0.002)  # dead pixels too (log-linear by default)
    stored = np.fft.fftshift(I).copy()
    ms = np.fft.fftshift(m)
    stored[ms] = -1.05e38
    free = (rng.random(stored.shape) < 0.01) & ~ms  # free pixels: -(I+1), measured for the model
    stored[free] = -(stored[free] + 1)
    cdi = pc.CDI(stored.copy())
    op = DLInpaint(model=tiny, family="cpu", mode=mode, mask=m if explicit else None)
    ref = op._new_iobs(cdi)
    s = torch.from_numpy(cdi.iobs.copy())
    before = cdi.iobs.copy()
    out, info = op._fill_tensor(s, cdi.iobs)
    assert out is s  # in place
    np.testing.assert_array_equal(cdi.iobs, before)  # the host copy is only read
    got = s.numpy()
    np.testing.assert_array_equal(got[~ms], ref[~ms])
    np.testing.assert_allclose(got[ms], ref[ms], rtol=1e-5)
    assert info["voxels_filled"] == int(m.sum()) and info["fill"] == "dl" and info["patches"] > 0


def test_device_fill_with_self_check_matches_host_fill(data):
    """With the self-check on, the device step (_fill_tensor) judges the DL fill it computed itself
    and writes the same choice and values as the host step (_new_iobs, through inpaint(check=True))."""
    import torch
    from test_infer import tiny as tiny_model
    I, m, _ = data
    pc = import_pynx_cdi("cpu")
    stored = np.fft.fftshift(I).copy()
    ms = np.fft.fftshift(m)
    stored[ms] = -1.05e38
    cdi = pc.CDI(stored.copy())
    model = tiny_model(perturb=True, seed=int(np.random.default_rng().integers(1000)))  # DL differs from log-linear
    op = DLInpaint(model=model, family="cpu", mode="observed", check=True)
    ref = op._new_iobs(cdi)
    host = op._info
    s = torch.from_numpy(cdi.iobs.copy())
    out, info = op._fill_tensor(s, cdi.iobs)
    assert info["fill"] == host["fill"] and info["check"]["choice"] == host["check"]["choice"]
    np.testing.assert_allclose(info["check"]["acf_outside"], host["check"]["acf_outside"], rtol=1e-4)
    assert info["check"]["mirrors"] == host["check"]["mirrors"]
    np.testing.assert_allclose(info["check"]["mirror_ratios"], host["check"]["mirror_ratios"], rtol=1e-4)
    got = s.numpy()
    np.testing.assert_array_equal(got[~ms], ref[~ms])
    np.testing.assert_allclose(got[ms], ref[ms], rtol=1e-5)


def test_cuda_family_needs_a_gpu(tiny):
    import torch
    from pynx_dlgap.pynx_backend import CUDAUnavailable
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the CUDA family is tested in test_cuda_family.py")
    with pytest.raises(CUDAUnavailable, match="GPU"):
        DLInpaint(model=tiny, family="cuda")
