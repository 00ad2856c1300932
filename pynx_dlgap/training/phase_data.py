"""On-the-fly training samples for the phase models.

:class:`PhaseStream` is a ``torch.utils.data.IterableDataset``: every worker
simulates its own crystals (:func:`pynx_dlgap.simulate.pipeline.simulate`, all
regimes, Bragg phase range drawn ``U(0, phase_max)``, the pattern centred on its
intensity maximum or on ``q = 0``: :func:`simulate_phase_crystal`), and yields ``views``
augmented copies of each: a random axis permutation / ``q -> -q`` flips
(:func:`pynx_dlgap.phase.inputs.apply_symmetry`) and a fresh Poisson draw at a
flux scaled by ``10**U(-1, 0.5)``. ``phase_max`` is a shared value the trainer
raises during training (curriculum over strain).

Seeds: worker ``w`` of loader session ``s`` simulates seeds
``seed_base + (s * 64 + w) * 1_000_000 + k``, so a resumed run never repeats a
crystal; validation and benchmark seeds (>= 1.5e9) are disjoint from them.
"""
from __future__ import annotations

import math
import multiprocessing as mp

import numpy as np
import torch

from ..simulate.diffraction import cfft
from ..phase.inputs import apply_symmetry, check_weight_kind, phase_input, phase_weight, random_symmetry

__all__ = ["PhaseStream", "phase_sample", "sample_view", "simulate_phase_crystal", "VAL_SEED_BASE", "DATA_CENTRES",
           "check_data_centre", "peak_window", "SIMULATOR_REFUSALS"]

VAL_SEED_BASE = 1_500_000_000

#: what the simulator raises for a crystal it refuses to make (KnobError is a ValueError; the 2-D
#: polygon draw's RuntimeError): the streams draw the next seed, anything else (a bug) propagates
SIMULATOR_REFUSALS = (ValueError, RuntimeError)


#: where a training sample's pattern is centred -> what sits at index ``n//2`` (the weights card's
#: words): 'peak' (default since 0.7.15): the intensity maximum that inference centres the model's
#: box on (:func:`pynx_dlgap.phase.predict.bragg_peak` of the masked noisy pattern); 'q0': the
#: unstrained Bragg position ``q = 0`` (the simulator's default, the rule the shipped weights up to
#: 0.7.14 were trained with)
DATA_CENTRES = {"peak": "the masked intensity maximum (pynx_dlgap.phase.predict.bragg_peak) at index n//2 of "
                        "every axis",
                "q0": "Bragg peak at index n//2 of every axis"}


def check_data_centre(centre: str) -> str:
    if centre not in DATA_CENTRES:
        raise ValueError(f"data centre must be one of {tuple(DATA_CENTRES)}, got {centre!r}")
    return centre


def simulate_phase_crystal(seed: int, dims: int, shape, regime="mixed", phase_range=None, p_no_gap: float = 0.5,
                           centre: str = "q0"):
    """The simulator's sample for phase training, gaps in half of them.

    ``centre='q0'``: the Bragg peak ``q = 0`` at index ``n//2``. ``centre='peak'``: the same sample
    seen through a window whose centre ``n//2`` is the maximum that
    :func:`pynx_dlgap.phase.predict.bragg_peak` finds in its masked noisy pattern, i.e. where inference
    centres the model's box (:func:`peak_window`).
    """
    from ..simulate.pipeline import simulate
    check_data_centre(centre)
    knobs = {"crop_shift": [0] * dims}
    if phase_range is not None:
        knobs["phase_range"] = float(phase_range)
    if np.random.default_rng([int(seed), 77]).random() < p_no_gap:
        knobs["gaps"] = "none"
    s = simulate(int(seed), dims, shape, regime, knobs)
    return peak_window(s) if centre == "peak" else s


def peak_window(s: dict) -> dict:
    """Sample ``s`` (a :func:`~pynx_dlgap.simulate.pipeline.simulate` result, ``crop_shift`` 0) moved so
    that its masked, noisy maximum (:func:`~pynx_dlgap.phase.predict.bragg_peak` of ``intensity`` with
    ``mask | dead``) sits at ``n//2``.

    The crystal is re-simulated with ``crop_shift`` = that offset (same seed, knobs and ``scale``: ``expected``,
    ``phase``, ``object`` are the same crystal through the moved window, equal where the windows overlap
    up to the float32 rounding of the DFT's matrix products). The detector moves with the content:
    ``mask``, ``dead`` and the noisy ``intensity`` are ``s``'s rolled by the offset (gaps stay whole
    planes), and the strip the window brings in gets a
    fresh Poisson draw of its ``expected``. So the maximum is found at ``n//2`` unless the smoothing of
    :func:`~pynx_dlgap.phase.predict.bragg_peak` (4 px reach) sees something new near it or near another
    candidate: the strip (a brighter voxel, or the centre next to it after a move of about n/2) or
    the window's edge; ``params['peak_offset']`` is where it is found, ``params['peak_shift']`` the move.
    """
    from ..phase.predict import bragg_peak
    from ..simulate.pipeline import simulate
    p = s["params"]
    d = len(s["intensity"].shape)
    n = np.array(s["intensity"].shape)
    off = np.array(bragg_peak(s["intensity"], s["mask"] | s["dead"])) - n // 2
    if not off.any():
        return dict(s, params=dict(p, peak_shift=[0] * d, peak_offset=[0] * d))
    # |off| <= n/2: a crop_shift the simulator accepts
    # the same scale: the default (peak / the window's maximum) differs where the moved window holds a
    # brighter voxel or loses the brightest one
    s2 = simulate(p["seed"], d, tuple(n), p["regime"], dict(p["knobs"], crop_shift=[int(v) for v in off]),
                  scale=p["scale"])
    axes = tuple(range(d))
    roll = lambda a: np.roll(a, tuple(int(-v) for v in off), axes)  # noqa: E731
    inside = np.zeros(n, bool)
    inside[tuple(slice(max(0, -v), m - max(0, v)) for v, m in zip(off, n))] = True
    out = dict(s2, mask=roll(s["mask"]), dead=roll(s["dead"]))
    strip = np.random.default_rng([int(p["seed"]), 78]).poisson(s2["expected"].astype(np.float64))
    out["intensity"] = np.where(inside, roll(s["intensity"]), strip).astype(np.float32)
    out["intensity"][out["dead"]] = 0
    found = np.array(bragg_peak(out["intensity"], out["mask"] | out["dead"])) - n // 2
    out["params"] = dict(s2["params"], gaps=p.get("gaps"), peak_shift=[int(v) for v in off],
                         peak_offset=[int(v) for v in found])
    return out


def sample_view(s: dict, rng=None, augment=False, weight: str = "log"):
    """``(x, phase, weight)`` (numpy float32) of a simulated sample ``s``.

    ``x`` the model input (:func:`phase_input`, gaps and dead pixels masked),
    ``phase`` the label, ``weight`` the loss weight (:func:`pynx_dlgap.phase.inputs.phase_weight` of
    kind ``weight``: normalised log by default) of the crystal's noise-free
    complete intensity ``scale |cfft(object)|^2`` (without the background, under
    which the phase cannot be learnt). ``augment`` applies a random symmetry and a new flux + Poisson draw
    (``rng`` needed).
    """
    expected, mask, dead, phase = s["expected"], s["mask"], s["dead"], s["phase"]
    # the crystal's own signal (no background): the loss weights the phase where the crystal is seen
    if "_signal" not in s:
        s["_signal"] = (s["params"]["scale"] * np.abs(cfft(s["object"])) ** 2).astype(np.float32)
    signal = s["_signal"]
    intensity = s["intensity"]
    if augment:
        perm, flips = random_symmetry(rng, expected.shape)
        expected, mask, dead, phase, signal = (apply_symmetry(a, perm, flips)
                                               for a in (expected, mask, dead, phase, signal))
        f = 10.0 ** rng.uniform(-1, 0.5)
        expected, signal = expected * f, signal * f
        intensity = rng.poisson(expected.astype(np.float64)).astype(np.float32)
        intensity[dead] = 0
    x = phase_input(intensity, mask | dead)
    return x, phase.astype(np.float32), phase_weight(signal, weight)


def phase_sample(seed: int, dims: int, shape, regime="mixed", phase_range=None, p_no_gap: float = 0.5,
                 centre: str = "q0"):
    """One un-augmented ``(x, phase, weight, sample)`` (validation / tests)."""
    s = simulate_phase_crystal(seed, dims, shape, regime, phase_range, p_no_gap, centre)
    return (*sample_view(s), s)


class PhaseStream(torch.utils.data.IterableDataset):
    """Endless stream of ``(x, phase, weight)`` tensors; see the module docstring."""

    def __init__(self, dims=3, shape=64, regime="mixed", phase_max=2 * math.pi, views=2, seed_base=0, session=0,
                 weight: str = "log", centre: str = "q0"):
        super().__init__()
        self.weight = check_weight_kind(weight)  # an unknown kind fails here, not in a loader worker
        self.centre = check_data_centre(centre)
        self.dims = int(dims)
        self.shape = (int(shape),) * self.dims if np.isscalar(shape) else tuple(int(n) for n in shape)
        self.regime = regime
        self.views = int(views)
        self.seed_base = int(seed_base)
        self.session = int(session)
        self.phase_max = mp.Value("d", float(phase_max))  # shared with forked loader workers

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        w = 0 if info is None else info.id
        torch.set_num_threads(1)
        rng = np.random.default_rng([self.seed_base, self.session, w])
        base = self.seed_base + (self.session * 64 + w) * 1_000_000
        k = 0
        while True:
            seed = base + k
            k += 1
            pr = rng.uniform(0, self.phase_max.value)
            try:
                s = simulate_phase_crystal(seed, self.dims, self.shape, self.regime, pr, centre=self.centre)
            except SIMULATOR_REFUSALS:  # a knob combination the simulator refuses: draw the next crystal
                continue
            for _ in range(self.views):
                x, ph, wt = sample_view(s, rng, augment=True, weight=self.weight)
                yield torch.from_numpy(x), torch.from_numpy(ph), torch.from_numpy(wt)
