"""``DLPhaseInit``: a PyNX CDI operator that starts the object from the DL phase prediction.

Usage::

    from pynx.cdi import CDI, ER, RAAR
    from pynx_dlgap.operators import DLPhaseInit, DLInpaint
    cdi = CDI(iobs_shifted, mask=mask_shifted)
    cdi = ER**100 * RAAR**300 * DLPhaseInit() * cdi
    cdi = ER**50 * DLPhaseInit() * DLInpaint() * cdi

What it does (families ``'cpu'`` and ``'opencl'``, as :mod:`.inpaint`):

1. decodes the host ``cdi.iobs`` (fft-shifted; masked ``<= -1e38`` and free
   pixels are not measured; *estimated* values ``-(I+1)e19`` — e.g. from
   ``DLInpaint(mode='estimate')`` — are used as intensities), centres it;
2. predicts the reciprocal-space phase (:func:`pynx_dlgap.phase.predict.predict_phase`;
   patterns larger than the model: the region around the Bragg peak, see there);
3. sets the object to ``IFT(sqrt(I) exp(i phi))`` (masked voxels and voxels
   outside the region: amplitude 0) in PyNX's fft-shifted storage, then applies
   the family's ``ScaleObj(method='F')``;
4. sets the support to the thresholded (``support_threshold`` of the maximum),
   Gaussian-smoothed (``support_sigma`` px) modulus, unless ``support=False`` (keep
   the CDI's support) or a centred array is given as ``support``.

On the OpenCL family the new object/support are written to the host arrays and
uploaded to the device (one documented host round trip). A summary is stored in
``cdi.dl_phase_init_info``.

Refine **without** PyNX's ``DetwinRAAR`` after this start: the DL start carries no
twin mixture, and detwinning (half the support for 10 cycles) was measured to
drive even a true-phase start away (``benchmarks/phase_basin.py``);
``pynx-cdi-id01-dl --dl-phase-init`` turns PyNX's ``detwin`` off unless asked.
"""
from __future__ import annotations

import time

import numpy as np

from .inpaint import decode_iobs, operator_class

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
    def _setup(self, model, weights, support, support_threshold, support_sigma, device):
        from ..phase.predict import load_phase_model
        self._card = None
        if model is None:
            model, self._card = load_phase_model(weights, 3)  # checked here, before any work
        self._model = model
        self._support = support
        self._thr, self._sigma = float(support_threshold), float(support_sigma)
        self._device = device
        self._info = {}

    def __str__(self):
        return "DLPhaseInit"

    def _start(self, cdi):
        """(object, support) centred, from the host iobs."""
        from ..phase.predict import predict_phase, start_object, support_from_object
        t0 = time.perf_counter()
        I, mask = _decode_for_phase(np.asarray(cdi.iobs))
        I, mask = np.fft.fftshift(I), np.fft.fftshift(mask)
        ndim = I.ndim
        model_dims = int(self._model.config["kwargs"].get("dims", 3))
        if model_dims != ndim:
            raise ValueError(f"DLPhaseInit: a {model_dims}-D phase model cannot start a {ndim}-D CDI "
                             f"(pass model=/weights= of a {ndim}-D model)")
        phase, info = predict_phase(I, mask, model=self._model, device=self._device, return_info=True)
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


def _make_cpu_class():
    from pynx.cdi.cpu_operator import CPUOperatorCDI, ScaleObj

    class DLPhaseInitCPU(_DLPhaseInitCore, CPUOperatorCDI):
        """DLPhaseInit on PyNX's numpy CPU family (see :mod:`pynx_dlgap.operators.phase_init`)."""

        family = "cpu"

        def __init__(self, model=None, weights=None, support=None, support_threshold=0.2, support_sigma=1.0,
                     device="cpu"):
            CPUOperatorCDI.__init__(self)
            self._setup(model, weights, support, support_threshold, support_sigma, device)

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
                     device="cpu", processing_unit=None):
            CLOperatorCDI.__init__(self, processing_unit=processing_unit)
            self._setup(model, weights, support, support_threshold, support_sigma, device)

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


def dlphaseinit_class(family: str | None = None):
    """The ``DLPhaseInit`` class of a PyNX operator family (default: PyNX's own choice);
    see :func:`pynx_dlgap.operators.inpaint.operator_class`."""
    return operator_class("DLPhaseInit", family, _CLASSES, _make_cpu_class, _make_opencl_class)


def DLPhaseInit(model=None, weights=None, support=None, support_threshold: float = 0.2, support_sigma: float = 1.0,
                *, device: str = "cpu", family: str | None = None):
    """A PyNX operator setting the object from the DL reciprocal-phase prediction.

    :param model: a loaded phase model; default ``weights``, default the shipped
        ``weights/phase3d.safetensors`` (for a 2-D CDI pass a 2-D model/weights).
    :param support: ``None``/``True``: support from the start object's modulus;
        ``False``: keep the CDI's support; an array (centred): use it.
    :param support_threshold, support_sigma: of that support (fraction of the max, px).
    :param device: torch device of the prediction.
    :param family: ``'cpu'`` / ``'opencl'``; default the family of ``pynx.cdi.ER``.
    :raises WeightsError: weights missing/corrupted (checked here, before any work).
    """
    cls = dlphaseinit_class(family)
    if cls.family == "opencl":
        from ..pynx_backend import init_pynx_opencl
        init_pynx_opencl()
    return cls(model=model, weights=weights, support=support, support_threshold=support_threshold,
               support_sigma=support_sigma, device=device)
