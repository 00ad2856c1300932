"""Named model configurations and the one factory that builds them.

>>> from pynx_dlgap.models import build_model, list_models
>>> 'inpaint3d_small' in list_models()
True
>>> m = build_model('inpaint3d_small')
>>> m.config['class'], m.config['name']
('UNetMod', 'inpaint3d_small')
>>> m2 = build_model(m.config)          # rebuild from the JSON-able config (or a weights card)

Every model carries ``model.config = {"class": ..., "kwargs": {...}}`` (plus
``"name"`` when built from the registry); that dict, stored in a weights card,
is all that is needed to rebuild it.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping

from torch import nn

from .msdnet import MSDNet
from .unet import SEED_DILATIONS, UNet, UNetMod

__all__ = ["MODEL_CLASSES", "build_model", "list_models", "get_config", "register_model", "describe_models"]

#: Classes that configs (and weights cards) may name. Nothing else is ever built.
MODEL_CLASSES = {"UNet": UNet, "UNetMod": UNetMod, "MSDNet": MSDNet}

#: Dilation rates of the small 3-D inpainting model (levels 32^3, 16^3, 8^3 of a 32^3 patch).
INPAINT3D_DILATIONS = ((1, 2, 4, 8), (1, 2, 3, 5), (1, 2, 3, 4))

_SEED_UNET = dict(dims=2, in_channels=1, out_channels=1, depth=6, base_channels=48, channel_mult=2,
                  convs_per_block=1, decoder_convs=0, up_mode="transpose", up_kernel_size=3,
                  head_channels=(24, 12, 6), head_kernel_size=3, out_kernel_size=3, norm=None,
                  activation="leaky_relu", out_activation="sigmoid")

_REGISTRY: dict[str, dict[str, Any]] = {}


def register_model(name: str, cls: str, kwargs: Mapping[str, Any], description: str = "",
                   input_shape: tuple | None = None, task: str = "", overwrite: bool = False) -> None:
    """Add a named configuration (``cls`` one of :data:`MODEL_CLASSES`)."""
    if cls not in MODEL_CLASSES:
        raise ValueError(f"unknown model class {cls!r}; known: {sorted(MODEL_CLASSES)}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"model name {name!r} is already registered (pass overwrite=True to replace it)")
    _REGISTRY[name] = {"class": cls, "kwargs": dict(kwargs), "description": description,
                       "input_shape": None if input_shape is None else list(input_shape), "task": task}


register_model(
    "unet2d_seed", "UNet", dict(_SEED_UNET, top_skip=False),
    "Seed thesis Table 4.1 2-D U-Net: 5 pooled levels 48->768 ch + 1536 bottleneck, one conv per "
    "block, transposed-conv decoder, no full-resolution skip, 3x3 head 24-12-6, sigmoid. 31,827,673 params "
    "(exact; the table's pseudo-code says 5x5 head kernels, but only 3x3 gives the published count).",
    input_shape=(1, 1, 128, 128), task="study")
register_model(
    "unetmod2d_seed", "UNetMod",
    dict(_SEED_UNET, top_skip=True, dilations=SEED_DILATIONS, keep_input=True, up_kernel_size=(3, 3, 3, 3, 4)),
    "Seed thesis Table 4.1 2-D U-Net_mod: dilated first three encoder blocks (16,8,4,2)/(10,5,3,1)/(5,3,2,1) "
    "concatenated with their input, last transposed conv 4x4. 32,652,337 params (exact).",
    input_shape=(1, 1, 128, 128), task="study")
register_model(
    "msdnet2d_seed", "MSDNet",
    dict(dims=2, in_channels=1, out_channels=1, depth=267, width=1, max_dilation=10, activation="relu",
         out_activation="sigmoid"),
    "Mixed-scale dense net (Pelt & Sethian), width 1, dilations 1..10; depth 267 gives 322,538 params "
    "(seed Table 4.1: 322,458).", input_shape=(1, 1, 128, 128), task="study")
register_model(
    "inpaint3d_small", "UNetMod",
    dict(dims=3, in_channels=3, out_channels=1, depth=4, channels=(12, 32, 64, 128), convs_per_block=2,
         decoder_convs=1, dilations=INPAINT3D_DILATIONS, keep_input=True, up_mode="transpose", up_kernel_size=2,
         norm="group", norm_groups=8, activation="leaky_relu", out_activation=None, residual=True,
         residual_channel=0),
    "3-D gap inpainting of 32^3 patches, CPU-trainable (~1.3 M params). Inputs: (normalised log-intensity "
    "with the gap prefilled by log-space interpolation, gap mask, count level); output: normalised "
    "log-intensity = prefill + learnt correction (residual). Measured on a 2-core AMD EPYC (avx512_bf16), "
    "batch 16: training 14 patches/s fp32, 22 with bf16 autocast (channels-first; channels_last_3d is "
    "slower with GroupNorm under bf16); inference 31 (fp32), 44 (fp32 channels_last_3d), 63 (bf16) patches/s.",
    input_shape=(1, 3, 32, 32, 32), task="inpaint")
register_model(
    "inpaint3d_base", "UNetMod",
    dict(dims=3, in_channels=3, out_channels=1, depth=4, channels=(24, 48, 96, 160), convs_per_block=2,
         decoder_convs=2, dilations=INPAINT3D_DILATIONS, keep_input=True, up_mode="transpose", up_kernel_size=2,
         norm="group", norm_groups=8, activation="leaky_relu", out_activation=None, residual=True,
         residual_channel=0),
    "3-D gap inpainting of 32^3 patches at the published size (Masto 2024: ~2.8 M params; this one 2.9 M); GPU training.",
    input_shape=(1, 3, 32, 32, 32), task="inpaint")
register_model(
    "inpaint2d_small", "UNetMod",
    dict(dims=2, in_channels=3, out_channels=1, depth=4, channels=(16, 32, 64, 128), convs_per_block=2,
         decoder_convs=1, dilations=((1, 2, 4, 8), (1, 2, 3, 5), (1, 2, 3, 4)), keep_input=True,
         norm="group", activation="leaky_relu", out_activation=None, residual=True, residual_channel=0),
    "2-D gap inpainting (studies on 2-D simulated patterns), same inputs/outputs as inpaint3d_small.",
    input_shape=(1, 3, 64, 64), task="inpaint")
register_model(
    "phase3d_small", "UNet",
    dict(dims=3, in_channels=5, out_channels=2, depth=5, channels=(16, 32, 64, 128, 256), convs_per_block=2,
         up_mode="transpose", up_kernel_size=2, norm="group", activation="leaky_relu", out_activation="phasor"),
    "3-D reciprocal-space phase prediction, 64^3 input (normalised log-intensity, mask, 3 coordinates: "
    "pynx_dlgap.phase.inputs), output unit phasor (cos, sin); ~5.6 M params, 25x smaller than the published 144 M.",
    input_shape=(1, 5, 64, 64, 64), task="phase")
register_model(
    "phase2d_small", "UNet",
    dict(dims=2, in_channels=4, out_channels=2, depth=5, channels=(24, 48, 96, 192, 384), convs_per_block=2,
         up_mode="transpose", up_kernel_size=2, norm="group", activation="leaky_relu", out_activation="phasor"),
    "2-D reciprocal-space phase prediction for 128x128 patterns (log-intensity, mask, 2 coordinates), "
    "unit-phasor output.",
    input_shape=(1, 4, 128, 128), task="phase")


def list_models(task: str | None = None) -> list[str]:
    """Names of the registered configurations (optionally only those of one ``task``:
    ``'inpaint'``, ``'phase'`` or ``'study'``)."""
    return sorted(n for n, e in _REGISTRY.items() if task is None or e["task"] == task)


def describe_models() -> dict[str, str]:
    """``{name: description}`` for every registered configuration."""
    return {n: _REGISTRY[n]["description"] for n in list_models()}


def get_config(name: str) -> dict[str, Any]:
    """A deep copy of the registry entry ``name`` (class, kwargs, description, input_shape, task)."""
    try:
        return copy.deepcopy(_REGISTRY[name])
    except KeyError:
        raise KeyError(f"no model named {name!r}; registered models: {', '.join(list_models())}") from None


def build_model(name_or_config, **overrides) -> nn.Module:
    """Build a model from a registry name, a config dict or a weights card.

    Parameters
    ----------
    name_or_config : str or dict
        A name from :func:`list_models`; or ``{"class": "UNet", "kwargs": {...}}``
        (``model.config``); or a weights card holding such a dict under ``"architecture"``.
    **overrides
        Keyword arguments replacing those of the config (e.g. ``in_channels=2``).

    Returns
    -------
    torch.nn.Module with ``.config`` set (``"name"`` included when built from the registry).
    """
    name = None
    if isinstance(name_or_config, str):
        name = name_or_config
        entry = get_config(name)
        cls_name, kwargs = entry["class"], entry["kwargs"]
    elif isinstance(name_or_config, Mapping):
        cfg = name_or_config
        if "architecture" in cfg and isinstance(cfg["architecture"], Mapping):
            cfg = cfg["architecture"]
        if "class" not in cfg:
            if "name" in cfg:
                return build_model(cfg["name"], **{**cfg.get("kwargs", {}), **overrides})
            raise ValueError("a model config must hold 'class' and 'kwargs' (as model.config does), "
                             f"or a registry 'name'; got keys {sorted(cfg)}")
        cls_name, kwargs = cfg["class"], dict(cfg.get("kwargs", {}))
        name = cfg.get("name")
    else:
        raise TypeError(f"build_model takes a registry name or a config dict, not {type(name_or_config).__name__}")
    if cls_name not in MODEL_CLASSES:
        raise ValueError(f"unknown model class {cls_name!r}; known: {sorted(MODEL_CLASSES)}")
    kwargs = {**copy.deepcopy(kwargs), **overrides}
    try:
        model = MODEL_CLASSES[cls_name](**kwargs)
    except TypeError as e:
        raise ValueError(f"cannot build {cls_name} from the arguments {sorted(kwargs)}: {e}") from None
    if name is not None:
        model.config["name"] = name
    return model
