"""pynx-dlgap: deep-learning detector-gap inpainting and phase initialisation for BCDI.

The core (``simulate``, ``data``, ``models``, ``training``, ``inpaint``,
``phase``, ``evaluate``) works on plain numpy/torch arrays and never imports
PyNX. ``pynx_dlgap.operators`` and ``pynx_dlgap.runner`` plug it into PyNX.
"""
__version__ = "0.7.17"

from ._checks import PatternError, check_pattern  # noqa: F401
