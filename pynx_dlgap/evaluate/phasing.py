"""Phase a pattern with real PyNX: the harness's one fixed, documented chain.

The same chain, on PyNX's numpy **CPU backend** and with the same random seeds,
is used for every method compared (gap-free, masked, each fill, DL start), so
that differences in the result come from the data (or the start) alone.

The default chain (``CHAIN_DEFAULT``) is the one ``pynx-cdi-id01`` builds from
its defaults (``nb_raar=600 nb_er=200 support_update_period=50
support_threshold=0.25 support_smooth_width 2->0.5 detwin zero_mask=auto``),
written in PyNX's operator algebra:

* support from the autocorrelation of the intensity (threshold 0.1), random
  start on it (``InitObjRandom``, modulus 0-1, phase 0-2pi), ``ScaleObj``;
* 600 RAAR cycles (beta 0.9) then 200 ER cycles, a ``SupportUpdate``
  (threshold 0.25 of the RMS modulus, smoothing width decaying 2 -> 0.5 px over
  the RAAR stage) every 50 cycles, ``DetwinRAAR`` (10 cycles) after 150;
* masked pixels forced to zero for the first 60 % of the RAAR cycles, then free
  (``zero_mask=auto``).

PyNX is imported lazily; without PyNX a :class:`~pynx_dlgap.pynx_backend.PyNXMissing`
error tells how to install it. The operators are taken from the requested family (``pynx.cdi.cpu_operator`` for the harness) whatever backend PyNX chose at import.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .._checks import check_pattern

__all__ = ["PhasingResult", "phase_pattern", "CHAIN_DEFAULT", "import_pynx_cdi"]

CHAIN_DEFAULT = dict(n_raar=600, n_er=200, support_every=50, support_threshold=0.25,
                     support_smooth=(2.0, 0.5), autocorr_threshold=0.1, detwin=True,
                     zero_mask="auto", beta=0.9)


def import_pynx_cdi(backend: str = "cpu"):
    """PyNX's CDI class and one operator family, whatever backend PyNX chose at import.

    Returns a namespace with ``CDI`` and the operators (``ER``, ``RAAR``,
    ``SupportUpdate``, ...) of the requested family: ``'cpu'`` takes them from
    ``pynx.cdi.cpu_operator`` directly, so the harness runs on the CPU backend
    even when an OpenCL or CUDA family was imported earlier in the process.
    """
    import types
    from ..pynx_backend import import_pynx
    mod = {"cpu": "pynx.cdi.cpu_operator", "opencl": "pynx.cdi.cl_operator",
           "cuda": "pynx.cdi.cu_operator"}[backend]
    ops = import_pynx(module=mod)
    from pynx.cdi.cdi import CDI
    ns = types.SimpleNamespace(**{k: getattr(ops, k) for k in dir(ops) if not k.startswith("_")})
    ns.CDI = CDI
    return ns


@dataclass
class PhasingResult:
    """Outcome of one PyNX reconstruction (object centred, not fft-shifted)."""

    obj: np.ndarray
    support: np.ndarray
    llk: float
    seconds: float
    llk_history: list = field(default_factory=list)
    cdi: object = None  # the PyNX CDI, to save a CXI file
    failed: str | None = None  # why PyNX stopped early (support diverged), else None


def _make_cdi(pynx_cdi, iobs, mask, estimate=None):
    """A PyNX CDI from centred arrays; ``estimate`` (bool) marks pixels stored as
    PyNX *estimated* intensities (loose amplitude constraint)."""
    I = np.fft.fftshift(np.array(iobs, dtype=np.float32, copy=True))  # a copy: CDI writes into it
    m = np.fft.fftshift(mask)
    if estimate is not None:
        e = np.fft.fftshift(estimate) & ~m
        I[e] = -(I[e] + 1) * 1e19
    return pynx_cdi.CDI(I, mask=m.astype(np.int8))


def phase_pattern(iobs, mask=None, *, seed: int = 0, obj0=None, support0=None,
                  estimate=None, chain: dict | None = None, llk_every: int = 20,
                  keep_cdi: bool = False, backend: str = "cpu", release=None,
                  release_at: int | None = None) -> PhasingResult:
    """Reconstruct a pattern with PyNX (CPU operators by default) and the harness chain.

    Parameters
    ----------
    iobs : array (2-D or 3-D), centred (peak near the array centre)
    mask : bool array, True = not measured (free in the amplitude projection)
    seed : seeds numpy's global RNG, which PyNX's random start uses
    obj0 : optional starting object (centred); replaces the random start
    support0 : optional starting support (centred); replaces the autocorrelation support
    estimate : optional bool array: pixels whose value is an estimate (PyNX's
        loose constraint, 0.5x-1.2x) rather than a measurement
    chain : overrides of :data:`CHAIN_DEFAULT`
    backend : PyNX operator family, ``'cpu'`` (default), ``'opencl'`` or ``'cuda'``
        (same operators and chain; benchmarks/pipeline.py times it on a GPU). OpenCL runs on a
        GPU if there is one, else on the PoCL CPU device; PyNX's OpenCL family has no
        ``InitObjRandom``, so its random start comes from PyNX's CPU operator (the same draws
        for the same seed). Only the OpenCL and CUDA families honour ``estimate`` (PyNX 2025.1's CPU
        ``ApplyAmplitude`` treats estimated pixels as masked).
    release : optional bool array (centred): pixels (e.g. a gap's fill) that count as data
        until cycle ``release_at`` and are masked (free) from then on
        (``cdi.set_mask``). Default ``release_at``: the end of the zero-mask phase of
        ``zero_mask='auto'`` (60 % of the RAAR cycles), during which PyNX would hold
        masked pixels at zero; else the end of RAAR.
    """
    iobs, mask = check_pattern(iobs, mask, allow_full_mask=False)
    c = dict(CHAIN_DEFAULT, **(chain or {}))
    n_raar, n_er, k = int(c["n_raar"]), int(c["n_er"]), int(c["support_every"])
    zm_auto = c["zero_mask"] == "auto"
    zm_cycle = int(0.6 * n_raar) if zm_auto else -1
    if release is not None:  # checked before any work
        release = np.asarray(release, bool)
        if release.shape != iobs.shape:
            raise ValueError(f"release mask shape {release.shape} != pattern shape {iobs.shape}")
        release_at = int(release_at if release_at is not None else (zm_cycle if zm_cycle > 0 else n_raar))
        if not 0 < release_at < n_raar + n_er:
            raise ValueError(f"release_at must be within the chain's 1..{n_raar + n_er - 1} cycles, not {release_at}")
    else:
        release_at = -1
    if backend == "cuda":
        from ..pynx_backend import init_pynx_cuda
        init_pynx_cuda()
    elif backend == "opencl":  # a GPU if there is one, else the PoCL CPU device (kept if already set)
        from ..pynx_backend import init_pynx_opencl
        init_pynx_opencl()
    pc = import_pynx_cdi(backend)
    t0 = time.perf_counter()
    np.random.seed(seed)
    cdi = _make_cdi(pc, iobs, mask, estimate)
    if support0 is not None:
        cdi.set_support(np.asarray(support0).astype(np.int8), shift=True)
    else:
        cdi = pc.AutoCorrelationSupport(threshold=c["autocorr_threshold"]) * cdi
    if obj0 is not None:
        cdi.set_obj(np.asarray(obj0, dtype=np.complex64), shift=True)
        cdi = pc.ScaleObj(method="F") * cdi
    else:
        # PyNX 2025.1's OpenCL family has no InitObjRandom; the CPU one works on any family's CDI
        init = pc.InitObjRandom if hasattr(pc, "InitObjRandom") else import_pynx_cdi("cpu").InitObjRandom
        cdi = pc.ScaleObj(method="F") * init(src="support", amin=0, amax=1, phirange=2 * np.pi) * cdi
    detwin_cycle = n_raar // 4 if c["detwin"] else -1
    s0, s1 = c["support_smooth"] if np.ndim(c["support_smooth"]) else (c["support_smooth"],) * 2
    # cycle boundaries at which something changes, as PyNX's runner does
    marks = sorted({0, n_raar, n_raar + n_er, *range(0, n_raar + n_er, k),
                    *([zm_cycle] if zm_cycle > 0 else []), *([detwin_cycle] if detwin_cycle > 0 else []),
                    *([release_at] if release_at > 0 else []),
                    *(range(0, n_raar + n_er, llk_every) if llk_every else [])})
    hist = []
    failed = None
    from pynx.cdi.cdi import SupportTooLarge, SupportTooSmall
    for i0, i1 in zip(marks[:-1], marks[1:]):
        if i0 == release_at and failed is None:  # the fill stops counting as data: masked from now on
            cdi.set_mask(release.astype(np.int8), shift=True)
        zm = (i0 < zm_cycle) if zm_auto else bool(c["zero_mask"])
        n = i1 - i0
        if i1 <= n_raar:
            op = pc.RAAR(beta=c["beta"], zero_mask=zm) ** n
        else:
            op = pc.ER(zero_mask=zm) ** n
        if i1 % k == 0 and i1 < n_raar + n_er:
            op = pc.SupportUpdate(threshold_relative=c["support_threshold"],
                                  smooth_width=(s0, s1, n_raar), method="rms",
                                  min_fraction=1e-4, max_fraction=0.7) * op
        if i1 == detwin_cycle:
            op = pc.DetwinRAAR(beta=c["beta"], nb_cycle=10, zero_mask=zm) * op
        try:
            cdi = op * cdi
        except (SupportTooLarge, SupportTooSmall) as e:  # as PyNX's runner: the run is a failure
            failed = f"{type(e).__name__} after {i0} cycles: {e}"
            break
        if llk_every and i1 % llk_every == 0:
            cdi = pc.LLK() * cdi
            hist.append((i1, float(cdi.get_llk(normalized=True)[0])))
    cdi = pc.LLK() * cdi
    llk = float(cdi.get_llk(normalized=True)[0])
    obj = cdi.get_obj(shift=True).copy()
    support = cdi.get_support(shift=True).astype(bool)
    dt = time.perf_counter() - t0
    return PhasingResult(obj=obj, support=support, llk=llk, seconds=dt, llk_history=hist,
                         cdi=cdi if keep_cdi else None, failed=failed)
