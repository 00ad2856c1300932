"""On-the-fly training samples for the phase models.

:class:`PhaseStream` is a ``torch.utils.data.IterableDataset``: every worker
simulates its own crystals (:func:`pynx_dlgap.simulate.pipeline.simulate`, all
regimes, Bragg phase range drawn ``U(0, phase_max)``), and yields ``views``
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

__all__ = ["PhaseStream", "phase_sample", "sample_view", "simulate_phase_crystal", "VAL_SEED_BASE"]

VAL_SEED_BASE = 1_500_000_000


def simulate_phase_crystal(seed: int, dims: int, shape, regime="mixed", phase_range=None, p_no_gap: float = 0.5):
    """The simulator's sample for phase training: Bragg peak centred, gaps in half of them."""
    from ..simulate.pipeline import simulate
    knobs = {"crop_shift": [0] * dims}
    if phase_range is not None:
        knobs["phase_range"] = float(phase_range)
    if np.random.default_rng([int(seed), 77]).random() < p_no_gap:
        knobs["gaps"] = "none"
    return simulate(int(seed), dims, shape, regime, knobs)


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


def phase_sample(seed: int, dims: int, shape, regime="mixed", phase_range=None, p_no_gap: float = 0.5):
    """One un-augmented ``(x, phase, weight, sample)`` (validation / tests)."""
    s = simulate_phase_crystal(seed, dims, shape, regime, phase_range, p_no_gap)
    return (*sample_view(s), s)


class PhaseStream(torch.utils.data.IterableDataset):
    """Endless stream of ``(x, phase, weight)`` tensors; see the module docstring."""

    def __init__(self, dims=3, shape=64, regime="mixed", phase_max=2 * math.pi, views=2, seed_base=0, session=0,
                 weight: str = "log"):
        super().__init__()
        self.weight = check_weight_kind(weight)  # an unknown kind fails here, not in a loader worker
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
                s = simulate_phase_crystal(seed, self.dims, self.shape, self.regime, pr)
            except Exception:  # a knob combination the simulator refuses: draw the next crystal
                continue
            for _ in range(self.views):
                x, ph, wt = sample_view(s, rng, augment=True, weight=self.weight)
                yield torch.from_numpy(x), torch.from_numpy(ph), torch.from_numpy(wt)
