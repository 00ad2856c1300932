"""Dilated convolution computed as an ordinary convolution of the sub-lattices.

A 'same'-padded convolution with dilation ``d`` only ever combines voxels whose
indices are congruent modulo ``d``. Splitting the input into its ``d**dims``
sub-lattices (``x[..., r::d, s::d, t::d]``, "space-to-batch"), applying the
*undilated* kernel with padding 1 to each, and interleaving the results gives
exactly the dilated convolution (zero padding included; sizes not divisible by
``d`` are zero-padded at the end and cropped back).

Why: on CPUs, torch's backward of dilated 3-D convolutions falls back to a slow
path (an ad-hoc profile with torch 2.13 on these 2-core machines, not a repo benchmark: 4-8 s per 8x32^3
batch, against ~0.1 s for the ordinary convolution), which made a dilated
3-D U-Net untrainable here. This module holds an ordinary ``ConvNd`` (same
parameters and state-dict keys as ``nn.ConvNd``), so weights are
interchangeable with a plain dilated convolution.

For float32 CPU inference (no gradient, no autocast: :func:`~pynx_dlgap.models.fastconv.onednn_inference`)
the forward pass skips the sub-lattices and calls oneDNN's dilated kernel directly:
the same result without the two reshuffling copies, about 2x faster per layer on
these machines (ad-hoc timing of the shipped model's branches; ``benchmarks/model_speed.py``
times the whole model).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .fastconv import Conv2d, Conv3d, onednn_inference

__all__ = ["SubLatticeDilatedConv"]

_CONV = {2: Conv2d, 3: Conv3d}  # nn.ConvNd, oneDNN for CPU inference (fastconv.py)


class SubLatticeDilatedConv(nn.Module):
    """``ConvNd(cin, cout, k, dilation=d, padding=d*(k-1)//2)`` via sub-lattices.

    Parameters are those of the wrapped ``self.conv`` (``weight``, ``bias``);
    odd kernel sizes only ('same' padding), stride 1, zero padding.
    """

    def __init__(self, dims, cin, cout, kernel_size=3, dilation=2, bias=True):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError("SubLatticeDilatedConv needs an odd kernel size")
        self.dims, self.d = int(dims), int(dilation)
        self.conv = _CONV[self.dims](cin, cout, kernel_size, padding=kernel_size // 2, bias=bias)
        # expose the usual attributes
        self.weight, self.bias = self.conv.weight, self.conv.bias

    def forward(self, x):
        d, nd = self.d, self.dims
        if d == 1:
            return self.conv(x)
        if onednn_inference(x, "zeros"):  # inference: oneDNN's own dilated kernel is faster than the lattices
            k = self.conv.kernel_size[0]
            return torch.ops.aten.mkldnn_convolution(x, self.conv.weight, self.conv.bias, [d * (k // 2)] * nd,
                                                     [1] * nd, [d] * nd, 1)
        B, C = x.shape[:2]
        sp = x.shape[2:]
        pad = [(-n) % d for n in sp]
        if any(pad):
            x = F.pad(x, [v for p in reversed(pad) for v in (0, p)])
        n = [s + p for s, p in zip(sp, pad)]
        m = [s // d for s in n]
        # (B, C, m0, d, m1, d, m2, d) -> (B, d, d, d, C, m0, m1, m2) -> (B*d^nd, C, m...)
        shp = [B, C] + [v for mm in m for v in (mm, d)]
        x = x.reshape(shp)
        perm = [0] + [3 + 2 * i for i in range(nd)] + [1] + [2 + 2 * i for i in range(nd)]
        x = x.permute(perm).reshape([B * d ** nd, C] + m)
        if x.dim() == 5:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        elif x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        y = self.conv(x)
        Co = y.shape[1]
        y = y.reshape([B] + [d] * nd + [Co] + m)
        inv = [0, nd + 1] + [v for i in range(nd) for v in (nd + 2 + i, 1 + i)]
        y = y.permute(inv).reshape([B, Co] + n)
        if any(pad):
            y = y[(slice(None), slice(None)) + tuple(slice(0, s) for s in sp)]
        if y.dim() == 5:
            y = y.contiguous(memory_format=torch.channels_last_3d)
        return y
