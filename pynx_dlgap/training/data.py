"""Training patches drawn on the fly from the simulator (an endless, seeded stream).

Each source pattern is a fresh simulated 3-D (or 2-D) crystal over the whole
range of count regimes (textbook to measured-like: high counts, background
floor, fringes to the edges). From each, ``patches_per_source`` patches are cut
(half of them near the Bragg peak, half anywhere), and each gets its own gap
layout drawn **inside the patch**: one plane (normal to y or x), a cross, or
several gaps, of random width 1-12 px, at random positions, edges included, so
that one model serves every width. Dead pixels of the simulated detector are
added to the mask (they are filled too).

Augmentations respecting the physics: flux scaling (the noise-free expected
intensity is rescaled by 10**U(-1, 1) and Poisson noise drawn again, so counts
stay counts), flips of every axis and the y<->x transposition (which swaps the
gap orientation). The truth inside the gap is a measured (Poisson) intensity,
as for experimental data (``gap_target='measured'``, the default), or the
noise-free expected intensity (``gap_target='expected'``): the model input
never sees the gap's values (they are masked and prefilled from the measured
voxels), so this changes only the training target, to the quantity a fill
should estimate, without the counting noise that no fill can predict.
"""
from __future__ import annotations

import numpy as np

from ..simulate import gaps as G

__all__ = ["PatchStream"]


class PatchStream:
    """Iterator of ``(I, mask)`` batches: ``(B, *patch)`` float32 counts and bool masks.

    Parameters
    ----------
    seed : base seed; source ``k`` of this stream is simulated from seed
        ``seed * 1_000_003 + k`` (keep training seeds below
        :data:`pynx_dlgap.evaluate.gapbench.TEST_SEED_BASE`)
    batch, patch, dims : batch size, patch edge (32), 2 or 3
    regime : simulator regime ('mixed' draws textbook-to-measured per source)
    widths : gap widths drawn uniformly
    source : edge of the simulated source arrays (>= patch)
    flux_aug : rescale the expected intensity by 10**U(-1, 1) before Poisson noise
    gap_target : 'measured' (Poisson counts in the gap, default) or 'expected' (the noise-free
        expected counts in the gap and dead pixels; the measured voxels are Poisson counts either way)
    """

    def __init__(self, seed=0, batch=16, patch=32, dims=3, regime="mixed", widths=tuple(range(1, 13)),
                 source=64, patches_per_source=8, flux_aug=True, p_cross=0.25, p_multi=0.1, knobs=None,
                 gap_target="measured"):
        if source < patch:
            raise ValueError(f"source ({source}) must be at least the patch size ({patch})")
        if gap_target not in ("measured", "expected"):
            raise ValueError(f"gap_target must be 'measured' or 'expected', not {gap_target!r}")
        self.gap_target = gap_target
        self.seed, self.batch, self.patch, self.dims = int(seed), int(batch), int(patch), int(dims)
        self.regime, self.widths = regime, tuple(int(w) for w in widths)
        self.source, self.pps, self.flux_aug = int(source), int(patches_per_source), bool(flux_aug)
        self.p_cross, self.p_multi, self.knobs = p_cross, p_multi, dict(knobs or {})
        self.k = 0  # sources drawn so far (state for resuming)
        self._buf = []

    def state_dict(self):
        return {"seed": self.seed, "k": self.k}

    def load_state_dict(self, d):
        self.seed, self.k, self._buf = int(d["seed"]), int(d["k"]), []

    def _source(self):
        from ..simulate import simulate_2d, simulate_3d
        sim = simulate_3d if self.dims == 3 else simulate_2d
        sseed = self.seed * 1_000_003 + self.k
        self.k += 1
        rng = np.random.default_rng([sseed, 7])
        s = sim(sseed, (self.source,) * self.dims, self.regime, **{"gaps": "none", **self.knobs})
        expected = s["expected"].astype(np.float64)
        if self.flux_aug:
            expected = expected * 10 ** rng.uniform(-1, 1)
        I = rng.poisson(expected).astype(np.float32)
        E = expected.astype(np.float32) if self.gap_target == "expected" else None
        dead = s.get("dead")
        p, n = self.patch, self.source
        c = n // 2
        for j in range(self.pps):
            if j % 2 == 0:  # near the Bragg peak
                lo = [int(np.clip(c - p // 2 + rng.integers(-p // 3, p // 3 + 1), 0, n - p)) for _ in range(self.dims)]
            else:
                lo = [int(rng.integers(0, n - p + 1)) for _ in range(self.dims)]
            sl = tuple(slice(a, a + p) for a in lo)
            Ip = I[sl]
            while True:  # several gaps covering a whole axis mask the entire patch: nothing to fill from, redraw
                lay = G.random_layout(rng, (p,) * self.dims, widths=self.widths, p_cross=self.p_cross,
                                      p_multi=self.p_multi)
                m = lay.mask(Ip.shape)
                if not m.all():
                    break
            if dead is not None:
                m = m | dead[sl]
            if E is not None:  # the target in the gap: the noise-free counts (the input never sees them)
                Ip = np.where(m, E[sl], Ip)
            # augmentations: flips, y<->x transposition
            for ax in range(self.dims):
                if rng.random() < 0.5:
                    Ip, m = np.flip(Ip, ax), np.flip(m, ax)
            if rng.random() < 0.5:
                Ip, m = np.swapaxes(Ip, -1, -2), np.swapaxes(m, -1, -2)
            self._buf.append((np.ascontiguousarray(Ip), np.ascontiguousarray(m)))

    def __iter__(self):
        return self

    def __next__(self):
        while len(self._buf) < self.batch:
            self._source()
        out, self._buf = self._buf[:self.batch], self._buf[self.batch:]
        return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])
