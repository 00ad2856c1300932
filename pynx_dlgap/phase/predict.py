"""Predict the reciprocal-space phase of a pattern and build a starting object.

>>> phase, info = predict_phase(iobs, mask, return_info=True)          # shipped weights
>>> obj0 = start_object(iobs, phase, mask)                            # IFT(sqrt(I) exp(i phase))
>>> sup0 = support_from_object(obj0)

Patterns of any size (documented method, no resizing of the user's data)
-----------------------------------------------------------------------
The model sees a fixed cube (64^3 in 3-D, 128^2 in 2-D) with the Bragg peak at
index ``n//2``: it was trained so, and it is sensitive to where the peak sits (on 20
2-D crystals at a phase range of pi, shifting the pattern by 1 / 2 / 4 px per axis
lowered the intensity-weighted coherence of the prediction with the true phase from
0.90 to 0.85 / 0.80 / 0.68, an ad-hoc check; ``benchmarks/phase_init.py --dl-centre peak array
--crop-shift 4`` measures the effect on the chain's success). So the prediction **region** is that cube centred on the
Bragg peak (the maximum of the measured intensity after a 1-px Gaussian smoothing,
:func:`bragg_peak`), whatever the pattern's size and however it was centred
(:func:`prediction_region`, ``centre='peak'``, the default since 0.7.14); where the cube
runs past the array its voxels are given to the model as masked (mask channel 1,
intensity 0) and are not used afterwards:

* a larger pattern: the phase outside the region is unknown (``NaN``), and
  :func:`start_object` builds the **low-resolution** object from the region alone
  (``sqrt(I) exp(i phase)`` inside the region, 0 outside, inverse FT on the full grid: the
  object band-limited to the region, on the user's full-resolution grid); the iterative
  chain then recovers the high-q phases from the measured data;
* a pattern of the model's size or smaller whose peak is off the array centre: the same,
  the voxels beyond the cube's far side (the offset's width) unknown.

``centre='array'`` is the rule up to 0.7.13: along an axis no longer than the cube the
cube is centred on the array (the peak is not searched: the pattern is trusted to be
centred), along a longer axis it is centred on the peak and moved inside the array.

**Binning** (since 0.7.12, ``bin='auto'`` by default): cutting a region out of a pattern does
not change its oversampling, binning does. The models were trained on crystals oversampled
2-8 times per axis, and a large measured pattern of a small crystal is oversampled far more
(a 20-px crystal in 256 px: 12.8), so such a pattern is first binned by
``floor(median estimate / 6)`` (the oversampling estimated from the autocorrelation; only
from an estimate of 12; axes under 1.8 times the box are never binned automatically), the binned pattern is predicted as above, and its
phase is interpolated back onto the full grid (:mod:`pynx_dlgap.phase.binning`).

The phase is defined up to the twin (``phi(q) -> -phi(q)``: the conjugated,
inverted object ``conj(o(-r))`` has the FT ``conj(F(q))``) and a global offset: both are valid starts for PyNX.
"""
from __future__ import annotations

import functools
import time
import weakref
from pathlib import Path

import numpy as np

from .._checks import check_pattern
from .inputs import apply_symmetry, phase_input, phase_input_torch

__all__ = ["predict_phase", "predict_box", "predict_on_box", "view_phases", "phase_views", "invert_symmetry",
           "twin_phase", "align_phase", "box_slices", "smooth_noise", "gaussian_filter_torch", "start_object", "support_from_object", "load_phase_model", "default_weights",
           "bragg_peak", "prediction_region", "read_phase_card", "graphed_phase_model", "inference_copy", "bf16_model", "shift_torch", "needs_peak"]

_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def default_weights(dims: int) -> Path:
    """Path of the shipped phase weights for ``dims`` = 2 or 3."""
    return _WEIGHTS_DIR / f"phase{int(dims)}d.safetensors"


def load_phase_model(weights=None, dims: int = 3):
    """``(model, card)`` from a weights file (default: the shipped one for ``dims``)."""
    from ..models.weights import WeightsError, load_weights
    path = Path(weights) if weights is not None else default_weights(dims)
    if not path.exists():
        raise WeightsError(f"phase weights not found: {path}. Use the shipped weights "
                           f"(pynx_dlgap/weights/phase{dims}d.safetensors) or train them with "
                           f"`pynx-dlgap train-phase --dims {dims} --export ...`.")
    model, card = load_weights(path)
    if card.get("task") != "phase":
        raise WeightsError(f"{path} holds a {card.get('task')!r} model, not a phase model")
    return model, card


def _model_shape(model, card, dims):
    if card and "input" in card and "shape" in card["input"]:
        return tuple(int(n) for n in card["input"]["shape"])
    return (64,) * 3 if dims == 3 else (128,) * 2


def bragg_peak(iobs, mask=None) -> tuple:
    """Index of the maximum of the measured intensity after a 1-px Gaussian smoothing."""
    from scipy.ndimage import gaussian_filter
    I = np.where(mask, 0, iobs) if mask is not None else np.asarray(iobs)
    sm = gaussian_filter(I.astype(np.float32), 1.0)
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(sm)), sm.shape))


#: where the prediction box sits (:func:`prediction_region`): 'peak' (default since 0.7.14) or 'array'
CENTRES = ("peak", "array")


def _check_centre(centre):
    if centre not in CENTRES:
        raise ValueError(f"centre must be one of {CENTRES}, got {centre!r}")


def prediction_region(shape, peak, size, centre: str = "peak") -> tuple:
    """Start index of the ``size`` box (it may run past the array's ends).

    ``centre='peak'`` (default): the box's index ``n//2`` on ``peak`` along every axis.
    ``centre='array'`` (the rule up to 0.7.13): along an axis no longer than the box, the box is
    centred on the array (index ``N//2`` at the box's ``n//2``); along a longer axis it is centred
    on ``peak`` and moved inside the array; ``peak`` may be ``None`` where no axis is longer.
    :func:`needs_peak` says whether ``peak`` is needed."""
    _check_centre(centre)
    if peak is None:
        if needs_peak(shape, size, centre):
            raise ValueError(f"the region of a {tuple(shape)} pattern in a {tuple(size)} box (centre={centre!r}) "
                             f"needs the peak")
        peak = (0,) * len(shape)
    out = []
    for N, p, n in zip(shape, peak, size):
        N, p, n = int(N), int(p), int(n)
        if centre == "peak":
            out.append(p - n // 2)
        else:
            out.append(N // 2 - n // 2 if N <= n else min(max(p - n // 2, 0), N - n))
    return tuple(out)


def _take(a, start, size, fill):
    """The ``size`` box of ``a`` at ``start``, ``fill`` where it leaves the array."""
    out = np.full(size, fill, dtype=a.dtype)
    src, dst = [], []
    for s, n, N in zip(start, size, a.shape):
        lo, hi = max(s, 0), min(s + n, N)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = a[tuple(src)]
    return out


def predict_box(iobs, mask=None, model=None, weights=None, device: str = "cpu", bf16: bool = False, tta: int = 1,
                centre: str = "peak"):
    """The model's phase on its box around the Bragg peak, as a torch tensor on ``device``.

    Returns ``(phase_box, start, info)``: ``phase_box`` (radians, the model's input shape,
    float32 tensor), ``start`` the box's first index in the pattern (it may run past the
    array, see :func:`prediction_region`) and a dict (peak, region, seconds, device, bf16;
    ``peak`` is ``None`` where the region does not depend on it, :func:`needs_peak`).
    ``bf16``, ``tta``: see :func:`predict_on_box`; ``centre``: :func:`prediction_region`.
    :func:`predict_phase` places it into a pattern-sized array (the CUDA-family
    ``DLPhaseInit`` finds the peak and cuts the box on the GPU, then calls
    :func:`predict_on_box`).
    """
    iobs, mask = check_pattern(iobs, mask, ndim=(2, 3), allow_full_mask=False)
    dims = iobs.ndim
    phase_views(dims, tta)  # a bad tta fails here, before any work
    _check_centre(centre)
    card = None
    if model is None:
        model, card = load_phase_model(weights, dims)
    model_dims = int(model.config["kwargs"].get("dims", dims))
    if model_dims != dims:
        raise ValueError(f"a {model_dims}-D phase model cannot predict a {dims}-D pattern")
    size = _model_shape(model, card, dims)
    from ..precision import resolve_bf16
    bf16 = resolve_bf16(bf16, device, "the phase model")
    t0 = time.perf_counter()
    peak = bragg_peak(iobs, mask) if needs_peak(iobs.shape, size, centre) else None
    start = prediction_region(iobs.shape, peak, size, centre)
    ph_box = predict_on_box(model, _take(np.asarray(iobs, np.float32), start, size, 0.0),
                            _take(mask, start, size, True), device, bf16=bf16, tta=tta)
    info = {"peak": None if peak is None else list(peak), "region_start": list(start), "region_shape": list(size),
            "seconds": time.perf_counter() - t0, "device": str(device), "bf16": bool(bf16), "tta": int(tta),
            "centre": centre}
    if card is not None:
        info["weights_sha256"] = card.get("sha256")
    return ph_box, start, info


#: run the float32 phase model on the CPU as a channels-last :func:`inference_copy` (False: the
#: model as given, channels-first, as up to 0.7.7; ``benchmarks/phase_step.py`` times both)
CPU_CHANNELS_LAST = True

#: inference copies of phase models: model -> {(device, dtype): (parameter key, copy)} (see :func:`inference_copy`)
_COPIES = weakref.WeakKeyDictionary()


def _param_key(model) -> tuple:
    """Storage pointer and version counter of each parameter and buffer: changes when one is
    replaced (e.g. ``.to()`` another device) or modified in place. Keys the model's caches."""
    return tuple((t.data_ptr(), t._version) for t in (*model.parameters(), *model.buffers()))


def inference_copy(model, device, dtype=None):
    """A copy of ``model`` on ``device`` in ``dtype`` (default float32), channels-last for a 3-D
    model, in eval mode: what the phase model runs as in bf16 (any device) and in float32
    on the CPU.

    channels_last_3d: oneDNN's 3-D convolutions are faster in it; for the shipped 3-D phase
    model in float32 on a 2-core AVX2 CPU, 0.41 s per 64^3 prediction against 0.52 s
    channels-first (1.3x; the phase differs by 1e-4 rad, weighted RMS;
    ``benchmarks/phase_step.py`` times both, and the operator).

    Cached per model and (device, dtype): built once, and again only when one of the model's
    parameters or buffers is replaced or modified in place (their storage and version
    counters are compared), so repeated predictions do not pay for the conversion. The
    model itself is never changed.
    """
    import copy

    import torch
    dev = torch.device(device)
    dtype = torch.float32 if dtype is None else dtype
    key = _param_key(model)
    per = _COPIES.setdefault(model, {})
    ck = (str(dev), str(dtype))
    hit = per.get(ck)
    if hit is not None and hit[0] == key:
        return hit[1]
    m = copy.deepcopy(model).to(device=dev, dtype=dtype).eval()
    if int((getattr(model, "config", None) or {}).get("kwargs", {}).get("dims", 0)) == 3:
        m = m.to(memory_format=torch.channels_last_3d)
    per[ck] = (key, m)
    return m


def bf16_model(model, device):
    """The bfloat16 :func:`inference_copy` of ``model`` on ``device`` (channels-last in 3-D)."""
    import torch
    return inference_copy(model, device, torch.bfloat16)


def phase_views(dims: int, k: int) -> list:
    """The first ``k`` of the phase models' symmetries as ``(perm, flips)``
    (:func:`~pynx_dlgap.phase.inputs.apply_symmetry`): the identity, then a fixed shuffle
    of the other 47 (3-D: 6 axis orders x 8 sets of ``q -> -q`` flips) or 7 (2-D)."""
    import itertools
    dims = int(dims)
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims}")
    allv = [(perm, flips) for perm in itertools.permutations(range(dims))
            for r in range(dims + 1) for flips in itertools.combinations(range(dims), r)]
    rest = [allv[i] for i in np.random.default_rng(0).permutation(np.arange(1, len(allv)))]
    if not 1 <= int(k) <= len(allv):
        raise ValueError(f"the phase test-time ensemble takes 1 to {len(allv)} views in {dims}-D, got {k}")
    return [allv[0]] + rest[:int(k) - 1]


def invert_symmetry(a, perm, flips) -> np.ndarray:
    """The inverse of :func:`~pynx_dlgap.phase.inputs.apply_symmetry` ``(perm, flips)`` on the
    last ``len(perm)`` axes of ``a``: itself a symmetry, the inverse transposition followed by
    the flips of the axes where the view's flipped axes land (view axis ``ax`` is axis ``perm[ax]``)."""
    return apply_symmetry(a, tuple(int(p) for p in np.argsort(perm)), tuple(perm[ax] for ax in flips))


def twin_phase(phase) -> np.ndarray:
    """The twin's phase ``-phi(q)``: the FT of the conjugated, inverted object
    ``conj(o(-r))`` is ``conj(F(q))``, same intensity."""
    return -np.asarray(phase)


def align_phase(ref, phase, w) -> np.ndarray:
    """``phase`` or its twin, whichever is more coherent with ``ref`` under the weights ``w``,
    with the weighted mean difference (the global offset) removed."""
    best = None
    for cand in (np.asarray(phase, np.float64), twin_phase(np.asarray(phase, np.float64))):
        c = np.sum(w * np.exp(1j * (cand - ref)))
        if best is None or abs(c) > abs(best[0]):
            best = (c, cand)
    return best[1] - np.angle(best[0])


def _run_phase_model(model, x, device, bf16, graph: bool = False):
    """The raw (B, 2, ...) float32 output of the model (or of its bf16 copy) on input batch ``x``.

    ``graph``: replay a CUDA graph of the call (:func:`graphed_phase_model`; CUDA devices only).
    """
    import torch
    from ..precision import resolve_bf16
    x = x.to(device)
    b16 = resolve_bf16(bf16, device, "the phase model")
    if graph:
        g = graphed_phase_model(model, x.device, b16, tuple(x.shape))
        return g(x)
    if b16 or (x.device.type == "cpu" and CPU_CHANNELS_LAST):  # a channels-last copy; CUDA float32: the model as given
        m = inference_copy(model, x.device, torch.bfloat16 if b16 else torch.float32)
        x = x.to(torch.bfloat16) if b16 else x
        if x.ndim == 5:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with torch.no_grad():
            return m(x).float()
    model = model.to(device).eval()
    with torch.no_grad():
        return model(x).float()


#: CUDA graphs of phase models: model -> {(device, bf16, shape): _GraphedCall}
_GRAPHS = weakref.WeakKeyDictionary()


class _GraphedCall:
    """One captured CUDA graph of a phase model's forward pass on a fixed input shape.

    Holds the static input/output tensors and the tensors the graph reads (the model's
    parameters, or its bf16 copy), never the model itself (the cache is keyed weakly on it).
    Calling it copies the input into the static one, replays, and returns a float32 copy
    of the output (so a later replay cannot change what an earlier call returned).
    """

    def __init__(self, m, device, dtype, shape, key):
        import torch
        self.key = key
        # the storages the graph reads stay allocated even if the model's tensors are swapped
        # (e.g. .to() another device; graphed_phase_model then captures again, as their pointers changed)
        self.keep = [t.detach() for t in (*m.parameters(), *m.buffers())]
        cl = len(shape) == 5 and dtype == torch.bfloat16
        self.static_in = torch.zeros(shape, dtype=dtype, device=device)
        if cl:
            self.static_in = self.static_in.contiguous(memory_format=torch.channels_last_3d)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.no_grad(), torch.cuda.stream(side):
            for _ in range(2):  # warm-up outside the capture (cuDNN plans, workspaces)
                m(self.static_in)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(self.graph):
            self.static_out = m(self.static_in)

    def __call__(self, x):
        import torch
        self.static_in.copy_(x)
        self.graph.replay()
        return self.static_out.to(torch.float32, copy=True)


def graphed_phase_model(model, device, bf16: bool, shape: tuple):
    """A cached :class:`_GraphedCall` of ``model`` (or of its :func:`bf16_model` copy) on a CUDA
    ``device`` for inputs of ``shape``.

    Captured at the first call (two warm-up passes, then the capture) and replayed afterwards:
    one launch instead of one per layer, which is what a 64^3 prediction costs on a GPU.
    Captured again when a parameter of the model is replaced or changed in place (as
    :func:`bf16_model`). ``device`` must be a CUDA device.
    """
    import torch
    dev = torch.device(device)
    if dev.type != "cuda":
        raise ValueError(f"CUDA graphs need a CUDA device, got {dev}")
    if dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    if bf16:
        m, dtype = bf16_model(model, dev), torch.bfloat16
    else:
        m, dtype = model.to(dev).eval(), torch.float32
    key = _param_key(model)
    cache = _GRAPHS.setdefault(model, {})
    ck = (str(dev), bool(bf16), tuple(int(v) for v in shape))
    hit = cache.get(ck)
    if hit is None or hit.key != key:
        hit = cache[ck] = _GraphedCall(m, dev, dtype, tuple(int(v) for v in shape), key)
    return hit


def view_phases(model, I_box, m_box, device="cpu", bf16: bool = False, k: int = 8, batch: int = 4) -> np.ndarray:
    """The model's phase of one box in each of the first ``k`` :func:`phase_views`, mapped back
    to the box's frame and aligned on the first view's (twin and global offset,
    :func:`align_phase`, weighted by the normalised log-intensity): ``(k, *box)`` float64.

    Each is a valid start; their phasor mean is the test-time ensemble of
    :func:`predict_on_box` (``tta``). ``batch`` views per model call.
    """
    import torch
    views = phase_views(np.ndim(I_box), k)
    I_box, m_box = np.asarray(I_box, np.float32), np.asarray(m_box, bool)
    w = phase_input(I_box, m_box)[0].astype(np.float64)
    out = []
    for i in range(0, len(views), int(batch)):
        chunk = views[i:i + int(batch)]
        x = torch.from_numpy(np.stack([phase_input(apply_symmetry(I_box, p, f), apply_symmetry(m_box, p, f))
                                       for p, f in chunk]))
        y = _run_phase_model(model, x, device, bf16).cpu().numpy().astype(np.float64)
        for (p, f), yy in zip(chunk, y):
            out.append(invert_symmetry(np.arctan2(yy[1], yy[0]), p, f))
    return np.stack([out[0]] + [align_phase(out[0], o, w) for o in out[1:]])


def predict_on_box(model, I_box, m_box, device="cpu", bf16: bool = False, tta: int = 1, graph: bool = False):
    """The model's phase (radians, float32 tensor on ``device``) of one box (numpy, the model's shape).

    ``bf16``: run a bfloat16 copy of the model (:func:`bf16_model`: weights and activations
    in bfloat16, channels-last in 3-D; the model passed is left as it is). On CPUs with
    bf16 instructions (AVX512-BF16/AMX) and on GPUs this is several times faster than
    float32 (and about 10 % faster than autocast, which keeps the normalisations in
    float32); the phase it gives differs from float32's by about 0.01 rad (weighted RMS)
    on the shipped 3-D model (``benchmarks/phase_init.py --dl-precision fp32 bf16``
    measures both, side by side). Only where the device runs bf16 natively: elsewhere
    float32 and a warning (:func:`pynx_dlgap.precision.resolve_bf16`).

    ``tta``: test-time ensemble over that many of the 48 (3-D; 8 in 2-D) symmetries the
    model was trained with (:func:`view_phases`: each view's phase mapped back and aligned
    on the first's, twin and offset); the phase of their mean phasor. ``tta`` model calls.

    ``I_box``/``m_box`` may be torch tensors (on ``device``): with ``tta=1`` the input is then
    built there (:func:`~pynx_dlgap.phase.inputs.phase_input_torch`), without a host round trip.
    ``graph``: replay a CUDA graph of the model (:func:`graphed_phase_model`; CUDA only, ``tta=1``).
    """
    import torch
    if graph and int(tta) > 1:
        raise ValueError("graph=True runs one view (tta=1)")
    if int(tta) > 1:
        if torch.is_tensor(I_box):
            I_box, m_box = I_box.cpu().numpy(), m_box.cpu().numpy()
        ph = view_phases(model, I_box, m_box, device, bf16, int(tta))
        return torch.from_numpy(np.angle(np.exp(1j * ph).mean(0)).astype(np.float32)).to(device)
    if torch.is_tensor(I_box):
        x = phase_input_torch(I_box.to(device), torch.as_tensor(m_box, device=device))[None]
    else:
        x = torch.from_numpy(phase_input(I_box, m_box))[None]
    y = _run_phase_model(model, x, device, bf16, graph=graph)[0]
    return torch.atan2(y[1], y[0]).contiguous()


def box_slices(shape, start, size) -> tuple:
    """``(pattern_slices, box_slices)``: where the prediction box overlaps the pattern."""
    src, dst = [], []
    for s, n, N in zip(start, size, shape):
        lo, hi = max(s, 0), min(s + n, N)
        src.append(slice(lo - s, hi - s))
        dst.append(slice(lo, hi))
    return tuple(dst), tuple(src)


def predict_phase(iobs, mask=None, model=None, weights=None, device: str = "cpu", return_info: bool = False,
                  bf16: bool = False, tta: int = 1, bin="auto", centre: str = "peak"):
    """Reciprocal-space phase of a centred 2-D/3-D pattern (radians, the pattern's shape).

    ``NaN`` outside the prediction region (see the module docstring). Never modifies
    the inputs. ``model``: a loaded phase model (else ``weights``, else the shipped
    weights). With ``return_info`` also returns a dict (region, peak, seconds, card, bins).
    ``bf16``: bfloat16 (:func:`predict_on_box`); ``tta``: test-time ensemble of that many
    symmetric views (:func:`predict_on_box`, :func:`view_phases`).
    ``bin``: predict on the pattern binned by these factors (an int, one per axis, or
    ``'auto'``, the default: from the pattern's estimated oversampling, and only for
    patterns at least 1.8 times the model's box along an axis) and map the phase back to the
    full grid (:mod:`pynx_dlgap.phase.binning`); ``1``: no binning, as before 0.7.12.
    Since 0.7.12. ``centre``: where the model's box sits, ``'peak'`` (default since 0.7.14: on the
    Bragg peak) or ``'array'`` (the rule up to 0.7.13; :func:`prediction_region`).
    """
    from .binning import auto_bin, bin_pattern, binnable_axes, resolve_bin, unbin_phase
    t0 = time.perf_counter()
    shape = np.shape(iobs)
    bins = resolve_bin(bin, len(shape))  # a bad value fails here, before any work
    _check_centre(centre)
    est = None
    if bins == "auto" or any(b > 1 for b in bins):  # the input is read here (predict_box checks it otherwise)
        iobs, mask = check_pattern(iobs, mask, ndim=(2, 3), allow_full_mask=False)
    if bins == "auto":
        if model is None:
            model, _ = load_phase_model(weights, iobs.ndim)
        size = _model_shape(model, None, iobs.ndim)
        bins = (1,) * len(shape)
        if binnable_axes(shape, size):  # auto never bins smaller patterns
            bins, est = auto_bin(iobs, mask, size)
    if any(b > 1 for b in bins):
        Ib, mb, offs = bin_pattern(iobs, mask, bins)
        ph_b, info = predict_phase(Ib, mb, model, weights, device, True, bf16=bf16, tta=tta, bin=1, centre=centre)
        phase = unbin_phase(ph_b, bins, offs, shape)
        info.update(binned_shape=list(Ib.shape), bin_offsets=list(offs))
    else:
        ph_box, start, info = predict_box(iobs, mask, model, weights, device, bf16=bf16, tta=tta, centre=centre)
        ph_box = ph_box.cpu().numpy().astype(np.float32)
        phase = np.full(shape, np.nan, np.float32)
        dst, src = box_slices(shape, start, ph_box.shape)
        phase[dst] = ph_box[src]
    info.update(bin=list(bins), oversampling_estimate=None if est is None else [round(e, 2) for e in est],
                seconds=time.perf_counter() - t0)
    if not return_info:
        return phase
    return phase, info


def smooth_noise(shape, sigma: float, corr: float = 2.0, rng=None) -> np.ndarray:
    """A smooth random field of RMS ``sigma`` (radians): white noise Gaussian-smoothed over
    ``corr`` voxels (periodic), rescaled. Added to a predicted phase it gives the varied
    DL starts of several runs (``pynx-cdi-id01-dl --dl-phase-noise``, ``benchmarks/phase_init.py
    --dl-k``); ``benchmarks/phase_basin.py`` uses it around the true phase."""
    from scipy.ndimage import gaussian_filter
    rng = np.random.default_rng(rng)
    n = gaussian_filter(rng.normal(size=shape), corr, mode="wrap")  # drawn even for sigma 0 (same stream)
    return n * (sigma / n.std()) if sigma > 0 else np.zeros(shape)


def start_object(iobs, phase, mask=None) -> np.ndarray:
    """``icfft(sqrt(I) exp(i phase))`` (centred, complex64); 0 amplitude where ``phase`` is NaN.

    Masked voxels get amplitude 0 (pass an inpainted pattern to use its fill).
    The result is scaled so that its FT has the measured total intensity.
    """
    from ..simulate.diffraction import icfft
    iobs, mask = check_pattern(iobs, mask, ndim=(2, 3), allow_full_mask=False)
    phase = np.asarray(phase, np.float32)
    if phase.shape != iobs.shape:
        raise ValueError(f"phase shape {phase.shape} != pattern shape {iobs.shape}")
    known = np.isfinite(phase) & ~mask
    a = np.where(known, np.sqrt(np.clip(iobs, 0, None)), 0).astype(np.float32)
    ph = np.where(known, phase, 0).astype(np.float32)
    f = np.empty(iobs.shape, np.complex64)  # a cos + i a sin in float32: cheaper than numpy's complex exp
    f.real, f.imag = a * np.cos(ph), a * np.sin(ph)
    return icfft(f).astype(np.complex64, copy=False)  # single precision throughout (scipy keeps it): 2x faster


def support_from_object(obj, threshold: float = 0.2, sigma: float = 1.0) -> np.ndarray:
    """Support: the Gaussian-smoothed (``sigma`` px) modulus above ``threshold`` of its maximum."""
    from scipy.ndimage import gaussian_filter
    a = gaussian_filter(np.abs(np.asarray(obj)).astype(np.float32), sigma)
    return a > threshold * a.max()


@functools.lru_cache(maxsize=64)
def _gauss_taps(sigma: float, r: int, device: str):
    """The ``2r+1`` normalised Gaussian taps (float64, shaped for ``conv1d``) on ``device``."""
    import torch
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (x / float(sigma)) ** 2)
    return (w / w.sum()).view(1, 1, -1).to(device)


@functools.lru_cache(maxsize=64)
def _reflect_index(n: int, r: int, device: str):
    """Indices of an axis of length ``n`` padded by ``r`` on each side, scipy's ``'reflect'``."""
    import torch
    k = np.arange(-r, n + r)
    while (k < 0).any() or (k >= n).any():  # axes shorter than the radius: scipy reflects repeatedly
        k = np.where(k < 0, -k - 1, k)
        k = np.where(k >= n, 2 * n - 1 - k, k)
    return torch.from_numpy(k.astype(np.int64)).to(device)


def gaussian_filter_torch(a, sigma: float, truncate: float = 4.0):
    """``scipy.ndimage.gaussian_filter(a, sigma)`` (mode ``'reflect'``) for a real torch tensor,
    on its device: separable, radius ``int(truncate * sigma + 0.5)``, float64 weights and sums.

    Per axis one gather of the reflect-padded lines and one ``conv1d`` over all of them
    (two kernels, the taps and indices cached per device): on a GPU the cost is the
    launches, and a per-tap loop took 2r+1 times as many.
    """
    import torch
    r = int(truncate * float(sigma) + 0.5)
    if sigma <= 0 or r == 0:
        return a.clone()
    dev = str(a.device)
    w = _gauss_taps(float(sigma), r, dev)
    out = a.double()
    for ax in range(a.ndim):
        n = a.shape[ax]
        lines = out.movedim(ax, -1).index_select(-1, _reflect_index(n, r, dev))  # contiguous (..., n + 2r)
        y = torch.nn.functional.conv1d(lines.reshape(-1, 1, n + 2 * r), w)  # the taps are symmetric
        out = y.view(*lines.shape[:-1], n).movedim(-1, ax)
    return out.to(a.dtype)


def _shifted_arange(shape: tuple, k: int) -> np.ndarray:
    """The flat indices of a ``shape`` array after ``k`` successive ``numpy.fft.fftshift``
    (``k < 0``: ``ifftshift``), int64."""
    idx = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    for _ in range(abs(int(k))):
        idx = np.fft.fftshift(idx) if k > 0 else np.fft.ifftshift(idx)
    return idx


@functools.lru_cache(maxsize=6)
def _shift_index(shape: tuple, k: int, device: str):
    """Flat indices ``idx`` with ``x.take(idx)`` = ``k`` successive ``fftshift`` of ``x``
    (``k < 0``: ``ifftshift``); ``None`` where that is the identity. int64, the pattern's
    size (67 MB for 256 x 256 x 128): a few kept, for the shapes in use."""
    import torch
    idx = _shifted_arange(shape, k)
    if np.array_equal(idx.ravel(), np.arange(idx.size)):
        return None
    return torch.from_numpy(np.ascontiguousarray(idx)).to(device)


def shift_torch(x, k: int = 1, copy: bool = True):
    """``k`` successive ``torch.fft.fftshift`` of ``x`` (``k < 0``: ``ifftshift``), any parity,
    as one gather with cached indices (``torch.fft.fftshift`` rolls one axis at a time).
    ``copy=False``: ``x`` itself where the shifts cancel (e.g. two on an even shape)."""
    idx = _shift_index(tuple(int(v) for v in x.shape), int(k), str(x.device))
    if idx is None:
        return x.clone() if copy else x
    return x.take(idx)


@functools.lru_cache(maxsize=8)
def _stored_box_index(shape: tuple, dst: tuple, device: str):
    """Flat indices into a pattern stored fft-shifted (PyNX's layout) of the centred region
    ``dst`` (a tuple of ``(start, stop)``): ``stored.take(idx)`` = ``fftshift(stored)[dst]``."""
    import torch
    idx = _shifted_arange(shape, 1)[tuple(slice(a, b) for a, b in dst)]
    return torch.from_numpy(np.ascontiguousarray(idx)).to(device)


def needs_peak(shape, size, centre: str = "peak") -> bool:
    """Whether the prediction region depends on the Bragg peak (:func:`prediction_region`): always
    with ``centre='peak'``; with ``centre='array'`` where some axis is longer than the box."""
    _check_centre(centre)
    return centre == "peak" or any(int(N) > int(n) for N, n in zip(shape, size))


def read_phase_card(weights=None, dims: int = 3) -> dict:
    """The JSON card of phase weights (default: the shipped ones for ``dims``)."""
    from ..models.weights import read_card
    return read_card(Path(weights) if weights is not None else default_weights(dims))
