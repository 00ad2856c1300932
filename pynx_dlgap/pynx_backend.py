"""Small helpers to import PyNX with a chosen backend and to pick its OpenCL device.

Nothing in the core of pynx-dlgap imports PyNX; code that needs it calls these
helpers *lazily* (inside a function), so that a missing PyNX or a missing
OpenCL platform gives one clear error instead of an import failure.

Facts these helpers rely on (PyNX 2025.1, see ``shared/docs/pynx.md``):

* PyNX chooses its backend family once, when ``pynx.processing_unit`` is first
  imported: ``PYNX_PU=cpu|opencl|cuda`` in the environment *before* that import
  forces one. :func:`import_pynx` sets it for you when PyNX is not imported yet,
  and otherwise hands back ``pynx.cdi`` with the requested family's operators
  (the families are plain modules, ``pynx.cdi.cpu_operator`` etc., and mix
  freely on one ``CDI``).
* PyNX's automatic device search (``select_gpu``) skips non-GPU OpenCL devices,
  so on a machine with only PoCL (OpenCL on the CPU) every OpenCL operator fails
  unless a device is set by hand *before the first OpenCL operator is created*.
  :func:`init_pynx_opencl` does that: it initialises the OpenCL processing unit of
  the CDI operators (``pynx.cdi.cl_operator.default_processing_unit``) with the
  chosen ``pyopencl.Device`` (``init_cl(cl_device=..., test_fft=False)``) and, if
  unset, records the device in PyNX's main ``default_processing_unit`` too.
* PyNX's CUDA family makes its **own** pycuda context (``device.make_context()``
  in ``pynx.processing_unit.cu_resources``, cached per device), while torch uses
  the device's *primary* context; memory of one context is not for the other.
  :func:`init_pynx_cuda` registers the primary context in PyNX's cache before
  PyNX asks for one, so PyNX's ``GPUArray`` objects and torch's tensors live in one
  context and pass between them without a copy (:func:`pynx_dlgap.gpu.torch_view`).
* With no OpenCL platform at all, ``pyopencl.get_platforms()`` raises
  ``LogicError: clGetPlatformIDs failed: PLATFORM_NOT_FOUND_KHR``; this module
  turns that into an empty device list / :class:`OpenCLUnavailable`.

Examples
--------
>>> from pynx_dlgap.pynx_backend import opencl_devices, init_pynx_opencl
>>> devs = opencl_devices()                       # [] when there is no platform
>>> dev = init_pynx_opencl() if devs else None    # PoCL CPU device on a GPU-less machine
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import warnings

__all__ = [
    "PyNXUnavailable", "PyNXMissing", "OpenCLUnavailable", "INSTALL_HINT",
    "pynx_available", "import_pynx", "opencl_devices", "has_opencl_device",
    "select_opencl_device", "init_pynx_opencl", "pynx_has_cuda", "init_pynx_cuda", "CUDAUnavailable",
]

INSTALL_HINT = ("PyNX is not on PyPI (the PyPI project 'pynx' is an unrelated nginx tool): run `make setup` "
                "in the pynx-dlgap repository, which installs real PyNX 2025.1 into the virtual environment "
                "(or reuses an importable PyNX from ESRF, conda or Debian's python3-pynx)")

_OPENCL_HINT = ("no OpenCL platform/device found. On a machine without GPU, install a CPU OpenCL platform: "
                "`pip install pocl-binary-distribution` (PoCL, no root) or Debian's `pocl-opencl-icd`; "
                "`make setup` does this")

_BACKENDS = ("cpu", "opencl", "cuda")


class PyNXUnavailable(ImportError):
    """PyNX (or the part of it that is needed) cannot be imported."""


class CUDAUnavailable(RuntimeError):
    """No usable CUDA path (pycuda, a GPU, or torch's CUDA build missing)."""


class OpenCLUnavailable(RuntimeError):
    """No usable OpenCL platform/device (pyopencl missing, no ICD, PLATFORM_NOT_FOUND_KHR)."""


#: alias used in some docstrings of the project
PyNXMissing = PyNXUnavailable


def pynx_available() -> bool:
    """True when the real PyNX (with ``pynx.cdi``) can be found, without importing it."""
    try:
        return (importlib.util.find_spec("pynx") is not None
                and importlib.util.find_spec("pynx.cdi") is not None)
    except (ImportError, ValueError):
        return False


_FAMILY_MODULE = {"cpu": "pynx.cdi.cpu_operator", "opencl": "pynx.cdi.cl_operator",
                  "cuda": "pynx.cdi.cu_operator"}


def _family_of(cdi_module):
    """Which operator family ``pynx.cdi``'s plain names (``ER``, ``HIO``...) belong to."""
    m = getattr(getattr(cdi_module, "ER", None), "__module__", "")
    for k, v in _FAMILY_MODULE.items():
        if m == v:
            return k
    return None


def import_pynx(backend: str | None = None, module: str = "pynx.cdi"):
    """Import PyNX (by default ``pynx.cdi``) and return the module.

    :param backend: ``'cpu'``, ``'opencl'``, ``'cuda'`` or None (PyNX's own
        choice). When PyNX is not imported yet, ``PYNX_PU`` is set to it before
        the import (PyNX's mechanism), so ``pynx.cdi``'s operators are that
        family. When PyNX was already imported with another family (e.g. an
        OpenCL fill ran first in this process), the returned object is a module
        holding everything of ``pynx.cdi`` with the operator names (``ER``,
        ``HIO``, ``RAAR``, ``SupportUpdate``, ...) taken from the requested
        family (``pynx.cdi.cpu_operator`` / ``cl_operator`` / ``cu_operator``):
        PyNX mixes families on one ``CDI`` (each operator moves the data). With
        ``'opencl'`` the OpenCL device is also set (:func:`init_pynx_opencl`:
        a GPU, else PoCL), since PyNX never picks a CPU OpenCL device itself.
        Only used when ``module == 'pynx.cdi'``.
    :raises PyNXUnavailable: PyNX is missing/broken (with install instructions),
        or the requested backend is not available.
    :raises OpenCLUnavailable: ``'opencl'`` asked and no OpenCL device exists.
    """
    import sys
    import types
    if backend is not None:
        backend = backend.lower()
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS} or None, got {backend!r}")
        if "pynx.processing_unit" not in sys.modules:
            os.environ["PYNX_PU"] = backend
    if not pynx_available():
        raise PyNXUnavailable("PyNX is not installed. " + INSTALL_HINT)
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # ProcessingUnitException, ImportError of a dependency, ...
        if type(e).__name__ == "ProcessingUnitException":
            raise PyNXUnavailable(f"PyNX could not select the requested backend (PYNX_PU="
                                  f"{os.environ.get('PYNX_PU')}): {e}") from e
        raise PyNXUnavailable(f"PyNX is installed but `import {module}` failed ({type(e).__name__}: {e}). "
                              + INSTALL_HINT) from e
    if backend is None or module != "pynx.cdi":
        return mod
    if backend == "opencl":
        init_pynx_opencl()
    if _family_of(mod) == backend:
        return mod
    try:
        fam = importlib.import_module(_FAMILY_MODULE[backend])
    except Exception as e:
        raise PyNXUnavailable(f"PyNX's {backend} operators cannot be imported ({type(e).__name__}: {e})"
                              + ("; CUDA needs a working pycuda and a GPU" if backend == "cuda" else "")) from e
    view = types.ModuleType(f"pynx.cdi[{backend}]",
                            f"pynx.cdi with the {backend} operator family (made by pynx_dlgap.pynx_backend)")
    view.__dict__.update({k: v for k, v in mod.__dict__.items() if k not in ("__name__", "__doc__")})
    for name in getattr(fam, "__all__", ()):
        setattr(view, name, getattr(fam, name))
    view.__pynx_backend__ = backend
    return view


def pynx_has_cuda() -> bool:
    """True when PyNX imported with a working CUDA (pycuda) backend available."""
    try:
        pu = importlib.import_module("pynx.processing_unit")
    except Exception:
        return False
    return bool(getattr(pu, "has_cuda", False))


def opencl_devices(device_type: str | None = None) -> list:
    """All OpenCL devices of all platforms (``pyopencl.Device`` list).

    Returns ``[]`` when pyopencl is missing or no platform exists
    (``PLATFORM_NOT_FOUND_KHR``). ``device_type``: None (all), ``'gpu'`` or ``'cpu'``.
    """
    try:
        import pyopencl as cl
    except Exception:
        return []
    try:
        platforms = cl.get_platforms()
    except Exception:  # pyopencl.LogicError / RuntimeError: PLATFORM_NOT_FOUND_KHR, broken ICD
        return []
    out = []
    for p in platforms:
        try:
            devs = p.get_devices()
        except Exception:  # DEVICE_NOT_FOUND on an empty platform
            continue
        for d in devs:
            if device_type is None:
                out.append(d)
            elif device_type == "gpu" and d.type & cl.device_type.GPU:
                out.append(d)
            elif device_type == "cpu" and d.type & cl.device_type.CPU:
                out.append(d)
    return out


def has_opencl_device() -> bool:
    """True when at least one OpenCL device (GPU or CPU, e.g. PoCL) is usable."""
    return len(opencl_devices()) > 0


def select_opencl_device(name: str | None = None, platform: str | None = None, prefer: str = "gpu"):
    """Choose an OpenCL device by hand (PyNX itself ignores CPU devices).

    :param name: substring of the device name (case-insensitive), or None.
    :param platform: substring of the platform name, e.g. ``'Portable'`` for PoCL.
    :param prefer: ``'gpu'`` (default: a GPU if any, else a CPU device such as
        PoCL) or ``'cpu'``.
    :raises OpenCLUnavailable: no device (matching the filters) exists.
    """
    devs = opencl_devices()
    if not devs:
        raise OpenCLUnavailable(_OPENCL_HINT)
    cand = devs
    if name is not None:
        cand = [d for d in cand if name.lower() in d.name.lower()]
    if platform is not None:
        cand = [d for d in cand if platform.lower() in d.platform.name.lower()]
    if not cand:
        found = ", ".join(f"{d.name!r} on {d.platform.name!r}" for d in devs)
        raise OpenCLUnavailable(f"no OpenCL device matches name={name!r} platform={platform!r}; found: {found}")
    import pyopencl as cl
    gpu = [d for d in cand if d.type & cl.device_type.GPU]
    cpu = [d for d in cand if not d.type & cl.device_type.GPU]
    order = gpu + cpu if prefer == "gpu" else cpu + gpu
    return order[0]


def init_pynx_opencl(device=None, name: str | None = None, platform: str | None = None,
                     reinit: bool = False):
    """Make PyNX's OpenCL CDI operators run on a hand-picked device; return it.

    If PyNX's OpenCL CDI processing unit already has a context (set by the user
    or an earlier call) and neither ``device``, ``name``, ``platform`` nor
    ``reinit`` asks for another, it is kept. Otherwise the device is
    :func:`select_opencl_device` (a GPU if any, else the PoCL CPU device) and
    ``pynx.cdi.cl_operator.default_processing_unit.init_cl(cl_device=device,
    test_fft=False)`` is called. This works even when PyNX was imported with
    ``PYNX_PU=cpu`` (the CPU operators stay the default family; only the
    explicitly imported OpenCL operators use the device).

    :raises PyNXUnavailable: PyNX or its OpenCL module cannot be imported.
    :raises OpenCLUnavailable: no OpenCL device.
    """
    if not has_opencl_device():
        raise OpenCLUnavailable(_OPENCL_HINT)
    clo = import_pynx(module="pynx.cdi.cl_operator")
    pu = clo.default_processing_unit
    explicit = device is not None or name is not None or platform is not None or reinit
    if pu.cl_ctx is not None and not explicit:
        return pu.cl_device
    if device is None:
        device = select_opencl_device(name=name, platform=platform)
    if pu.cl_ctx is not None and pu.cl_device == device and not reinit:
        return device
    import pynx.processing_unit as ppu
    with warnings.catch_warnings():
        # PyNX 2025.1 kernels use pyopencl.array.vec (DeprecationWarning, harmless)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        if getattr(ppu, "has_opencl", False):
            pu.init_cl(cl_device=device, test_fft=False, verbose=False)
        if pu.cl_device != device or pu.cl_ctx is None:
            # PyNX imported with PYNX_PU=cpu: its use_opencl() refuses OpenCL, so do
            # what init_cl() does after choosing the device.
            _init_cl_by_hand(pu, device)
    main = ppu.default_processing_unit
    if main.cl_device is None:
        main.cl_device = device
    return device


def _init_cl_by_hand(pu, device):
    """The part of ``CLProcessingUnit.init_cl`` that follows device selection."""
    import pyopencl as cl
    import pyopencl.tools as cltools
    from pynx.processing_unit import Backend
    pu.set_benchmark_fft_parameters(fft_size=(1, 1024, 1024), batch=True)
    pu.cl_device = device
    pu.backend = Backend.PYOPENCL
    pu.cl_ctx = pu.get_context(device)
    pu.cl_queue = cl.CommandQueue(pu.cl_ctx)
    pu._cl_mem_pool = cltools.MemoryPool(cltools.ImmediateAllocator(pu.cl_queue))
    pu.cl_options = "-cl-mad-enable -cl-fast-relaxed-math"
    pu.cl_init_kernels()


def init_pynx_cuda(device: int | None = None) -> bool:
    """Make PyNX's CUDA operators use the CUDA context torch uses; return True if they do.

    Call before the first PyNX CUDA operator is built (the CUDA-family ``DLInpaint`` /
    ``DLPhaseInit`` and ``pynx-cdi-id01-dl`` do). It retains the primary context of the
    device (``pycuda.driver.Device(i).retain_primary_context()``, the one the CUDA
    runtime, hence torch, uses), pushes it and stores it in PyNX's per-device context
    cache (``cu_resources``), so that PyNX's ``get_context`` hands it out instead of
    making a new context; then PyNX's CUDA CDI processing unit is initialised on that
    device. If PyNX already made its own context for the device (an operator was built
    before), nothing is changed and False is returned: the plugin then copies through
    the host instead of sharing memory (``info['zero_copy']`` says which).

    :param device: CUDA device ordinal; default torch's current device.
    :raises CUDAUnavailable: pycuda cannot drive a GPU, or torch has no CUDA.
    :raises PyNXUnavailable: PyNX's CUDA modules cannot be imported.
    """
    try:
        import torch
    except ImportError as e:  # pragma: no cover
        raise CUDAUnavailable("torch is not installed") from e
    if not torch.cuda.is_available():
        raise CUDAUnavailable("torch sees no CUDA GPU (a CPU build of torch, or no GPU): use PyNX's cpu or opencl "
                              "family (PYNX_PU=cpu|opencl)")
    try:
        import pycuda.driver as cu_drv
        cu_drv.init()
    except Exception as e:
        raise CUDAUnavailable(f"pycuda cannot drive the GPU ({type(e).__name__}: {e}); install pycuda "
                              "(`pip install .[cuda]` on a machine with the CUDA toolkit and driver)") from e
    idx = torch.cuda.current_device() if device is None else int(device)
    torch.cuda.set_device(idx)
    torch.cuda.init()
    torch.empty(1, device=f"cuda:{idx}")  # the runtime now holds the primary context
    cur = import_pynx(module="pynx.processing_unit.cu_resources").cu_resources
    dev = cu_drv.Device(idx)
    primary = dev.retain_primary_context()
    known = cur._device_context_dict.get(dev)
    if known is None:
        primary.push()
        cur._device_context_dict[dev] = primary
        shared = True
    else:
        shared = int(known.handle) == int(primary.handle)
    clo = import_pynx(module="pynx.cdi.cu_operator")
    pu = clo.default_processing_unit
    if pu.cu_ctx is None:
        pu.init_cuda(cu_device=dev, test_fft=False, verbose=False)
    import pynx.processing_unit as ppu
    if ppu.default_processing_unit.cu_device is None:
        ppu.default_processing_unit.cu_device = dev
    return shared and int(pu.cu_ctx.handle) == int(primary.handle)
