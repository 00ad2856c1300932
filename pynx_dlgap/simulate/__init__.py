"""Synthetic BCDI data: seeded 2-D/3-D crystals, diffraction counts like measured
data, reciprocal-space phase labels, detector gaps, and HDF5 datasets.

Every sample is a pure function of an integer seed and its *knobs*
(:mod:`pynx_dlgap.simulate.knobs`); conventions (FFT, phase label, masks) are
documented in :mod:`pynx_dlgap.simulate.pipeline` and
:mod:`pynx_dlgap.simulate.diffraction`.

>>> from pynx_dlgap.simulate import simulate_3d, pattern_stats
>>> s = simulate_3d(0, (32, 32, 32), regime="measured", phase_range=3.0)
>>> s["intensity"].shape, s["object"].dtype
((32, 32, 32), dtype('complex64'))
"""
from .gaps import (DETECTORS, Gap, GapLayout, cross, module_layout, plane,  # noqa: F401
                   random_layout)
from .knobs import KNOB_DOC, KnobError, random_knobs  # noqa: F401
from .diffraction import cfft, icfft, dft_box, pattern_stats, phase_label  # noqa: F401
from .crystal2d import simulate_2d  # noqa: F401
from .crystal3d import simulate_3d  # noqa: F401
from .pipeline import simulate, draw_gaps  # noqa: F401

__all__ = ["simulate_2d", "simulate_3d", "simulate", "random_knobs", "pattern_stats", "phase_label",
           "cfft", "icfft", "dft_box", "draw_gaps", "KNOB_DOC", "KnobError",
           "write_dataset", "read_sample", "regenerate_sample", "iter_samples", "sample_seed",
           "add_cli", "Gap", "GapLayout", "plane", "cross", "module_layout", "random_layout",
           "DETECTORS"]


def __getattr__(name):  # lazy: h5py / argparse only when used
    if name in ("write_dataset", "read_sample", "regenerate_sample", "iter_samples", "sample_seed",
                "dataset_info"):
        from . import dataset
        return getattr(dataset, name)
    if name == "add_cli":
        from .cli import add_cli
        return add_cli
    raise AttributeError(name)
