"""``DLInpaint``: a PyNX CDI operator that fills the detector gaps of ``cdi.iobs``
with the deep-learning inpainting model (:func:`pynx_dlgap.inpaint.infer.inpaint`).

Usage (any PyNX backend)::

    from pynx.cdi import CDI, ER
    from pynx_dlgap.operators import DLInpaint
    cdi = CDI(iobs_shifted, mask=mask_shifted)
    cdi = ER() ** 50 * DLInpaint(weights="inpaint3d.safetensors") * cdi

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
* ``'cuda'``: subclass of ``pynx.cdi.cu_operator.CUOperatorCDI`` (needs pycuda, a
  GPU and torch's CUDA build). Built after
  :func:`pynx_dlgap.pynx_backend.init_pynx_cuda`, so PyNX and torch share the
  device's primary CUDA context; the op then works **on the device**: PyNX's
  ``cdi._cu_iobs`` is handed to torch without a copy
  (:func:`pynx_dlgap.gpu.torch_view`, same device pointer), decoded, centred,
  cut into patches, run through the model, blended and written back into that
  same memory (see :func:`_DLInpaintCore._fill_tensor`). The patch plan comes
  from the host ``cdi.iobs`` (PyNX keeps it on the host anyway), and afterwards
  the host ``cdi.iobs`` is refreshed from the device, as PyNX's own CUDA
  ``InterpIobsMask`` does. If PyNX already had a context of its own, the op
  copies through the host instead (``dl_inpaint_info['zero_copy']`` is False).

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

Write-back keeps PyNX coherent (the CUDA op: above): the CPU op uses ``cdi.set_iobs`` (pulls the
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

    def _setup(self, model, weights, mode, mask, overlap, batch_size, progress, check=False, bf16=False, tta=1,
               trust="card", tta_bright=1, bright=0.01):
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
        from ..inpaint.selfcheck import check_rule
        self.check_rule = check_rule(check)  # None (no self-check) or the rule; a bad value fails here
        self.bf16 = bool(bf16)
        from ..inpaint.tta import model_dims, symmetry_views, with_views
        symmetry_views(model_dims(model), tta)  # a bad tta fails here, before the weights are read
        self.tta = int(tta)
        from ..inpaint.infer import resolve_trust
        resolve_trust(None, trust)  # a bad trust fails here too, before the weights are read
        from ..inpaint.infer import _bright_model, check_bright
        self.tta_bright, self.bright = check_bright(model_dims(model), tta_bright, bright)  # before the weights too
        # self.model below is already the tta-view ensemble: inpaint/self_check get tta_bright only above it
        self._tta_bright_over = self.tta_bright if self.tta_bright > self.tta else 1
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
        self.trust = resolve_trust(model, trust)
        self._hot = _bright_model(model, self.tta, self.tta_bright, self.bright)
        self.model = with_views(model, self.tta)

    def __str__(self):
        return f"DLInpaint[{self.family}]"

    def _request(self, stored):
        """``(intensity, to_fill, n, info)`` of the stored iobs: the decoded intensities, the
        voxels to fill (``mask=`` or PyNX's masked/estimated encoding), their number and the
        start of the info dict (a no-op warning when there is nothing to fill)."""
        inten, to_fill = decode_iobs(stored)
        n_estimated = int(np.count_nonzero((stored > MASKED_MAX) & (stored <= ESTIMATE_MAX)))
        if self.mask is not None:
            if self.mask.shape != stored.shape:
                from .._checks import PatternError
                raise PatternError(f"mask= has shape {self.mask.shape} but cdi.iobs has {stored.shape}")
            to_fill = np.fft.ifftshift(self.mask)
            inten[to_fill] = 0
        n = int(np.count_nonzero(to_fill))
        self._filled = to_fill  # what this call fills: cdi.dl_inpaint_filled, for ReleaseFill
        info = dict(operator="DLInpaint", family=self.family, mode=self.mode, voxels_filled=0,
                    voxels_estimated_before=n_estimated, explicit_mask=self.mask is not None,
                    weights=self.weights, weights_sha256=self.weights_sha256, tta=self.tta,
                    trust=self.trust, tta_bright=max(self.tta_bright, self.tta))
        if n == 0:
            warnings.warn("DLInpaint: cdi.iobs has no masked or estimated pixel; nothing to inpaint (no-op)",
                          stacklevel=4)
        return inten, to_fill, n, info

    def _new_iobs(self, cdi):
        """New stored (fft-shifted) iobs, or None when there is nothing to fill."""
        from ..inpaint.infer import inpaint
        t0 = time.perf_counter()
        stored = np.asarray(cdi.iobs)
        inten, to_fill, n, info = self._request(stored)
        if n == 0:
            info["seconds"] = time.perf_counter() - t0
            cdi.dl_inpaint_info = info
            return None
        I_c = np.fft.fftshift(inten)
        m_c = np.fft.fftshift(to_fill)
        filled, inf = inpaint(I_c, m_c, model=self.model, overlap=self.overlap, batch_size=self.batch_size,
                              progress=self.progress, return_info=True, check=self.check_rule or False,
                              bf16=self.bf16,
                              trust=self.trust, bright=self.bright, tta_bright=self._tta_bright_over)
        fill = np.fft.ifftshift(filled)[to_fill].astype(np.float32)
        new = np.array(stored, dtype=np.float32, copy=True)
        if self.mode == "observed":
            new[to_fill] = fill
        else:
            new[to_fill] = -(fill + np.float32(1)) * np.float32(1e19)
        info.update(bf16=bool(inf.get("bf16", False)), voxels_filled=n, patches=inf.get("n_patches"), batches=inf.get("n_batches"),
                    layout=inf.get("layout"), device=inf.get("device"), fill=inf.get("method", "dl"),
                    check=inf.get("check"), n_bright=inf.get("n_bright", 0), seconds=time.perf_counter() - t0)
        self._info = info
        return new

    def _fill_tensor(self, s, stored):
        """Fill the stored (fft-shifted) iobs tensor ``s`` **in place** on its device.

        ``stored``: the same values on the host (``cdi.iobs``), for the mask, the
        checks, the patch plan and the self-check. Same values as :meth:`_new_iobs`
        (to float rounding: the tests compare them on the CPU). Returns the info dict,
        or None when there is nothing to fill.
        """
        import torch
        from ..inpaint.infer import _checked_plan, _fill_values
        t0 = time.perf_counter()
        stored = np.asarray(stored)
        if tuple(s.shape) != stored.shape:
            raise ValueError(f"device iobs {tuple(s.shape)} and host iobs {stored.shape} differ")
        inten, to_fill, n, info = self._request(stored)
        info["device"] = str(s.device)
        if n == 0:
            info["seconds"] = time.perf_counter() - t0
            return None, info
        from .._checks import check_pattern
        I_c, m_c = check_pattern(np.fft.fftshift(inten), np.fft.fftshift(to_fill))
        dev = s.device
        from ..precision import resolve_bf16
        bf16 = resolve_bf16(self.bf16, dev, "DLInpaint")
        fill_t = torch.from_numpy(np.ascontiguousarray(to_fill)).to(dev)
        # the DL fill first, on the device: the self-check's default rule judges it as it is (not filled again)
        P, plan, layout, rest, _, bs = _checked_plan(I_c, m_c, self.model, self.overlap, None, None,
                                                     self.batch_size)
        # decode on the device: observed as is, free pixels -(I+1) -> I, masked/estimated/to fill -> 0
        sf = s.float()
        inten_t = torch.where(sf >= 0, sf, torch.where(sf > ESTIMATE_MAX, -sf - 1, torch.zeros_like(sf)))
        inten_t = torch.where(fill_t, torch.zeros_like(inten_t), inten_t)
        I_t = torch.fft.fftshift(inten_t)  # numpy's fftshift, any parity
        m_t = torch.fft.fftshift(fill_t)
        values, t_model = _fill_values(I_t, m_t, I_c, m_c, self.model, plan, rest, "loglinear", bs, bf16,
                                       self.progress, self.trust, self._hot)
        method, checked = "dl", None
        if self.check_rule:
            from ..inpaint.selfcheck import self_check
            dl_fill = np.array(I_c, dtype=np.float32, copy=True)
            dl_fill[m_c] = values.cpu().numpy()[m_c]
            checked = self_check(I_c, m_c, self.model, rule=self.check_rule, overlap=self.overlap,
                                 batch_size=self.batch_size, device=dev,
                                 bf16=bf16, trust=self.trust, bright=self.bright,
                                 tta_bright=self._tta_bright_over, dl_fill=dl_fill)
            print(checked.summary())
            method = checked.choice
        if method == "dl":
            values = torch.fft.ifftshift(values)
            info.update(patches=len(plan), batches=-(-len(plan) // bs), layout=str(layout), seconds_model=t_model)
        else:
            from ..inpaint.baselines import fill_loglinear
            values = torch.from_numpy(np.ascontiguousarray(np.fft.ifftshift(fill_loglinear(I_c, m_c)))).to(dev)
            info.update(patches=0, batches=0)
        if self.mode == "observed":
            new = values
        else:
            new = -(values + 1) * np.float32(1e19)
        s.copy_(torch.where(fill_t, new.to(s.dtype), s))
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        info.update(bf16=bf16, voxels_filled=n, fill=method, check=None if checked is None else checked.to_dict(),
                    seconds=time.perf_counter() - t0)
        return s, info

    @staticmethod
    def _bookkeeping(cdi):
        s = cdi.iobs
        free = (s > ESTIMATE_MAX) & (s < 0)
        cdi.iobs_sum = s[s >= 0].sum() - (s[free] + 1).sum()  # as CDI.__init__
        cdi.nb_observed_points = int(np.count_nonzero(s > ESTIMATE_MAX))
        cdi.nb_free_points = int(np.count_nonzero(free))


def store_iobs_host(cdi, new):
    """Write a new stored (fft-shifted) iobs through PyNX's ``set_iobs`` (which pulls a newer
    GPU object first and bumps the host timestamp) and update the CDI's counts."""
    cdi.set_iobs(new, shift=False)
    _DLInpaintCore._bookkeeping(cdi)


def store_iobs_opencl(pu, cdi, new):
    """Write a new stored iobs on the host and on ``pu``'s OpenCL device (prepare_data has put
    obj/support/iobs on the device; host iobs is authoritative) and update the CDI's counts."""
    import pyopencl.array as cla
    pu.cl_queue.finish()  # no pending kernel may still use the old device iobs
    pu.ev = []
    cdi.iobs = new
    cdi._cl_iobs = cla.to_device(pu.cl_queue, new, async_=False, allocator=pu.cl_mem_pool)
    _DLInpaintCore._bookkeeping(cdi)


def _make_cpu_class():
    from pynx.cdi.cpu_operator import CPUOperatorCDI

    class DLInpaintCPU(_DLInpaintCore, CPUOperatorCDI):
        """DLInpaint on PyNX's numpy CPU family (see :mod:`pynx_dlgap.operators.inpaint`)."""

        family = "cpu"

        def __init__(self, model=None, weights=None, mode="observed", mask=None, overlap=None,
                     batch_size=32, progress=False, check=False, bf16=False, tta=1, trust="card", tta_bright=1,
                     bright=0.01):
            CPUOperatorCDI.__init__(self)
            self._setup(model, weights, mode, mask, overlap, batch_size, progress, check, bf16, tta, trust,
                        tta_bright, bright)

        def op(self, cdi):
            new = self._new_iobs(cdi)
            if new is None:
                return cdi
            store_iobs_host(cdi, new)
            cdi.dl_inpaint_filled = self._filled  # for ReleaseFill (stored, fft-shifted layout)
            cdi.dl_inpaint_info = self._info
            return cdi

    return DLInpaintCPU


def _make_opencl_class():
    from pynx.cdi.cl_operator import CLOperatorCDI

    class DLInpaintCL(_DLInpaintCore, CLOperatorCDI):
        """DLInpaint on PyNX's OpenCL family (see :mod:`pynx_dlgap.operators.inpaint`)."""

        family = "opencl"

        def __init__(self, model=None, weights=None, mode="observed", mask=None, overlap=None,
                     batch_size=32, progress=False, check=False, bf16=False, processing_unit=None, tta=1,
                     trust="card", tta_bright=1, bright=0.01):
            CLOperatorCDI.__init__(self, processing_unit=processing_unit)
            self._setup(model, weights, mode, mask, overlap, batch_size, progress, check, bf16, tta, trust,
                        tta_bright, bright)

        def op(self, cdi):
            new = self._new_iobs(cdi)
            if new is None:
                return cdi
            store_iobs_opencl(self.processing_unit, cdi, new)
            cdi.dl_inpaint_filled = self._filled  # for ReleaseFill (stored, fft-shifted layout)
            cdi.dl_inpaint_info = self._info
            return cdi

    return DLInpaintCL


def _make_cuda_class():
    from pynx.cdi.cu_operator import CUOperatorCDI

    class DLInpaintCUDA(_DLInpaintCore, CUOperatorCDI):
        """DLInpaint on PyNX's CUDA family, on the device (see :mod:`pynx_dlgap.operators.inpaint`)."""

        family = "cuda"

        def __init__(self, model=None, weights=None, mode="observed", mask=None, overlap=None,
                     batch_size=32, progress=False, check=False, bf16=False, processing_unit=None, tta=1,
                     trust="card", tta_bright=1, bright=0.01):
            from ..pynx_backend import init_pynx_cuda
            self.shared_context = init_pynx_cuda()  # before PyNX makes a context of its own
            CUOperatorCDI.__init__(self, processing_unit=processing_unit)
            self._setup(model, weights, mode, mask, overlap, batch_size, progress, check, bf16, tta, trust,
                        tta_bright, bright)

        def op(self, cdi):
            import torch
            from ..gpu import torch_view
            self.processing_unit.cu_ctx.synchronize()  # PyNX's kernels are done with iobs
            arr = cdi._cu_iobs
            if self.shared_context:
                s = torch_view(arr)
                zero_copy = s.data_ptr() == int(arr.gpudata)
            else:
                s, zero_copy = torch.from_numpy(arr.get()).cuda(), False
            out, info = self._fill_tensor(s, cdi.iobs)
            if out is None:
                cdi.dl_inpaint_info = info
                return cdi
            if not zero_copy:
                arr.set(out.cpu().numpy())
            cdi.iobs = arr.get()  # host mirror, as PyNX's CUDA InterpIobsMask
            self._bookkeeping(cdi)
            cdi.dl_inpaint_filled = self._filled  # for ReleaseFill (stored, fft-shifted layout)
            info.update(zero_copy=bool(zero_copy), device_pointer=int(arr.gpudata),
                        torch_pointer=int(s.data_ptr()))
            cdi.dl_inpaint_info = info
            return cdi

    return DLInpaintCUDA


def pynx_family() -> str | None:
    """The operator family PyNX selected at import ('cpu', 'opencl', 'cuda')."""
    from ..pynx_backend import _family_of, import_pynx
    return _family_of(import_pynx())


def operator_class(name: str, family, cache: dict, make_cpu, make_opencl, make_cuda):
    """The class of operator ``name`` for a PyNX family (default: PyNX's own choice), built once.

    ``make_cpu`` / ``make_opencl`` / ``make_cuda`` build the class of each family (they
    import PyNX's family module); ``cache`` keeps the built classes.

    :raises PyNXUnavailable: PyNX (or that family's module) cannot be imported.
    :raises CUDAUnavailable: ``'cuda'`` without pycuda, a GPU or torch's CUDA build.
    """
    from ..pynx_backend import _FAMILY_MODULE, PyNXUnavailable, import_pynx
    if family is None:
        family = pynx_family()
        if family is None:
            raise PyNXUnavailable("cannot tell which operator family PyNX selected (pynx.cdi.ER is missing)")
    family = str(family).lower()
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES} or None, got {family!r}")
    if family == "cuda":
        import torch
        from ..pynx_backend import CUDAUnavailable
        if not torch.cuda.is_available():
            raise CUDAUnavailable(f"{name}: the CUDA family needs a GPU that torch can use (this torch "
                                  f"{torch.__version__} sees none); use family='opencl' or 'cpu' (PYNX_PU=opencl|cpu)")
    if family not in cache:
        import_pynx(module=_FAMILY_MODULE[family])
        cache[family] = {"cpu": make_cpu, "opencl": make_opencl, "cuda": make_cuda}[family]()
    return cache[family]


def dlinpaint_class(family: str | None = None):
    """The ``DLInpaint`` operator class of a PyNX family (default: PyNX's own choice);
    see :func:`operator_class`."""
    return operator_class("DLInpaint", family, _CLASSES, _make_cpu_class, _make_opencl_class, _make_cuda_class)


def DLInpaint(model=None, weights=None, mode: str = "observed", mask=None, overlap=None, batch_size: int = 32,
              *, family: str | None = None, progress: bool = False, check=False, bf16: bool = False,
              tta: int = 1, trust="card", tta_bright: int = 1, bright: float = 0.01):
    """A PyNX operator filling the masked voxels of ``cdi.iobs`` with the DL inpainting model.

    ``cdi = DLInpaint(...) * cdi``; composable: ``cdi = ER() ** 50 * DLInpaint() * cdi``.

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
        the log-linear fill instead where it does better than the model on the gap's mirror
        images through the Bragg peak (where there is none: where its filled pattern has less
        autocorrelation energy outside the crystal's support); the outcome is in
        ``cdi.dl_inpaint_info['check']``. ``True`` runs the default rule, a rule name
        (``'mirror'``, ``'acf'``, ``'geomean'``, ...; :func:`pynx_dlgap.inpaint.selfcheck.self_check`)
        that one.
    :param bf16: bfloat16 autocast for the model calls (faster on CPUs with bf16 support and
        on GPUs; ``benchmarks/inpaint_speed.py`` measures its gap errors against fp32); only
        where the device runs bf16 natively, else float32 and a warning (:mod:`pynx_dlgap.precision`;
        ``dl_inpaint_info['bf16']`` says what ran).
    :param tta: test-time ensemble over this many flip/transposition views of each patch
        (``inpaint(tta=)``, :mod:`pynx_dlgap.inpaint.tta`); 1 = the model alone.
    :param trust: trust region of the fill around log-linear interpolation, ``log(I+1)``
        units (``inpaint(trust=)``): ``'card'`` (default) the model card's value, ``None``
        none, or a number >= 0.
    :param tta_bright, bright: a test-time ensemble of ``tta_bright`` views for the bright
        patches only (log-linear prefill >= ``bright`` x the brightest measured voxel),
        as ``inpaint(tta_bright=, bright=)``; default 1 (off).
    :param family: ``'cpu'`` / ``'opencl'`` / ``'cuda'`` to force a family; default the family
        of ``pynx.cdi.ER``.
    :raises PyNXUnavailable: PyNX missing (with the install hint).
    :raises WeightsError: weights missing/corrupted (checked here, before any work).
    :raises OpenCLUnavailable: OpenCL family and no OpenCL device.
    :raises CUDAUnavailable: CUDA family without pycuda, a GPU or torch's CUDA build.
    A ``PatternError`` from ``inpaint`` (gap too wide, ...) passes through when applied.
    """
    cls = dlinpaint_class(family)
    if cls.family == "opencl":
        from ..pynx_backend import init_pynx_opencl
        init_pynx_opencl()  # keeps a device already set; else a GPU, else PoCL
    return cls(model=model, weights=weights, mode=mode, mask=mask, overlap=overlap, batch_size=batch_size,
               progress=progress, check=check, bf16=bf16, tta=tta, trust=trust,
               tta_bright=tta_bright, bright=bright)
