"""Learning-rate schedule, training progress and checkpoint writing shared by the trainers.

``progress`` is the fraction of the run done: ``step / steps``, or, with a
time budget (``time_limit`` seconds of training in total, summed over resumed
sessions), whichever of ``step / steps`` and ``seconds / time_limit`` is larger,
so that a run cut by its time budget still ends with the learning rate annealed
and the curriculum complete.
"""
from __future__ import annotations

import math

import os
import platform

import torch

__all__ = ["progress", "cosine_lr", "hardware", "atomic_save"]


def atomic_save(obj, path) -> None:
    """``torch.save(obj, path)`` through a temporary file and a rename: an interrupted save
    never leaves a truncated checkpoint behind."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def hardware(device: str) -> str:
    """What a run trains on, for checkpoints and weights cards."""
    if str(device).startswith("cuda"):
        return f"{torch.cuda.get_device_name(0)} GPU + {os.cpu_count()} CPU cores"
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def progress(step: int, seconds: float, cfg) -> float:
    p = step / max(1, cfg["steps"])
    if cfg.get("time_limit"):
        p = max(p, seconds / cfg["time_limit"])
    return min(1.0, p)


def cosine_lr(prog: float, step: int, cfg) -> float:
    """Linear warm-up over ``cfg['warmup']`` steps, then cosine from ``lr`` to 2 % of it."""
    if step < cfg["warmup"]:
        return cfg["lr"] * (step + 1) / cfg["warmup"]
    w = cfg["warmup"] / max(1, cfg["steps"])
    t = (prog - w) / max(1e-9, 1 - w)
    return cfg["lr"] * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(max(t, 0.0), 1.0))))
