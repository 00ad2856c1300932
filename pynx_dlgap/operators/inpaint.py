"""``DLInpaint``: a PyNX CDI operator that fills the detector gaps of ``cdi.iobs``
with the deep-learning inpainting model (:func:`pynx_dlgap.inpaint.infer.inpaint`).

Usage (any PyNX backend)::

    from pynx.cdi import CDI, ER
    from pynx_dlgap.operators import DLInpaint
    cdi = CDI(iobs_shifted, mask=mask_shifted)
    cdi = ER**50 * DLInpaint(weights="inpaint3d.safetensors") * cdi

Operator families
-----------------
PyNX's ``Operator.__mul__`` puts a chain into the family of its *left* operand,
but each op keeps its own ``prepare_data``/``op``/``timestamp_increment``, so an
op must exist in the family whose data placement it respects. There is one
class per family, created lazily (PyNX is only imported when an operator is
built; ``import pynx_dlgap.operators`` works without it):

* ``'cpu'``: subclass of ``pynx.cdi.cpu_operator.CPUOperatorCDI``;
* ``'opencl'``: subclass of ``pynx.cdi.cl_operator.CLOperatorCDI`` (the OpenCL
  device is set with :func:`pynx_dlgap.pynx_backend.init_pynx_opencl` when PyNX
  has none yet: PyNX never picks PoCL itself);
* ``'cuda'``: not implemented yet (``NotImplementedError``).

:func:`DLInpaint` returns an instance of the family PyNX selected at import
(the module of ``pynx.cdi.ER``), or of ``family=``.

What the operator does
----------------------
It reads the host ``cdi.iobs`` (fft-shifted, authoritative in PyNX) and decodes:

* ``iobs <= -1e38``: masked -> filled;
* ``-1e38 < iobs <= -1e19``: *estimated* (``-(I+1)*1e19``, e.g. from
  ``InterpIobsMask``) -> treated as masked and re-filled;
* ``-1e19 < iobs < 0``: free pixels (``-(I+1)``): measured, used as ``I`` for the
  model input and left unchanged;
* ``iobs >= 0``: observed, unchanged.

An explicit ``mask=`` (centred, True = not measured) replaces this decoding:
exactly its voxels are filled (pixels encoded as masked in ``cdi.iobs`` but not
in ``mask=`` are then read as measured zeros: pass the complete mask). The centred pattern (``np.fft.fftshift`` of the
stored array, as ``cdi.get_iobs(shift=True)``) is inpainted and shifted back
with ``np.fft.ifftshift`` (exact inverse, any parity). Filled voxels are
written as:

* ``mode='observed'``: plain observed intensities (full amplitude constraint);
* ``mode='estimate'``: PyNX's estimated encoding ``-(I+1)*1e19`` (loose
  constraint between ``confidence_interval_factor_mask_min/max`` times the
  estimate on the OpenCL/CUDA operators). Note: PyNX 2025.1's **CPU** operators
  treat estimated pixels as masked (no constraint at all).

Write-back keeps PyNX coherent: the CPU op uses ``cdi.set_iobs`` (pulls the
object from a GPU if it is newer, bumps the host timestamp); the OpenCL op,
whose data is on the device after ``prepare_data``, writes the host ``iobs`` and
uploads it to ``cdi._cl_iobs`` (as PyNX's ``InterpIobsMask`` does), without
bumping the host timestamp (which would re-upload a stale host object). Both
then recompute ``cdi.iobs_sum`` (as the ``CDI`` constructor: observed plus free
pixels) and ``nb_observed_points`` / ``nb_free_points``. A summary is stored in
``cdi.dl_inpaint_info``.
"""
from __future__ import annotations

import time
import warnings

import numpy as np

__all__ = ["DLInpaint", "dlinpaint_class", "pynx_family", "decode_iobs", "MASKED_MAX", "ESTIMATE_MAX", "FAMILIES"]

#: ``iobs <= MASKED_MAX``: masked (PyNX writes -1.05e38)
MASKED_MAX = -1e38
#: ``MASKED_MAX < iobs <= ESTIMATE_MAX``: estimated intensity ``-(I+1)*1e19``
ESTIMATE_MAX = -1e19
#: value PyNX writes for masked pixels
_MASKED_VALUE = np.float32(-1.05e38)
FAMILIES = ("cpu", "opencl", "cuda")
_MODES = ("observed", "estimate")
_CLASSES: dict = {}


def decode_iobs(stored):
    """``(intensity, to_fill)`` from a PyNX-encoded iobs array (same layout).

    ``intensity``: observed value, free pixels decoded to ``I``, 0 where masked or
    estimated; ``to_fill``: masked or estimated voxels.
    """
    s = np.asarray(stored, dtype=np.float32)
    to_fill = s <= ESTIMATE_MAX
    free = (s > ESTIMATE_MAX) & (s < 0)
    inten = np.where(s >= 0, s, np.float32(0)).astype(np.float32)
    inten[free] = -s[free] - 1
    return inten, to_fill


class _DLInpaintCore:
    """Backend-independent part (options, model, the host-side computation)."""

    family = None

    def _setup(self, model, weights, mode, mask, overlap, batch_size, progress, check=False):
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if model is not None and weights is not None:
            raise ValueError("pass either model= or weights=, not both")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.mode = mode
        self.mask = None if mask is None else np.asarray(mask).astype(bool)
        self.overlap = overlap
        self.batch_size = int(batch_size)
        self.progress = bool(progress)
        self.check = bool(check)
        self.weights_sha256 = None
        self.weights = None
        if model is None:
            # fails here, before any work, with the WeightsError of load_inpaint_model
            from ..inpaint.infer import DEFAULT_WEIGHTS, load_inpaint_model
            model, card = load_inpaint_model(weights)
            self.weights = str(DEFAULT_WEIGHTS if weights is None else weights)
            self.weights_sha256 = (card or {}).get("sha256")
        else:
            card = getattr(model, "card", None) or {}
            self.weights_sha256 = card.get("sha256")
        self.model = model

    def __str__(self):
        return f"DLInpaint[{self.family}]"

    def _new_iobs(self, cdi):
        """New stored (fft-shifted) iobs, or None when there is nothing to fill."""
        from ..inpaint.infer import inpaint
        t0 = time.perf_counter()
        stored = np.asarray(cdi.iobs)
        inten, to_fill = decode_iobs(stored)
        n_estimated = int(np.count_nonzero((stored > MASKED_MAX) & (stored <= ESTIMATE_MAX)))
        if self.mask is not None:
            if self.mask.shape != stored.shape:
                from .._checks import PatternError
                raise PatternError(f"mask= has shape {self.mask.shape} but cdi.iobs has {stored.shape}")
            to_fill = np.fft.ifftshift(self.mask)
            inten[to_fill] = 0
        n = int(np.count_nonzero(to_fill))
        info = dict(operator="DLInpaint", family=self.family, mode=self.mode, voxels_filled=0,
                    voxels_estimated_before=n_estimated, explicit_mask=self.mask is not None,
                    weights=self.weights, weights_sha256=self.weights_sha256)
        if n == 0:
            warnings.warn("DLInpaint: cdi.iobs has no masked or estimated pixel; nothing to inpaint (no-op)",
                          stacklevel=3)
            info["seconds"] = time.perf_counter() - t0
            cdi.dl_inpaint_info = info
            return None
        I_c = np.fft.fftshift(inten)
        m_c = np.fft.fftshift(to_fill)
        filled, inf = inpaint(I_c, m_c, model=self.model, overlap=self.overlap, batch_size=self.batch_size,
                              progress=self.progress, return_info=True, check=self.check)
        fill = np.fft.ifftshift(filled)[to_fill].astype(np.float32)
        new = np.array(stored, dtype=np.float32, copy=True)
        if self.mode == "observed":
            new[to_fill] = fill
        else:
            new[to_fill] = -(fill + np.float32(1)) * np.float32(1e19)
        info.update(voxels_filled=n, patches=inf.get("n_patches"), batches=inf.get("n_batches"),
                    layout=inf.get("layout"), device=inf.get("device"), fill=inf.get("method", "dl"),
                    check=inf.get("check"), seconds=time.perf_counter() - t0)
        self._info = info
        return new

    @staticmethod
    def _bookkeeping(cdi):
        s = cdi.iobs
        free = (s > ESTIMATE_MAX) & (s < 0)
        cdi.iobs_sum = s[s >= 0].sum() - (s[free] + 1).sum()  # as CDI.__init__
        cdi.nb_observed_points = int(np.count_nonzero(s > ESTIMATE_MAX))
        cdi.nb_free_points = int(np.count_nonzero(free))


def _make_cpu_class():
    from pynx.cdi.cpu_operator import CPUOperatorCDI

    class DLInpaintCPU(_DLInpaintCore, CPUOperatorCDI):
        """DLInpaint on PyNX's numpy CPU family (see :mod:`pynx_dlgap.operators.inpaint`)."""

        family = "cpu"

        def __init__(self, model=None, weights=None, mode="observed", mask=None, overlap=None,
                     batch_size=32, progress=False, check=False):
            CPUOperatorCDI.__init__(self)
            self._setup(model, weights, mode, mask, overlap, batch_size, progress, check)

        def op(self, cdi):
            new = self._new_iobs(cdi)
            if new is None:
                return cdi
            cdi.set_iobs(new, shift=False)  # pulls a newer GPU object first, bumps the host timestamp
            self._bookkeeping(cdi)
            cdi.dl_inpaint_info = self._info
            return cdi

    return DLInpaintCPU


def _make_opencl_class():
    import pyopencl.array as cla
    from pynx.cdi.cl_operator import CLOperatorCDI

    class DLInpaintCL(_DLInpaintCore, CLOperatorCDI):
        """DLInpaint on PyNX's OpenCL family (see :mod:`pynx_dlgap.operators.inpaint`)."""

        family = "opencl"

        def __init__(self, model=None, weights=None, mode="observed", mask=None, overlap=None,
                     batch_size=32, progress=False, check=False, processing_unit=None):
            CLOperatorCDI.__init__(self, processing_unit=processing_unit)
            self._setup(model, weights, mode, mask, overlap, batch_size, progress, check)

        def op(self, cdi):
            # prepare_data has put obj/support/iobs on the device; host iobs is authoritative
            new = self._new_iobs(cdi)
            if new is None:
                return cdi
            pu = self.processing_unit
            pu.cl_queue.finish()  # no pending kernel may still use the old device iobs
            pu.ev = []
            cdi.iobs = new
            cdi._cl_iobs = cla.to_device(pu.cl_queue, new, async_=False, allocator=pu.cl_mem_pool)
            self._bookkeeping(cdi)
            cdi.dl_inpaint_info = self._info
            return cdi

    return DLInpaintCL


def pynx_family() -> str | None:
    """The operator family PyNX selected at import ('cpu', 'opencl', 'cuda')."""
    from ..pynx_backend import _family_of, import_pynx
    return _family_of(import_pynx())


def operator_class(name: str, family, cache: dict, make_cpu, make_opencl):
    """The class of operator ``name`` for a PyNX family (default: PyNX's own choice), built once.

    ``make_cpu`` / ``make_opencl`` build the class of each family (they import PyNX's
    family module); ``cache`` keeps the built classes.

    :raises PyNXUnavailable: PyNX (or that family's module) cannot be imported.
    :raises NotImplementedError: ``'cuda'`` (needs pycuda; not written yet).
    """
    from ..pynx_backend import PyNXUnavailable, import_pynx
    if family is None:
        family = pynx_family()
        if family is None:
            raise PyNXUnavailable("cannot tell which operator family PyNX selected (pynx.cdi.ER is missing)")
    family = str(family).lower()
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES} or None, got {family!r}")
    if family == "cuda":
        raise NotImplementedError(f"{name} has no CUDA-family operator yet (it needs pycuda and a GPU); "
                                  "use family='opencl' or family='cpu' (PYNX_PU=opencl|cpu)")
    if family not in cache:
        import_pynx(module="pynx.cdi.cpu_operator" if family == "cpu" else "pynx.cdi.cl_operator")
        cache[family] = make_cpu() if family == "cpu" else make_opencl()
    return cache[family]


def dlinpaint_class(family: str | None = None):
    """The ``DLInpaint`` operator class of a PyNX family (default: PyNX's own choice);
    see :func:`operator_class`."""
    return operator_class("DLInpaint", family, _CLASSES, _make_cpu_class, _make_opencl_class)


def DLInpaint(model=None, weights=None, mode: str = "observed", mask=None, overlap=None, batch_size: int = 32,
              *, family: str | None = None, progress: bool = False, check: bool = False):
    """A PyNX operator filling the masked voxels of ``cdi.iobs`` with the DL inpainting model.

    ``cdi = DLInpaint(...) * cdi``; composable: ``cdi = ER**50 * DLInpaint() * cdi``.

    :param model: an inpainting model (e.g. from ``load_inpaint_model``); default ``weights``.
    :param weights: weights file; default the shipped ``weights/inpaint3d.safetensors``
        (missing in this copy: the default then raises ``WeightsError``).
    :param mode: ``'observed'`` (filled values become observed intensities) or
        ``'estimate'`` (PyNX estimated encoding ``-(I+1)*1e19``; loose constraint on
        OpenCL/CUDA, **treated as masked by PyNX 2025.1's CPU operators**).
    :param mask: optional centred bool array, True = not measured; replaces the
        decoding of masked/estimated pixels from ``cdi.iobs``.
    :param overlap: patch overlap passed to ``inpaint``; :param batch_size: patches per call.
    :param check: run the self-check first (:mod:`pynx_dlgap.inpaint.selfcheck`) and write
        the log-linear fill instead where it beats the model on this pattern's held-back
        copies of the gap; the outcome is in ``cdi.dl_inpaint_info['check']``.
    :param family: ``'cpu'`` / ``'opencl'`` to force a family; default the family of
        ``pynx.cdi.ER``. ``'cuda'`` raises ``NotImplementedError``.
    :raises PyNXUnavailable: PyNX missing (with the install hint).
    :raises WeightsError: weights missing/corrupted (checked here, before any work).
    :raises OpenCLUnavailable: OpenCL family and no OpenCL device.
    A ``PatternError`` from ``inpaint`` (gap too wide, ...) passes through when applied.
    """
    cls = dlinpaint_class(family)
    if cls.family == "opencl":
        from ..pynx_backend import init_pynx_opencl
        init_pynx_opencl()  # keeps a device already set; else a GPU, else PoCL
    return cls(model=model, weights=weights, mode=mode, mask=mask, overlap=overlap, batch_size=batch_size,
               progress=progress, check=check)
