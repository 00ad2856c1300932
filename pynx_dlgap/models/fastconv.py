"""Convolutions that take oneDNN's kernel for CPU inference at batch size 1.

For a float32 CPU convolution, PyTorch picks oneDNN (``mkldnn_convolution``) or its
own im2col path (``slow_conv3d_forward``) by a size heuristic: with one sample and a
3x3(x3) kernel it takes oneDNN only when ``N*C*D*H`` (3-D) or ``N*C*H*W`` (2-D)
exceeds 20480. The deeper levels of a U-Net run on a single 64^3 pattern fall below
that, and the im2col path is about 3x slower per operation there: in an ad-hoc torch
profile on these 2-core AVX2 machines (one thread, the shipped 3-D phase model, 64^3
input), its 12 such convolutions, a quarter of the model's multiply-adds, took as long as
the 7 large ones (``benchmarks/model_speed.py`` times the whole models both ways). :class:`Conv2d` and
:class:`Conv3d` are ``nn.ConvNd`` with the same parameters and state-dict keys; when
no gradient is being recorded, CPU autocast is off, the input is a float32 CPU tensor,
padding is zeros and oneDNN is available, they call oneDNN directly. Training, autocast
(bf16), other dtypes, other devices and other padding modes run ``nn.ConvNd`` unchanged. The result agrees with
``nn.ConvNd`` to float32 rounding (tests/test_models.py).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

__all__ = ["Conv2d", "Conv3d", "onednn_inference", "plain_convolutions"]

_ENABLED = [True]


@contextlib.contextmanager
def plain_convolutions():
    """Inside this context every :class:`Conv2d`/:class:`Conv3d` runs ``nn.ConvNd``'s own
    path (PyTorch's heuristic); used by ``benchmarks/model_speed.py`` as the baseline."""
    prev = _ENABLED[0]
    _ENABLED[0] = False
    try:
        yield
    finally:
        _ENABLED[0] = prev


def onednn_inference(x: torch.Tensor, padding_mode: str) -> bool:
    """Whether a convolution of ``x`` may take the direct oneDNN path."""
    return (_ENABLED[0] and padding_mode == "zeros" and not torch.is_grad_enabled() and x.device.type == "cpu"
            and not torch.is_autocast_enabled("cpu")  # autocast casts F.convNd's inputs, not this aten call
            and x.dtype == torch.float32 and not x.is_mkldnn and torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled)


class _OneDNNConv:
    def _conv_forward(self, input, weight, bias):  # noqa: A002 - torch's signature
        if onednn_inference(input, self.padding_mode) and not isinstance(self.padding, str):
            return torch.ops.aten.mkldnn_convolution(input, weight, bias, self.padding, self.stride,
                                                     self.dilation, self.groups)
        return super()._conv_forward(input, weight, bias)


class Conv2d(_OneDNNConv, nn.Conv2d):
    """``nn.Conv2d`` that runs float32 CPU inference on oneDNN at every size."""


class Conv3d(_OneDNNConv, nn.Conv3d):
    """``nn.Conv3d`` that runs float32 CPU inference on oneDNN at every size."""
