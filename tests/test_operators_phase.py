"""The ``DLPhaseInit`` PyNX operator (CPU and OpenCL families) with real PyNX.

Reference: the start object and support built directly with numpy
(:func:`start_object`, :func:`support_from_object` on the centred pattern),
compared with what the operator leaves in the PyNX ``CDI`` (fft-shifted storage).
"""
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("pynx.cdi.cpu_operator", reason="real PyNX is needed (make setup)")

from pynx_dlgap.evaluate.phasing import import_pynx_cdi  # noqa: E402
from pynx_dlgap.models import build_model  # noqa: E402
from pynx_dlgap.operators import DLPhaseInit  # noqa: E402
from pynx_dlgap.phase.predict import predict_phase, start_object, support_from_object  # noqa: E402
from pynx_dlgap.simulate import simulate_2d  # noqa: E402
from pynx_dlgap.simulate.gaps import cross  # noqa: E402

pytestmark = pytest.mark.pynx

SHAPE = (128, 128)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    from test_phase import TINY_PHASE2
    return build_model(TINY_PHASE2)


@pytest.fixture(scope="module")
def data():
    seed = int(np.random.default_rng().integers(1_000_000))
    d = simulate_2d(seed, SHAPE, "measured", floor=0.0, diffuse=0.0, gaps="none", crop_shift=[0, 0],
                    phase_range=6.0)
    I = np.asarray(d["intensity"], dtype=np.float32)
    m = cross(3, 40, 90).mask(SHAPE)
    return I, m, d


def _cdi(pc, I, m):
    return pc.CDI(np.fft.fftshift(I).copy(), mask=np.fft.fftshift(m).astype(np.int8))


def _ncc(a, b):
    return abs(np.vdot(a, b)) / np.linalg.norm(a) / np.linalg.norm(b)


def test_cpu_sets_start_object_and_support(tiny, data):
    I, m, _ = data
    pc = import_pynx_cdi("cpu")
    I0 = I.copy()
    cdi = DLPhaseInit(model=tiny, family="cpu") * _cdi(pc, I, m)
    ref = start_object(I, predict_phase(I, m, model=tiny), m)
    got = cdi.get_obj(shift=True)
    assert _ncc(got, ref) > 1 - 1e-5  # same object, up to PyNX's ScaleObj factor
    np.testing.assert_array_equal(cdi.get_support(shift=True).astype(bool), support_from_object(ref))
    np.testing.assert_array_equal(I, I0)
    info = cdi.dl_phase_init_info
    assert info["region_shape"] == [128, 128] and info["support_points"] > 0


def test_chain_runs_and_estimated_pixels_are_used(tiny, data):
    I, m, _ = data
    pc = import_pynx_cdi("cpu")
    # an 'estimated' encoding in the gap: the operator must use the estimate as intensity
    stored = np.fft.fftshift(I).copy()
    ms = np.fft.fftshift(m)
    stored[ms] = -(stored[ms] + 1) * 1e19
    cdi = pc.CDI(stored)
    cdi = pc.ER() ** 20 * pc.RAAR() ** 20 * DLPhaseInit(model=tiny, family="cpu") * cdi
    assert np.isfinite(cdi.get_obj()).all()
    cdi2 = DLPhaseInit(model=tiny, family="cpu") * pc.CDI(np.fft.fftshift(I).copy())
    full = start_object(I, predict_phase(I, None, model=tiny))
    assert _ncc(cdi2.get_obj(shift=True), full) > 1 - 1e-5


def test_given_support_and_dims_mismatch(tiny, data):
    I, m, _ = data
    pc = import_pynx_cdi("cpu")
    sup = np.zeros(SHAPE, bool)
    sup[40:90, 50:80] = True
    cdi = DLPhaseInit(model=tiny, family="cpu", support=sup) * _cdi(pc, I, m)
    np.testing.assert_array_equal(cdi.get_support(shift=True).astype(bool), sup)
    from test_phase import TINY_PHASE3
    with pytest.raises(ValueError, match="3-D phase model"):
        DLPhaseInit(model=build_model(TINY_PHASE3), family="cpu") * _cdi(pc, I, m)


@pytest.mark.opencl
def test_opencl_matches_cpu(tiny, data, pynx_opencl):
    I, m, _ = data
    pcl, pc = pynx_opencl
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        cdi = DLPhaseInit(model=tiny, family="opencl") * _cdi(pc, I, m)
        dev_obj = np.fft.fftshift(cdi._cl_obj.get())
        dev_sup = np.fft.fftshift(cdi._cl_support.get()).astype(bool)
        cdi = pcl.ER() ** 5 * cdi
        assert np.isfinite(cdi.get_obj()).all()
    cpu = DLPhaseInit(model=tiny, family="cpu") * _cdi(pc, I, m)
    assert _ncc(dev_obj, cpu.get_obj(shift=True)) > 1 - 1e-5  # the device holds the new start
    np.testing.assert_array_equal(dev_sup, cpu.get_support(shift=True).astype(bool))


@pytest.mark.parametrize("estimated,bf16", [(False, False), (True, False), (False, True)])
def test_device_start_matches_host_start(tiny, data, estimated, bf16, monkeypatch):
    """The CUDA op's device step (_start_tensor), run here on a CPU tensor standing for the
    torch view of cdi._cu_iobs, gives the object and support the CPU op stores (bf16 forced
    where the CPU has no native bf16: the tiny model runs it in a moment)."""
    monkeypatch.setenv("PYNX_DLGAP_BF16", "force")
    I, m, _ = data
    pc = import_pynx_cdi("cpu")
    stored = np.fft.fftshift(I).copy()
    ms = np.fft.fftshift(m)
    stored[ms] = -(stored[ms] + 1) * 1e19 if estimated else -1.05e38
    op = DLPhaseInit(model=tiny, family="cpu", bf16=bf16)
    obj_h, sup_h = op._start(pc.CDI(stored.copy()))
    obj_t, sup_t = op._start_tensor(torch.from_numpy(stored.copy()))
    got = np.fft.ifftshift(obj_t.numpy())  # stored -> centred (even shape)
    scale = np.abs(obj_h).max()
    np.testing.assert_allclose(got, obj_h, rtol=0, atol=2e-5 * scale)
    mism = np.count_nonzero(np.fft.ifftshift(sup_t.numpy()) != sup_h)
    assert mism <= max(2, sup_h.size // 5000)  # voxels at the threshold may flip with rounding
    assert sup_h.sum() > 0


@pytest.mark.parametrize("case", ["larger", "smaller"])
def test_device_start_matches_host_start_off_the_models_size(tiny, data, case):
    """The device step on patterns that are not the model's box: larger (odd 154 x 147, the
    Bragg peak off-centre, so the region follows the peak found on the device) and smaller
    (105 x 117, the box runs past the array); the same region, object and support as the
    host step (scipy's peak search, numpy's shifts)."""
    I, m, _ = data
    if case == "larger":
        pad = ((21, 5), (6, 13))
        I2, m2 = np.pad(I, pad).astype(np.float32), np.pad(m, pad)
    else:
        I2, m2 = I[9:-14, 6:-5].copy(), m[9:-14, 6:-5].copy()
    pc = import_pynx_cdi("cpu")
    stored = np.fft.ifftshift(np.where(m2, np.float32(-1.05e38), I2)).astype(np.float32)  # fftshift(stored) = centred
    op = DLPhaseInit(model=tiny, family="cpu")
    obj_h, sup_h = op._start(pc.CDI(stored.copy()))
    info_h = dict(op._info)
    s0 = stored.copy()
    obj_t, sup_t = op._start_tensor(torch.from_numpy(stored))
    np.testing.assert_array_equal(stored, s0)  # the input is left as it was
    assert op._info["region_start"] == info_h["region_start"]
    assert op._info["peak"] == info_h["peak"] and info_h["peak"] is not None  # the box follows the peak
    if case == "larger":
        assert info_h["region_start"] != [13, 9]  # not the centred box
    got = np.fft.ifftshift(obj_t.numpy())  # stored (PyNX: fftshift of centred) -> centred, any parity
    np.testing.assert_allclose(got, obj_h, rtol=0, atol=2e-5 * np.abs(obj_h).max())
    sup_c = np.fft.ifftshift(sup_t.numpy())
    assert np.count_nonzero(sup_c != sup_h) <= max(2, sup_h.size // 5000) and sup_h.sum() > 0
    assert op._info["support_points"] == int(sup_t.sum())


def test_device_step_refuses_bad_iobs_before_the_model(tiny, data, monkeypatch):
    """The device step reads its checks back with the peak in one transfer: a NaN in cdi.iobs or a
    fully masked iobs is still a clear PatternError, raised before the model runs, and the
    tensor is left as it was."""
    import pynx_dlgap.phase.predict as P
    from pynx_dlgap._checks import PatternError
    I, m, _ = data
    op = DLPhaseInit(model=tiny, family="cpu")
    ran = []
    monkeypatch.setattr(P, "_run_phase_model", lambda *a, **k: ran.append(1))
    bad = np.fft.fftshift(I).astype(np.float32)
    bad[3, 5] = np.nan
    big = np.pad(bad, ((10, 0), (0, 7)))  # larger than the box: the peak is searched too
    for arr, msg in ((bad, "NaN/inf"), (big, "NaN/inf"), (np.full(bad.shape, -1.05e38, np.float32), "every voxel")):
        t = torch.from_numpy(arr.copy())
        with pytest.raises(PatternError, match=msg):
            op._start_tensor(t)
        np.testing.assert_array_equal(t.numpy(), arr)
    assert not ran


def test_noise_perturbs_the_predicted_phase_by_its_rms(tiny, data):
    """noise=σ adds a smooth field of RMS σ to the predicted phase inside the model's box, the
    same on the host and device paths; noise=0 is the plain prediction."""
    from pynx_dlgap.phase.predict import box_slices, smooth_noise
    I, m, _ = data
    pc = import_pynx_cdi("cpu")
    stored = np.fft.fftshift(I).copy()
    stored[np.fft.fftshift(m)] = -1.05e38
    seed = int(np.random.default_rng().integers(1 << 30))
    op = DLPhaseInit(model=tiny, family="cpu", noise=0.7, noise_seed=seed)
    obj_n, _ = op._start(pc.CDI(stored.copy()))
    info = op._info
    assert info["noise_rms"] == 0.7
    ph = predict_phase(I, m, model=tiny)
    dst, src = box_slices(I.shape, info["region_start"], info["region_shape"])
    ph[dst] += smooth_noise(tuple(info["region_shape"]), 0.7, 2.0, seed).astype(np.float32)[src]
    ref = start_object(I, ph, m)
    np.testing.assert_allclose(obj_n, ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    obj_t, _ = op._start_tensor(torch.from_numpy(stored.copy()))
    np.testing.assert_allclose(np.fft.ifftshift(obj_t.numpy()), ref, rtol=0, atol=2e-5 * np.abs(ref).max())
    op0 = DLPhaseInit(model=tiny, family="cpu")
    assert _ncc(op0._start(pc.CDI(stored.copy()))[0], start_object(I, predict_phase(I, m, model=tiny), m)) > 1 - 1e-6
    with pytest.raises(ValueError, match="noise"):
        DLPhaseInit(model=tiny, family="cpu", noise=-1)


def test_smooth_noise_rms_and_correlation():
    from pynx_dlgap.phase.predict import smooth_noise
    seed = int(np.random.default_rng().integers(1 << 30))
    n = smooth_noise((48, 48, 48), 0.8, 2.0, seed)
    assert n.std() == pytest.approx(0.8, rel=1e-9)
    # The mean is random: the periodic filter keeps the white noise's mean (SD 1/sqrt(N)), and the
    # filtered field's SD is (8 pi^1.5 c^3)^-1/2 for a Gaussian of width c, so after rescaling to 0.8
    # the mean has SD 0.8 sqrt(8 pi^1.5 c^3 / N) (0.045 here); 5 SD fails once in ~10^6 draws.
    sd_mean = 0.8 * np.sqrt(8 * np.pi ** 1.5 * 2.0 ** 3 / n.size)
    assert abs(n.mean()) < 5 * sd_mean
    assert np.corrcoef(n[:, :, :-1].ravel(), n[:, :, 1:].ravel())[0, 1] > 0.8  # smooth at 1 px
    assert np.array_equal(n, smooth_noise((48, 48, 48), 0.8, 2.0, seed))


def test_bf16_operator_start_is_close_to_fp32(tiny, data, monkeypatch):
    """DLPhaseInit(bf16=True): the same start as the float32 operator up to bf16 rounding, and a
    chain runs from it (bf16 forced where the CPU has no native bf16)."""
    monkeypatch.setenv("PYNX_DLGAP_BF16", "force")
    I, m, _ = data
    pc = import_pynx_cdi("cpu")
    ref = DLPhaseInit(model=tiny, family="cpu") * _cdi(pc, I, m)
    cdi = DLPhaseInit(model=tiny, family="cpu", bf16=True) * _cdi(pc, I, m)
    assert cdi.dl_phase_init_info["bf16"] and not ref.dl_phase_init_info["bf16"]
    ncc = _ncc(cdi.get_obj(shift=True), ref.get_obj(shift=True))
    assert 0.98 < ncc < 1 - 1e-7  # bf16 changes the start, by little
    cdi = pc.ER() ** 10 * cdi
    assert np.isfinite(cdi.get_obj()).all()


def test_tta_operator_matches_ensemble_prediction(tiny, data):
    """DLPhaseInit(tta=4): the start built from predict_phase(tta=4); a bad tta fails at construction.
    The CUDA op's device step (run here on a CPU tensor) gives the same start."""
    I, m, _ = data
    pc = import_pynx_cdi("cpu")
    with pytest.raises(ValueError, match="1 to 8 views"):
        DLPhaseInit(model=tiny, family="cpu", tta=9)
    cdi = DLPhaseInit(model=tiny, family="cpu", tta=4) * _cdi(pc, I, m)
    ref = start_object(I, predict_phase(I, m, model=tiny, tta=4), m)
    one = start_object(I, predict_phase(I, m, model=tiny), m)
    got = cdi.get_obj(shift=True)
    assert _ncc(got, ref) > 1 - 1e-5 and _ncc(ref, one) < 1 - 1e-4
    assert cdi.dl_phase_init_info["tta"] == 4
    op = DLPhaseInit(model=tiny, family="cpu", tta=4)
    stored = np.fft.fftshift(np.where(m, -1.05e38, I)).astype(np.float32)
    obj_h, _ = op._start(pc.CDI(stored.copy()))
    obj_t, _ = op._start_tensor(torch.from_numpy(stored.copy()))
    np.testing.assert_allclose(np.fft.ifftshift(obj_t.numpy()), obj_h, rtol=0, atol=2e-5 * np.abs(obj_h).max())


def test_cpu_bins_a_large_oversampled_pattern(tiny):
    """A 256^2 pattern of a small crystal (independent recipe): 'auto' bins it 2x2 for the
    128^2 model, as predict_phase does; bin=1 keeps the 0.7.11 start (the box around the peak)."""
    from pynx_dlgap.evaluate.analytic import analytic_crystal
    s = analytic_crystal(int(np.random.default_rng().integers(100_000)), 2, 256, 3.0, oversampling=(14, 16))
    I, m = s["intensity"], np.zeros((256, 256), bool)
    m[120:124, :] = True
    pc = import_pynx_cdi("cpu")
    cdi = DLPhaseInit(model=tiny, family="cpu") * _cdi(pc, I, m)
    info = cdi.dl_phase_init_info
    assert info["bin"] == [2, 2] and info["binned_shape"] == [127, 127]
    ref = start_object(I, predict_phase(I, m, model=tiny, bin=2), m)
    assert _ncc(cdi.get_obj(shift=True), ref) > 1 - 1e-5
    cdi1 = DLPhaseInit(model=tiny, family="cpu", bin=1) * _cdi(pc, I, m)
    assert cdi1.dl_phase_init_info["bin"] == [1, 1] and cdi1.dl_phase_init_info["region_shape"] == [128, 128]
    ref1 = start_object(I, predict_phase(I, m, model=tiny, bin=1), m)
    assert _ncc(cdi1.get_obj(shift=True), ref1) > 1 - 1e-5
    assert _ncc(ref, ref1) < 0.999  # the two starts differ
    with pytest.raises(ValueError, match="bin"):
        DLPhaseInit(model=tiny, family="cpu", bin=(2, 2, 2))
