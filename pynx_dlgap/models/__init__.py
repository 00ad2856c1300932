"""Neural networks for gap inpainting and phase prediction, their registry and weights I/O.

* :class:`UNet`, :class:`UNetMod` (dilated encoder blocks), :class:`MSDNet` — one class
  per family, ``dims=2`` or ``3``;
* :func:`build_model` / :func:`list_models` — named configurations (``'inpaint3d_small'``,
  ``'phase3d_small'``, the seed's ``'unet2d_seed'``...) and rebuilding from ``model.config``;
* :func:`save_weights` / :func:`load_weights` — safetensors + JSON card with SHA-256;
* :mod:`.fastconv` — the convolutions of every model: ``nn.ConvNd`` that run float32 CPU
  inference on oneDNN at every size (``plain_convolutions()`` turns that off).
"""
from .fastconv import plain_convolutions
from .msdnet import MSDNet
from .registry import MODEL_CLASSES, build_model, describe_models, get_config, list_models, register_model
from .unet import SEED_DILATIONS, UNet, UNetMod, count_parameters, unit_phasor
from .weights import WeightsError, load_weights, read_card, save_weights, sha256_file

__all__ = [
    "UNet", "UNetMod", "MSDNet", "SEED_DILATIONS", "MODEL_CLASSES", "build_model", "list_models",
    "get_config", "register_model", "describe_models", "count_parameters", "unit_phasor",
    "save_weights", "load_weights", "read_card", "sha256_file", "WeightsError", "plain_convolutions",
]
