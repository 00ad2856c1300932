"""Weights are data: safetensors files beside a JSON model card; never unpickled.

``save_weights(model, "w/inpaint_gap6.safetensors", card)`` writes

* ``w/inpaint_gap6.safetensors`` — the state dict (safetensors format),
* ``w/inpaint_gap6.json`` — the card: ``architecture`` (``model.config``: class
  and keyword arguments, enough to rebuild the model), ``sha256`` of the weights
  file, ``n_params``, versions, date, plus whatever the caller passes (data
  recipe, training time, hardware, metrics, gap widths supported, normalisation...).

``load_weights(path)`` reads the card, rebuilds the model from it, checks the
SHA-256 of the weights file, then loads the tensors with ``safetensors``.
A pickle / ``torch.save`` file is refused, whatever its name.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .registry import build_model
from .unet import count_parameters

__all__ = ["WeightsError", "save_weights", "load_weights", "read_card", "sha256_file", "card_path",
           "CARD_FORMAT"]

CARD_FORMAT = "pynx-dlgap-weights/1"
_RESERVED = ("format", "architecture", "weights_file", "sha256", "n_params", "torch_version",
             "pynx_dlgap_version", "created", "stored_dtype")
_HOW_TO_GET = ("Use the weights shipped in pynx_dlgap/weights/ (pass their path), or train a model with "
               "`pynx-dlgap train` (see the README), which writes a .safetensors file and its .json card.")


class WeightsError(ValueError):
    """A weights file or card that cannot be used (missing, corrupted, unsafe, inconsistent)."""


def sha256_file(path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _weights_path(path) -> Path:
    p = Path(path)
    if p.suffix.lower() == ".json":
        return p.with_suffix(".safetensors")
    if p.suffix == "":
        return p.with_suffix(".safetensors")
    return p


def card_path(path) -> Path:
    """The card that belongs to a weights file: same name, ``.json`` suffix."""
    return _weights_path(path).with_suffix(".json")


def _jsonable(obj):
    """Best-effort conversion of card values (numpy scalars/arrays, paths, tuples) to JSON types."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    raise TypeError(f"card value {obj!r} of type {type(obj).__name__} is not JSON-serialisable")


def save_weights(model: nn.Module, path, card: Mapping[str, Any] | None = None, dtype=None) -> dict:
    """Write ``path`` (.safetensors) and its card ``path.with_suffix('.json')``.

    Parameters
    ----------
    model : a model with ``.config`` (built by :func:`~pynx_dlgap.models.build_model`
        or one of the model classes).
    path : destination of the weights (``.safetensors`` suffix added if missing).
    card : extra fields for the card (data recipe, training time, hardware, metrics,
        gap widths supported, normalisation, ...). The keys ``format``,
        ``architecture``, ``weights_file``, ``sha256``, ``n_params``, ``torch_version``,
        ``pynx_dlgap_version`` and ``created`` are written by this function.
    dtype : store floating-point tensors in this dtype (e.g. ``torch.float16`` to halve
        the file; :func:`load_weights` casts them back to the model's dtype); the card
        records it as ``stored_dtype``.

    Returns
    -------
    dict : the card as written.
    """
    from safetensors.torch import save_file

    config = getattr(model, "config", None)
    if not isinstance(config, Mapping) or "class" not in config:
        raise WeightsError(f"{type(model).__name__} has no .config {{'class', 'kwargs'}}: build it with "
                           f"pynx_dlgap.models.build_model so that it can be rebuilt from its card")
    card = dict(card or {})
    clash = sorted(set(card) & set(_RESERVED))
    if clash:
        raise WeightsError(f"card keys {clash} are written by save_weights itself; rename them")
    wpath = _weights_path(path)
    wpath.parent.mkdir(parents=True, exist_ok=True)
    # detached, contiguous CPU copies: no shared storage, no device-specific layout
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    tmp = wpath.with_name(wpath.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": CARD_FORMAT, "class": str(config["class"])})
    os.replace(tmp, wpath)
    from .. import __version__

    full = {
        "format": CARD_FORMAT,
        "architecture": _jsonable(dict(config)),
        "weights_file": wpath.name,
        "sha256": sha256_file(wpath),
        "n_params": count_parameters(model),
        "torch_version": torch.__version__,
        "pynx_dlgap_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "stored_dtype": str(dtype or torch.float32).replace("torch.", ""),
    }
    full.update(_jsonable(card))
    cpath = card_path(wpath)
    tmp = cpath.with_name(cpath.name + ".tmp")
    tmp.write_text(json.dumps(full, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, cpath)
    return full


def read_card(path) -> dict:
    """Read the JSON card of a weights file (``path`` may be the .safetensors or the .json)."""
    cpath = card_path(path)
    if not cpath.is_file():
        raise WeightsError(f"model card {cpath} not found (expected beside the weights file "
                           f"{_weights_path(path)}). {_HOW_TO_GET}")
    try:
        card = json.loads(cpath.read_text())
    except json.JSONDecodeError as e:
        raise WeightsError(f"model card {cpath} is not valid JSON ({e}): file corrupted or modified") from None
    if not isinstance(card, dict) or "architecture" not in card or "sha256" not in card:
        raise WeightsError(f"model card {cpath} lacks 'architecture' or 'sha256': not a pynx-dlgap card")
    return card


def _check_safetensors_header(wpath: Path) -> None:
    """Refuse anything that is not a safetensors file (pickles, torch.save zips...)."""
    with open(wpath, "rb") as f:
        head = f.read(9)
    if head[:1] == b"\x80" or head[:2] == b"PK" or len(head) < 9 or head[8:9] != b"{":
        kind = ("a pickle / torch.save file" if head[:1] == b"\x80" or head[:2] == b"PK"
                else "not a safetensors file")
        raise WeightsError(f"{wpath} is {kind}; pynx-dlgap never unpickles weights (arbitrary code "
                           f"execution risk). Convert a trusted state dict with "
                           f"torch.load(..., weights_only=True) then save_weights(model, path, card)")
    (n,) = struct.unpack("<Q", head[:8])
    if n > os.path.getsize(wpath):
        raise WeightsError(f"{wpath} has an invalid safetensors header: file corrupted or modified")


def load_weights(path, map_location: str | torch.device = "cpu", strict: bool = True,
                 verify: bool = True) -> tuple[nn.Module, dict]:
    """Rebuild a model from its card and load its weights.

    Parameters
    ----------
    path : the ``.safetensors`` file (or its ``.json`` card).
    map_location : device the tensors are loaded to (the model is moved there).
    strict : require the file's tensors to match the model's state dict exactly.
    verify : check the SHA-256 recorded in the card (keep True unless you know why).

    Returns
    -------
    (model, card) : the model in eval mode and the card dict.

    Raises
    ------
    WeightsError : missing file (says which one and how to get it), checksum mismatch
        ("file corrupted or modified"), a pickle file, or tensors that do not fit.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    wpath = _weights_path(path)
    if not wpath.is_file():
        raise WeightsError(f"weights file {wpath} not found (expected together with its card "
                           f"{card_path(wpath)}). {_HOW_TO_GET}")
    _check_safetensors_header(wpath)
    card = read_card(wpath)
    if verify:
        digest = sha256_file(wpath)
        if digest != card["sha256"]:
            raise WeightsError(f"SHA-256 of {wpath} is {digest} but its card {card_path(wpath)} records "
                               f"{card['sha256']}: file corrupted or modified. Re-download or re-train it")
    try:
        model = build_model(card["architecture"])
    except (ValueError, TypeError, KeyError) as e:
        raise WeightsError(f"cannot rebuild the model of {card_path(wpath)}: {e}") from None
    try:
        tensors = load_file(str(wpath), device=str(map_location))
    except SafetensorError as e:
        raise WeightsError(f"{wpath} cannot be read as safetensors ({e}): file corrupted or modified") from None
    try:
        model.load_state_dict(tensors, strict=strict)
    except RuntimeError as e:
        raise WeightsError(f"the tensors of {wpath} do not fit the architecture of its card: {e}") from None
    model.to(map_location)
    model.eval()
    return model, card
