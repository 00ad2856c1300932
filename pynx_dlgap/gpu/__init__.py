"""Device-side kernels of pynx-dlgap (sources in ``pynx_dlgap/kernels/``).

* :func:`kernel_source` — the ``.cl`` / ``.cu`` text;
* :class:`OpenCLKernels` — the OpenCL kernels built for a ``pyopencl`` context
  (PyNX's, or PoCL's CPU device in the tests), with numpy-array helpers;
* :func:`cuda_module` — the CUDA kernels compiled at run time by NVRTC through
  CuPy (``cupy.RawModule``), when CuPy and a GPU are there.

Kernels: ``dl_write_iobs`` (DL values into PyNX's iobs encoding: observed or
*estimated* ``-(I+1)*1e19``, in place where a fill flag is set) and
``dl_phasor_amplitude`` (``sqrt(I) exp(i phase)`` from centred arrays into PyNX's
fft-shifted layout, ``stored[j] = centred[(j + n//2) % n]`` = ``numpy.fft.ifftshift``;
0 where masked or where the phase is NaN); and the three steps of whole-pattern
inpainting on the device: ``dl_gather_patches`` (patches of the centred pattern at
given corners, read from the centred or PyNX's stored layout), ``dl_scatter_patch``
(one patch's ``w * log(1 + pred)`` and ``w`` added into centred accumulators; one
launch per patch, so overlapping patches never race and the sum order is fixed)
and ``dl_blend_write_iobs`` (``expm1(acc / wsum)`` written into PyNX's iobs
encoding, stored layout, where ``wsum > 0``). Numpy references:
:func:`write_iobs_reference`, :func:`phasor_amplitude_reference`,
:func:`gather_patches_reference`, :func:`scatter_blend_reference`,
:func:`blend_write_iobs_reference`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["kernel_source", "KERNEL_DIR", "OpenCLKernels", "cuda_module", "torch_view", "write_iobs_reference",
           "phasor_amplitude_reference", "gather_patches_reference", "scatter_blend_reference",
           "blend_write_iobs_reference"]

KERNEL_DIR = Path(__file__).resolve().parent.parent / "kernels"


def kernel_source(kind: str) -> str:
    """Text of ``kernels/dlgap.cl`` (``kind='opencl'``) or ``kernels/dlgap.cu`` (``'cuda'``)."""
    name = {"opencl": "dlgap.cl", "cuda": "dlgap.cu"}[kind]
    return (KERNEL_DIR / name).read_text()


def write_iobs_reference(iobs, values, fill, mode: str = "observed") -> np.ndarray:
    """Numpy reference of ``dl_write_iobs`` (returns a new array)."""
    out = np.array(iobs, dtype=np.float32, copy=True)
    v = np.maximum(np.asarray(values, np.float32), 0)
    f = np.asarray(fill, bool)
    out[f] = v[f] if mode == "observed" else -(v[f] + 1) * np.float32(1e19)
    return out


def phasor_amplitude_reference(intensity, phase, masked=None) -> np.ndarray:
    """Numpy reference of ``dl_phasor_amplitude``: ``ifftshift(sqrt(I) exp(i phase))`` (complex64)."""
    I = np.asarray(intensity, np.float64)
    ph = np.asarray(phase, np.float64)
    ok = np.isfinite(ph) & (np.zeros(I.shape, bool) if masked is None else ~np.asarray(masked, bool))
    c = np.where(ok, np.sqrt(np.clip(I, 0, None)) * np.exp(1j * np.where(ok, ph, 0)), 0)
    return np.fft.ifftshift(c).astype(np.complex64)


def _corners3(corners, ndim):
    c = np.asarray(corners, dtype=np.int64).reshape(-1, ndim)
    if ndim == 2:
        c = np.concatenate([np.zeros((len(c), 1), np.int64), c], axis=1)
    return np.ascontiguousarray(c, dtype=np.int32)


def gather_patches_reference(src, corners, patch, stored: bool = False) -> np.ndarray:
    """Numpy reference of ``dl_gather_patches``: ``(B, *patch)`` patches of the centred pattern.

    ``src`` is the centred pattern, or PyNX's stored (fft-shifted) one with ``stored=True``.
    """
    c = np.fft.fftshift(src) if stored else np.asarray(src)
    return np.stack([c[tuple(slice(a, a + p) for a, p in zip(lo, patch))] for lo in corners]).astype(np.float32)


def scatter_blend_reference(shape, preds, weights, corners):
    """Numpy (float64) reference of the ``dl_scatter_patch`` launches: ``(acc, wsum)``, centred."""
    acc = np.zeros(shape, np.float64)
    wsum = np.zeros(shape, np.float64)
    for b, lo in enumerate(corners):
        sl = tuple(slice(a, a + p) for a, p in zip(lo, preds.shape[1:]))
        w = weights[b].astype(np.float64)
        acc[sl] += w * np.log1p(np.maximum(preds[b].astype(np.float64), 0))
        wsum[sl] += w
    return acc, wsum


def blend_write_iobs_reference(iobs, acc, wsum, mode: str = "observed") -> np.ndarray:
    """Numpy reference of ``dl_blend_write_iobs`` (``iobs`` stored layout; ``acc``/``wsum`` centred)."""
    ok = np.asarray(wsum) > 0
    v = np.where(ok, np.maximum(np.expm1(np.minimum(np.asarray(acc) / np.where(ok, wsum, 1), 88.0)), 0), 0)
    return write_iobs_reference(iobs, np.fft.ifftshift(v), np.fft.ifftshift(ok), mode)


#: ``mode`` argument of dl_write_iobs / dl_blend_write_iobs
_MODES = {"observed": 0, "estimate": 1}


def _dims3(shape):
    if len(shape) == 2:
        return (1,) + tuple(shape)
    if len(shape) == 3:
        return tuple(shape)
    raise ValueError(f"2-D or 3-D arrays only, got shape {shape}")


class OpenCLKernels:
    """The OpenCL kernels built for ``context`` (a ``pyopencl.Context``) on ``queue``."""

    def __init__(self, context, queue=None):
        import pyopencl as cl
        self.cl = cl
        self.ctx = context
        self.queue = queue or cl.CommandQueue(context)
        self.prg = cl.Program(context, kernel_source("opencl")).build()
        self._write = cl.Kernel(self.prg, "dl_write_iobs")
        self._phasor = cl.Kernel(self.prg, "dl_phasor_amplitude")
        self._gather = cl.Kernel(self.prg, "dl_gather_patches")
        self._scatter = cl.Kernel(self.prg, "dl_scatter_patch")
        self._blend = cl.Kernel(self.prg, "dl_blend_write_iobs")

    def write_iobs(self, iobs_dev, values_dev, fill_dev, mode: str = "observed"):
        """In place on ``pyopencl.array`` arguments (float32, float32, int8/bool, same size)."""
        n = int(iobs_dev.size)
        if values_dev.size != n or fill_dev.size != n:
            raise ValueError("iobs, values and fill must have the same size")
        m = _MODES[mode]
        self._write(self.queue, (n,), None, iobs_dev.data, values_dev.data, fill_dev.data,
                    np.int32(m), np.int32(n))
        return iobs_dev

    def phasor_amplitude(self, intensity_dev, phase_dev, masked_dev, out_dev=None):
        """``pyopencl.array`` complex64 (stored layout) from centred float32/float32/int8 arrays."""
        import pyopencl.array as cla
        nz, ny, nx = _dims3(intensity_dev.shape)
        if out_dev is None:
            out_dev = cla.empty(self.queue, intensity_dev.shape, np.complex64)
        self._phasor(self.queue, (nz * ny * nx,), None, out_dev.data, intensity_dev.data,
                     phase_dev.data, masked_dev.data, np.int32(nz), np.int32(ny), np.int32(nx))
        return out_dev

    def gather_patches(self, src_dev, corners, patch, stored: bool = False, out_dev=None):
        """``(B, *patch)`` float32 ``pyopencl.array`` of patches of ``src_dev`` (centred, or stored layout)."""
        import pyopencl.array as cla
        nd = src_dev.ndim
        nz, ny, nx = _dims3(src_dev.shape)
        pz, py, px = _dims3(tuple(patch))
        c = _corners3(corners, nd)
        if out_dev is None:
            out_dev = cla.empty(self.queue, (len(c),) + tuple(patch), np.float32)
        cd = cla.to_device(self.queue, c)
        self._gather(self.queue, (len(c) * pz * py * px,), None, out_dev.data, src_dev.data, cd.data,
                     np.int32(pz), np.int32(py), np.int32(px), np.int32(nz), np.int32(ny), np.int32(nx),
                     np.int32(bool(stored)), np.int32(len(c)))
        return out_dev

    def scatter_blend(self, acc_dev, wsum_dev, pred_dev, weight_dev, corners):
        """Add each patch's ``w * log(1 + pred)`` and ``w`` into the centred accumulators, one launch per patch."""
        nd = acc_dev.ndim
        nz, ny, nx = _dims3(acc_dev.shape)
        pz, py, px = _dims3(tuple(pred_dev.shape[1:]))
        for b, lo in enumerate(_corners3(corners, nd)):
            self._scatter(self.queue, (pz * py * px,), None, acc_dev.data, wsum_dev.data, pred_dev.data,
                          weight_dev.data, np.int32(b), *(np.int32(v) for v in lo),
                          np.int32(pz), np.int32(py), np.int32(px), np.int32(nz), np.int32(ny), np.int32(nx))
        return acc_dev, wsum_dev

    def blend_write_iobs(self, iobs_dev, acc_dev, wsum_dev, mode: str = "observed"):
        """Blended values into PyNX's iobs (stored layout) in place, where ``wsum > 0``."""
        nz, ny, nx = _dims3(iobs_dev.shape)
        self._blend(self.queue, (nz * ny * nx,), None, iobs_dev.data, acc_dev.data, wsum_dev.data,
                    np.int32(_MODES[mode]), np.int32(nz), np.int32(ny), np.int32(nx))
        return iobs_dev

    # numpy in / numpy out (one host round trip), for tests and the OpenCL-family operators
    def _up(self, a, dtype=np.float32):
        """A C-contiguous ``dtype`` copy of the numpy array ``a`` on the device."""
        import pyopencl.array as cla
        return cla.to_device(self.queue, np.ascontiguousarray(a, dtype))

    def gather_patches_numpy(self, src, corners, patch, stored=False):
        return self.gather_patches(self._up(src), corners, patch, stored).get()

    def scatter_blend_numpy(self, shape, preds, weights, corners):
        import pyopencl.array as cla
        q = self.queue
        acc, wsum = cla.zeros(q, tuple(shape), np.float32), cla.zeros(q, tuple(shape), np.float32)
        self.scatter_blend(acc, wsum, self._up(preds), self._up(weights), corners)
        return acc.get(), wsum.get()

    def blend_write_iobs_numpy(self, iobs, acc, wsum, mode="observed"):
        d = self._up(iobs)
        self.blend_write_iobs(d, self._up(acc), self._up(wsum), mode)
        return d.get()

    def write_iobs_numpy(self, iobs, values, fill, mode="observed"):
        d = self._up(iobs)
        self.write_iobs(d, self._up(values), self._up(fill, np.int8), mode)
        return d.get()

    def phasor_amplitude_numpy(self, intensity, phase, masked=None):
        m = np.zeros(np.shape(intensity), np.int8) if masked is None else masked
        return self.phasor_amplitude(self._up(intensity), self._up(phase), self._up(m, np.int8)).get()


def cuda_module():
    """The CUDA kernels compiled by NVRTC through CuPy: ``cupy.RawModule`` (needs CuPy and a GPU)."""
    try:
        import cupy
    except ImportError as e:  # pragma: no cover - GPU machines only
        raise RuntimeError("the CUDA kernels are compiled at run time with CuPy (pip install cupy-cuda12x "
                           "or cupy-cuda13x on a machine with an NVIDIA GPU)") from e
    return cupy.RawModule(code=kernel_source("cuda"), options=("-std=c++17",))


class _CudaArrayInterface:
    """Holds a ``__cuda_array_interface__`` dict and the array that owns the memory
    (torch keeps this object alive as long as the tensor, hence the owner too)."""

    def __init__(self, cai: dict, owner):
        self.__cuda_array_interface__ = cai
        self.owner = owner


def torch_view(arr):
    """A torch CUDA tensor on the **same device memory** as ``arr`` (no copy).

    ``arr``: a pycuda ``GPUArray`` (PyNX's ``cdi._cu_iobs``, ``_cu_obj``, ``_cu_support``...),
    a CuPy array, or anything with ``__cuda_array_interface__`` (version 2 or 3). Complex
    arrays are viewed through a float pair and :func:`torch.view_as_complex`, so every
    dtype torch knows works. Writes through the tensor change ``arr``. The memory must
    belong to the CUDA context torch uses (the device's primary context: PyNX's CUDA
    operators get it through :func:`pynx_dlgap.pynx_backend.init_pynx_cuda`). Check with
    ``t.data_ptr() == int(arr.gpudata)`` (pycuda).
    """
    import torch
    cai = dict(arr.__cuda_array_interface__)
    typestr = cai["typestr"]
    cplx = typestr[1] == "c"
    if cplx:
        half = int(typestr[2:]) // 2
        strides = cai.get("strides")
        cai.update(shape=tuple(cai["shape"]) + (2,), typestr=f"{typestr[0]}f{half}",
                   strides=None if strides is None else tuple(strides) + (half,))
    cai["stream"] = None  # we synchronise explicitly around the hand-over
    t = torch.as_tensor(_CudaArrayInterface(cai, arr), device="cuda")
    return torch.view_as_complex(t) if cplx else t
