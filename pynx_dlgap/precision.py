"""bfloat16 only where the hardware runs it natively.

bfloat16 (``--bf16``, ``bf16=True``) is several times faster than float32 on GPUs and
on CPUs with bf16 instructions (AVX512-BF16, AMX). On a CPU without them (AVX2-only
x86, many laptops and older cluster nodes) PyTorch falls back to slow reference
kernels: in an ad-hoc timing on a 2-core AVX2 EPYC, the shipped 3-D phase model took 9.6 s on a
32^3 input in bf16 against 1.0 s on its full 64^3 input in float32, and a 64^3 bf16
prediction did not finish in 30 minutes.

So every entry point that takes ``bf16`` resolves it with :func:`resolve_bf16` before
any work: a request on a device without native bf16 falls back to float32 with a
``RuntimeWarning`` that says so, and the info / CXI records give the precision that
actually ran. Set the environment variable ``PYNX_DLGAP_BF16=force`` to run bf16
anyway (to reproduce bf16 numbers on such a machine, slowly).
"""
from __future__ import annotations

import os
import warnings

__all__ = ["bf16_native", "resolve_bf16"]


def bf16_native(device) -> bool:
    """Whether ``device`` (a torch device or its name) runs bfloat16 convolutions natively:
    a CUDA device that supports bf16, or a CPU with AVX512-BF16/AMX (oneDNN's check)."""
    import torch
    dev = torch.device(device)
    if dev.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if dev.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # no oneDNN in this torch build
            return False
    return False


def resolve_bf16(requested, device, what: str = "the DL model") -> bool:
    """The bf16 setting to use on ``device`` for a request (``True``/``False``, or ``'auto'``
    for bf16 exactly where it is native).

    ``True`` on a device without native bf16 gives float32 and a ``RuntimeWarning``
    (unless ``PYNX_DLGAP_BF16=force``); ``'auto'`` never warns.
    """
    if isinstance(requested, str):
        if requested.lower() != "auto":
            raise ValueError(f"bf16 must be True, False or 'auto', not {requested!r}")
        return bf16_native(device)
    if not requested:
        return False
    if os.environ.get("PYNX_DLGAP_BF16", "").lower() == "force" or bf16_native(device):
        return True
    warnings.warn(f"bf16 requested for {what} on {device}, which has no native bfloat16 "
                  "(a CPU without AVX512-BF16/AMX: bf16 would run tens of times slower than float32 "
                  "there); using float32. Set PYNX_DLGAP_BF16=force to run bf16 anyway.",
                  RuntimeWarning, stacklevel=3)
    return False
