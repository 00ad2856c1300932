"""Mixed-scale dense network (Pelt & Sethian, PNAS 2018), 2-D and 3-D.

Layer ``i`` (``i = 0 .. depth-1``) computes ``width`` feature maps with a 3x3(x3)
convolution of *all* previous feature maps (the input and every earlier layer's
output), dilation ``(i % max_dilation) + 1`` (1..10 cycling by default), followed
by an activation. The output is a 1x1(x1) convolution of all feature maps.
No pooling: any spatial size works.

Parameters: ``sum_i k^d (C_in + i w) w + w`` for the layers, plus
``(C_in + depth w + 1) C_out`` for the output. With ``width=1``, ``depth=267``,
one input and one output channel that is 322,538, within 0.03 % of the 322,458 of
the seed's Table 4.1 (registry ``'msdnet2d_seed'``; the seed's own Keras variant
could not be reconstructed from the garbled table).

Memory grows as ``depth**2`` (every layer's concatenated input is kept for the
backward pass): fine for 2-D studies, use a small depth in 3-D.
"""
from __future__ import annotations

import torch
from torch import nn

from .unet import _CONV, ConvNormAct, OutputActivation, _check_dims, _jsonable, check_input

__all__ = ["MSDNet"]


class MSDNet(nn.Module):
    """Mixed-scale dense network.

    Parameters
    ----------
    dims : 2 or 3
    in_channels, out_channels : int
    depth : number of dilated layers (seed ~ 100 .. 267)
    width : feature maps per layer (Pelt & Sethian: 1)
    max_dilation : dilations cycle through ``1 .. max_dilation``
    kernel_size : odd kernel of the dilated convolutions
    norm, norm_groups, activation : per-layer normalisation and activation
        (default: none, ReLU, as in the original)
    out_activation : ``None``, ``'sigmoid'``, ``'tanh'``, ``'clamp01'`` or ``'phasor'``
    residual, residual_channel : add the output to input channel ``residual_channel``
        (output convolution zero-initialised), see :class:`~pynx_dlgap.models.UNet`.
    padding_mode : padding of the convolutions
    """

    def __init__(self, dims: int = 2, in_channels: int = 1, out_channels: int = 1, depth: int = 100,
                 width: int = 1, max_dilation: int = 10, kernel_size: int = 3, norm: str | None = None,
                 norm_groups: int = 8, activation: str = "relu", out_activation: str | None = None,
                 residual: bool = False, residual_channel: int = 0, padding_mode: str = "zeros"):
        super().__init__()
        dims = _check_dims(dims)
        if depth < 1 or width < 1 or max_dilation < 1:
            raise ValueError("depth, width and max_dilation must all be >= 1")
        if residual and out_channels != 1:
            raise ValueError("residual=True adds the output to one input channel: it needs out_channels=1")
        if residual and not 0 <= residual_channel < in_channels:
            raise ValueError(f"residual_channel={residual_channel} is not an input channel")
        self.dims, self.in_channels, self.out_channels = dims, int(in_channels), int(out_channels)
        self.depth, self.width = int(depth), int(width)
        self.residual, self.residual_channel = bool(residual), int(residual_channel)
        self.config = {"class": type(self).__name__, "kwargs": _jsonable(dict(
            dims=dims, in_channels=int(in_channels), out_channels=int(out_channels), depth=int(depth),
            width=int(width), max_dilation=int(max_dilation), kernel_size=int(kernel_size), norm=norm,
            norm_groups=int(norm_groups), activation=activation, out_activation=out_activation,
            residual=bool(residual), residual_channel=int(residual_channel), padding_mode=padding_mode))}
        self.dilations = [(i % max_dilation) + 1 for i in range(depth)]
        self.layers = nn.ModuleList(
            ConvNormAct(dims, in_channels + i * width, width, kernel_size=kernel_size, dilation=d, norm=norm,
                        norm_groups=norm_groups, activation=activation, padding_mode=padding_mode)
            for i, d in enumerate(self.dilations))
        self.out_conv = _CONV[dims](in_channels + depth * width, out_channels, 1)
        self.out_act = OutputActivation(out_activation, out_channels)
        if self.residual:
            nn.init.zeros_(self.out_conv.weight)
            nn.init.zeros_(self.out_conv.bias)

    size_multiple = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x)
        inp = x
        for layer in self.layers:
            x = torch.cat([x, layer(x)], dim=1)
        x = self.out_conv(x)
        if self.residual:
            c = self.residual_channel
            x = x.float() + inp[:, c:c + 1].float()
        return self.out_act(x)
