"""``DLPhaseInit``: a PyNX CDI operator that starts the object from the DL phase prediction.

Usage::

    from pynx.cdi import CDI, ER, RAAR
    from pynx_dlgap.operators import DLPhaseInit, DLInpaint
    cdi = CDI(iobs_shifted, mask=mask_shifted)
    cdi = ER() ** 100 * RAAR() ** 300 * DLPhaseInit() * cdi
    cdi = ER() ** 50 * DLPhaseInit() * DLInpaint() * cdi

What it does (families ``'cpu'``, ``'opencl'`` and ``'cuda'``, as :mod:`.inpaint`):

1. decodes the host ``cdi.iobs`` (fft-shifted; masked ``<= -1e38`` and free
   pixels are not measured; *estimated* values ``-(I+1)e19`` — e.g. from
   ``DLInpaint(mode='estimate')`` — are used as intensities), centres it;
2. predicts the reciprocal-space phase (:func:`pynx_dlgap.phase.predict.predict_phase`;
   patterns larger than the model: the region around the Bragg peak, see there, of the
   pattern binned first where its crystal is oversampled beyond the training range,
   ``bin='auto'``, :mod:`pynx_dlgap.phase.binning`);
3. sets the object to ``IFT(sqrt(I) exp(i phi))`` (masked voxels and voxels
   outside the region: amplitude 0) in PyNX's fft-shifted storage, then applies
   the family's ``ScaleObj(method='F')``;
4. sets the support to the thresholded (``support_threshold`` of the maximum),
   Gaussian-smoothed (``support_sigma`` px) modulus, unless ``support=False`` (keep
   the CDI's support) or a centred array is given as ``support``.

On the OpenCL family the new object/support are written to the host arrays and
uploaded to the device (one documented host round trip). On the CUDA family
(after :func:`pynx_dlgap.pynx_backend.init_pynx_cuda`: PyNX and torch share the
primary context) the model runs on the GPU and steps 1-4 run there too
(:meth:`_DLPhaseInitCore._start_tensor`): PyNX's ``cdi._cu_iobs`` is read and
``cdi._cu_obj`` / ``cdi._cu_support`` are written through torch views of the
same device memory (:func:`pynx_dlgap.gpu.torch_view`), with no host copy;
only the model's input box is cut from the host ``cdi.iobs``. A summary is stored in
``cdi.dl_phase_init_info``.

Refine **without** PyNX's ``DetwinRAAR`` after this start: the DL start carries no
twin mixture, and detwinning (half the support for 10 cycles) was measured to
drive even a true-phase start away (``benchmarks/phase_basin.py``);
``pynx-cdi-id01-dl --dl-phase-init`` turns PyNX's ``detwin`` off unless asked.
"""
from __future__ import annotations

import time

import numpy as np

from .inpaint import ESTIMATE_MAX, decode_iobs, operator_class

MASKED_MAX = -1e38  # PyNX: iobs <= -1e38 masked; -1e38 < iobs <= -1e19 estimated -(I+1)*1e19

__all__ = ["DLPhaseInit", "dlphaseinit_class"]

_CLASSES: dict = {}


def _decode_for_phase(stored):
    """``(intensity, masked)``: observed and free pixels as measured, *estimated* pixels as
    their estimate (inpainted values are used for the start), masked pixels 0 / True."""
    s = np.asarray(stored, dtype=np.float64)
    inten, to_fill = decode_iobs(s)
    masked = s <= MASKED_MAX
    est = to_fill & ~masked
    inten = inten.astype(np.float64)
    inten[est] = -s[est] / 1e19 - 1
    return np.clip(inten, 0, None).astype(np.float32), masked


class _DLPhaseInitCore:
    #: RMS (rad) of the smooth random field added to the predicted phase (0: none), its seed
    noise = 0.0
    noise_seed = None
    #: replay a CUDA graph of the model (CUDA family only; see DLPhaseInit)
    cuda_graph = False

    def _noise_box(self, size):
        """The perturbation on the model's box (float32), or None without ``noise``."""
        if not self.noise > 0:
            return None
        from ..phase.predict import smooth_noise
        return smooth_noise(tuple(size), self.noise, 2.0, self.noise_seed).astype(np.float32)

    def _setup(self, model, weights, support, support_threshold, support_sigma, device, bf16=False, bin="auto"):
        from ..phase.binning import resolve_bin
        from ..phase.predict import load_phase_model
        self._card = None
        if model is None:
            model, self._card = load_phase_model(weights, 3)  # checked here, before any work
        self._model = model
        self._bin = resolve_bin(bin, int(model.config["kwargs"].get("dims", 3)))  # before any work
        self._support = support
        self._thr, self._sigma = float(support_threshold), float(support_sigma)
        self._device = device
        self._bf16 = bool(bf16)
        self.tta = 1
        self._info = {}

    def __str__(self):
        return "DLPhaseInit"

    def _check_dims(self, ndim):
        model_dims = int(self._model.config["kwargs"].get("dims", 3))
        if model_dims != ndim:
            raise ValueError(f"DLPhaseInit: a {model_dims}-D phase model cannot start a {ndim}-D CDI "
                             f"(pass model=/weights= of a {ndim}-D model)")

    def _start(self, cdi):
        """(object, support) centred, from the host iobs."""
        return self._start_stored(np.asarray(cdi.iobs))

    def _host_bins(self, shape) -> bool:
        """Whether the start may bin the pattern (:mod:`pynx_dlgap.phase.binning`): factors > 1
        were given, or ``'auto'`` and an axis is at least 1.8 times the model's box."""
        from ..phase.predict import _model_shape
        if self._bin == "auto":
            size = _model_shape(self._model, self._card, len(shape))
            from ..phase.binning import binnable_axes
            return binnable_axes(shape, size)
        return any(b > 1 for b in self._bin)

    def _start_stored(self, stored):
        """(object, support) centred, from iobs in PyNX's stored (fft-shifted) layout."""
        from ..phase.predict import predict_phase, start_object, support_from_object
        t0 = time.perf_counter()
        I, mask = _decode_for_phase(stored)
        I, mask = np.fft.fftshift(I), np.fft.fftshift(mask)
        ndim = I.ndim
        self._check_dims(ndim)
        phase, info = predict_phase(I, mask, model=self._model, device=self._device, return_info=True,
                                    bf16=self._bf16, tta=self.tta, bin=self._bin)
        if self.noise > 0:
            if any(b > 1 for b in info["bin"]):  # binned: on the full grid (NaN where the phase is unknown stays NaN)
                phase += self._noise_box(I.shape)
            else:  # on the model's box, as the device path
                from ..phase.predict import box_slices
                dst, src = box_slices(I.shape, info["region_start"], info["region_shape"])
                phase[dst] += self._noise_box(info["region_shape"])[src]
            info.update(noise_rms=self.noise, noise_seed=self.noise_seed)
        obj = start_object(I, phase, mask)
        if self._support is None or self._support is True:
            sup = support_from_object(obj, self._thr, self._sigma)
        elif self._support is False:
            sup = None
        else:
            sup = np.asarray(self._support, bool)
            if sup.shape != I.shape:
                raise ValueError(f"support shape {sup.shape} != pattern shape {I.shape}")
        info.update(seconds_total=time.perf_counter() - t0,
                    support_points=None if sup is None else int(sup.sum()),
                    weights_sha256=(self._card or {}).get("sha256"))
        self._info = info
        return obj, sup

    def _start_tensor(self, s):
        """(object, support) in PyNX's stored layout as tensors on ``s.device``.

        ``s``: the stored iobs tensor (a view of ``cdi._cu_iobs`` on the CUDA family); all
        of it runs on ``s.device``. Same values as :meth:`_start` followed by PyNX's
        ``set_obj/set_support(shift=True)`` (float rounding; compared on the CPU by the
        tests). Support None: keep the CDI's.

        Written for a GPU, where a step this size costs its launches and host waits, not
        its arithmetic: the model's box is gathered from the stored layout in one kernel
        and the phase written back the same way (no full-array shifts: the object is built
        from the stored layout, ``ifftn`` there, and shifted once for the support and once
        to store it, :func:`~pynx_dlgap.phase.predict.shift_torch`); the input checks (and
        the Bragg peak the box is centred on) come back to the
        host in one transfer, the only wait before the model; the support's size in
        ``info`` is read when the caller has synchronised (:meth:`_finish_info`).
        """
        import torch
        from ..phase.predict import (_model_shape, _stored_box_index, box_slices, gaussian_filter_torch,
                                     prediction_region, predict_on_box, shift_torch)
        t0 = time.perf_counter()
        ndim = s.ndim
        self._check_dims(ndim)
        dev = s.device
        shape = tuple(int(v) for v in s.shape)
        size = _model_shape(self._model, self._card, ndim)
        # decode on the device as _decode_for_phase: estimated pixels as their estimate (stored layout)
        s32 = s.float()
        masked = s32 <= MASKED_MAX
        est = (s32 > MASKED_MAX) & (s32 <= ESTIMATE_MAX)
        free = (s32 > ESTIMATE_MAX) & (s32 < 0)
        inten = torch.where(s32 >= 0, s32, torch.where(free, -s32 - 1, 0.0))
        inten = torch.where(est, (-s.double() / 1e19 - 1).float(), inten).clamp_min(0)
        # the Bragg peak the box is centred on (bragg_peak: 1-px Gaussian, argmax; centred layout)
        sm = gaussian_filter_torch(shift_torch(inten.masked_fill(masked, 0.0)), 1.0)
        checks = [masked.all(), ~torch.isfinite(s32).all(), torch.argmax(sm)]
        vals = torch.stack([c.to(torch.int64) for c in checks]).tolist()  # one wait for the device
        from .._checks import PatternError
        if vals[0]:
            raise PatternError("DLPhaseInit: every voxel of cdi.iobs is masked")
        if vals[1]:
            raise PatternError("DLPhaseInit: cdi.iobs holds NaN/inf values")
        peak = tuple(int(v) for v in np.unravel_index(vals[2], shape))
        start = prediction_region(shape, peak, size)
        dst, src = box_slices(shape, start, size)
        idx = _stored_box_index(shape, tuple((d.start, d.stop) for d in dst), str(dev))  # centred dst, stored layout
        sub = tuple(d.stop - d.start for d in dst)
        if sub == tuple(size):
            I_box, m_box = inten.take(idx), masked.take(idx)
        else:  # the box runs past the array: masked there
            I_box = torch.zeros(size, dtype=torch.float32, device=dev)
            m_box = torch.ones(size, dtype=torch.bool, device=dev)
            I_box[src], m_box[src] = inten.take(idx), masked.take(idx)
        from ..precision import resolve_bf16
        bf16 = resolve_bf16(self._bf16, dev, "DLPhaseInit")
        ph_box = predict_on_box(self._model, I_box, m_box, dev, bf16=bf16, tta=self.tta, graph=self.cuda_graph)
        info = {"peak": list(peak), "region_start": list(start), "region_shape": list(size),
                "seconds": time.perf_counter() - t0, "device": str(dev), "bf16": bf16, "tta": int(self.tta),
                "cuda_graph": bool(self.cuda_graph)}
        nb = self._noise_box(size)
        if nb is not None:
            ph_box = ph_box + torch.from_numpy(nb).to(dev)
            info.update(noise_rms=self.noise, noise_seed=self.noise_seed)
        # the phase in the stored layout (NaN outside the region), then IFT(sqrt(I) exp(i phase)) there
        phase = torch.full(shape, float("nan"), dtype=torch.float32, device=dev)
        phase.view(-1).index_copy_(0, idx.view(-1), ph_box[src].reshape(-1))
        known = torch.isfinite(phase) & ~masked
        f = torch.polar(torch.where(known, torch.sqrt(inten.double()), 0.0), torch.where(known, phase.double(), 0.0))
        obj_u = torch.fft.ifftn(f).to(torch.complex64)  # = ifftshift(centred object)
        sup = None
        if self._support is None or self._support is True:
            a = gaussian_filter_torch(shift_torch(obj_u.abs(), 1), self._sigma)  # centred |obj|
            sup = shift_torch(a > self._thr * a.max(), 1)  # stored
        elif self._support is not False:
            sup = torch.as_tensor(np.asarray(self._support, bool), device=dev)
            if tuple(sup.shape) != shape:
                raise ValueError(f"support shape {tuple(sup.shape)} != pattern shape {shape}")
            sup = shift_torch(sup, 1)
        info.update(seconds_total=time.perf_counter() - t0, support_points=None if sup is None else sup.sum(),
                    weights_sha256=(self._card or {}).get("sha256"))
        self._info = info
        if dev.type == "cpu":
            self._finish_info()
        # PyNX's set_obj(..., shift=True) stores fftshift(centred) = fftshift(fftshift(obj_u))
        return shift_torch(obj_u, 2, copy=False), sup

    def _finish_info(self):
        """The support's size in ``self._info`` as an int (read after the device work is done)."""
        n = self._info.get("support_points")
        if n is not None and not isinstance(n, int):
            self._info["support_points"] = int(n)


def _make_cpu_class():
    from pynx.cdi.cpu_operator import CPUOperatorCDI, ScaleObj

    class DLPhaseInitCPU(_DLPhaseInitCore, CPUOperatorCDI):
        """DLPhaseInit on PyNX's numpy CPU family (see :mod:`pynx_dlgap.operators.phase_init`)."""

        family = "cpu"

        def __init__(self, model=None, weights=None, support=None, support_threshold=0.2, support_sigma=1.0,
                     device="cpu", bf16=False, bin="auto"):
            CPUOperatorCDI.__init__(self)
            self._setup(model, weights, support, support_threshold, support_sigma, device, bf16, bin)

        def op(self, cdi):
            obj, sup = self._start(cdi)
            cdi.set_obj(obj, shift=True)
            if sup is not None:
                cdi.set_support(sup, shift=True)
            cdi = ScaleObj(method="F") * cdi
            cdi.dl_phase_init_info = self._info
            return cdi

    return DLPhaseInitCPU


def _make_opencl_class():
    import pyopencl.array as cla
    from pynx.cdi.cl_operator import CLOperatorCDI, ScaleObj

    class DLPhaseInitCL(_DLPhaseInitCore, CLOperatorCDI):
        """DLPhaseInit on PyNX's OpenCL family (see :mod:`pynx_dlgap.operators.phase_init`)."""

        family = "opencl"

        def __init__(self, model=None, weights=None, support=None, support_threshold=0.2, support_sigma=1.0,
                     device="cpu", processing_unit=None, bf16=False, bin="auto"):
            CLOperatorCDI.__init__(self, processing_unit=processing_unit)
            self._setup(model, weights, support, support_threshold, support_sigma, device, bf16, bin)

        def op(self, cdi):
            obj, sup = self._start(cdi)
            pu = self.processing_unit
            pu.cl_queue.finish()
            pu.ev = []
            # host copies (set_obj/set_support) and the same arrays on the device: after this op
            # PyNX's timestamps mark the device as current, and it holds the new start
            cdi.set_obj(obj, shift=True)
            cdi._cl_obj = cla.to_device(pu.cl_queue, cdi._obj, async_=False, allocator=pu.cl_mem_pool)
            if sup is not None:
                cdi.set_support(sup, shift=True)
                cdi._cl_support = cla.to_device(pu.cl_queue, cdi._support, async_=False,
                                                allocator=pu.cl_mem_pool)
            cdi._is_in_object_space = True
            cdi = ScaleObj(method="F") * cdi
            cdi.dl_phase_init_info = self._info
            return cdi

    return DLPhaseInitCL


def _make_cuda_class():
    import torch
    from pynx.cdi.cu_operator import CUOperatorCDI, ScaleObj

    class DLPhaseInitCUDA(_DLPhaseInitCore, CUOperatorCDI):
        """DLPhaseInit on PyNX's CUDA family, on the device (see :mod:`pynx_dlgap.operators.phase_init`)."""

        family = "cuda"

        def __init__(self, model=None, weights=None, support=None, support_threshold=0.2, support_sigma=1.0,
                     device="cuda", processing_unit=None, bf16=False, bin="auto"):
            from ..pynx_backend import init_pynx_cuda
            self.shared_context = init_pynx_cuda()  # before PyNX makes a context of its own
            CUOperatorCDI.__init__(self, processing_unit=processing_unit)
            self._setup(model, weights, support, support_threshold, support_sigma, device, bf16, bin)

        def op(self, cdi):
            from ..gpu import torch_view
            self.processing_unit.cu_ctx.synchronize()
            if self.shared_context:
                s = torch_view(cdi._cu_iobs)
                o, sp = torch_view(cdi._cu_obj), torch_view(cdi._cu_support)
                zero_copy = (s.data_ptr() == int(cdi._cu_iobs.gpudata) and o.data_ptr() == int(cdi._cu_obj.gpudata)
                             and sp.data_ptr() == int(cdi._cu_support.gpudata))
            else:
                s, zero_copy = torch.from_numpy(cdi._cu_iobs.get()).cuda(), False
            if self._host_bins(tuple(s.shape)):  # binning (phase.binning) runs on the host: one copy each way
                obj_c, sup_c = self._start_stored(s.cpu().numpy())
                obj = torch.from_numpy(np.fft.fftshift(obj_c)).to(s.device)  # PyNX's stored layout
                sup = None if sup_c is None else torch.from_numpy(np.fft.fftshift(sup_c)).to(s.device)
                self._info["binned_on_host"] = True
            else:
                obj, sup = self._start_tensor(s)
            if zero_copy:
                o.copy_(obj.reshape(o.shape))
                if sup is not None:
                    sp.copy_(sup.reshape(sp.shape).to(sp.dtype))
                torch.cuda.synchronize(s.device)
            else:
                cdi._cu_obj.set(obj.cpu().numpy().reshape(cdi._cu_obj.shape))
                if sup is not None:
                    cdi._cu_support.set(sup.cpu().numpy().astype(np.int8).reshape(cdi._cu_support.shape))
            cdi._is_in_object_space = True
            self._finish_info()  # the device work is done (synchronised, or read back above)
            self._info.update(zero_copy=bool(zero_copy), device=str(s.device))
            cdi = ScaleObj(method="F") * cdi
            cdi.dl_phase_init_info = self._info
            return cdi

    return DLPhaseInitCUDA


def dlphaseinit_class(family: str | None = None):
    """The ``DLPhaseInit`` class of a PyNX operator family (default: PyNX's own choice);
    see :func:`pynx_dlgap.operators.inpaint.operator_class`."""
    return operator_class("DLPhaseInit", family, _CLASSES, _make_cpu_class, _make_opencl_class, _make_cuda_class)


def DLPhaseInit(model=None, weights=None, support=None, support_threshold: float = 0.2, support_sigma: float = 1.0,
                *, device: str = "cpu", family: str | None = None, noise: float = 0.0, noise_seed=None,
                bf16: bool = False, tta: int = 1, cuda_graph: bool = False, bin="auto"):
    """A PyNX operator setting the object from the DL reciprocal-phase prediction.

    :param model: a loaded phase model; default ``weights``, default the shipped
        ``weights/phase3d.safetensors`` (for a 2-D CDI pass a 2-D model/weights).
    :param support: ``None``/``True``: support from the start object's modulus;
        ``False``: keep the CDI's support; an array (centred): use it.
    :param support_threshold, support_sigma: of that support (fraction of the max, px).
    :param device: torch device of the prediction (the CUDA family always runs it on the GPU
        that holds PyNX's arrays).
    :param family: ``'cpu'`` / ``'opencl'`` / ``'cuda'``; default the family of ``pynx.cdi.ER``.
    :param bf16: run a bfloat16 copy of the model (channels-last in 3-D): several times
        faster on GPUs and on CPUs with bf16 instructions (:func:`pynx_dlgap.phase.predict.predict_on_box`);
        elsewhere float32 and a warning (:mod:`pynx_dlgap.precision`; ``dl_phase_init_info['bf16']``
        says what ran).
    :param noise: RMS (rad) of a smooth random field (2-px correlation,
        :func:`pynx_dlgap.phase.predict.smooth_noise`) added to the predicted phase: varied
        DL starts for several runs, of which the lowest LLK is kept (``benchmarks/phase_init.py
        --dl-k``); ``noise_seed`` seeds it. Default 0: the prediction as is.
    :param tta: test-time ensemble of that many symmetric views (1-48 in 3-D, 1-8 in 2-D;
        :func:`pynx_dlgap.phase.predict.view_phases`); ``tta`` model calls. Default 1.
    :param cuda_graph: CUDA family only, ``tta=1``: replay a CUDA graph of the model
        (:func:`pynx_dlgap.phase.predict.graphed_phase_model`), captured at the first call
        and cached per model, one launch instead of one per layer
        (``benchmarks/phase_step.py`` times both on a GPU).
    :param bin: predict on the pattern binned by these factors (int, one per axis, or ``'auto'``,
        the default: from the estimated oversampling, only for patterns at least 1.8 times the
        model's box along an axis) and interpolate the phase back onto the full grid
        (:mod:`pynx_dlgap.phase.binning`); ``1``: never (before 0.7.12). On the CUDA family a
        start that may bin runs on the host (the pattern copied from the GPU, the start
        copied back).
    :raises WeightsError: weights missing/corrupted (checked here, before any work).
    """
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite RMS >= 0 (rad), got {noise}")
    cls = dlphaseinit_class(family)
    if cuda_graph and (cls.family != "cuda" or int(tta) != 1):
        raise ValueError(f"cuda_graph=True needs the CUDA family and tta=1 (got family {cls.family!r}, tta {tta})")
    if cls.family == "opencl":
        from ..pynx_backend import init_pynx_opencl
        init_pynx_opencl()
    op = cls(model=model, weights=weights, support=support, support_threshold=support_threshold,
             support_sigma=support_sigma, device=device, bf16=bf16, bin=bin)
    from ..phase.predict import phase_views
    phase_views(int(op._model.config["kwargs"].get("dims", 3)), tta)  # a bad tta fails here, before any work
    op.noise, op.noise_seed, op.tta, op.cuda_graph = float(noise), noise_seed, int(tta), bool(cuda_graph)
    return op
