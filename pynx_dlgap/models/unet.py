"""U-Net and modified U-Net (dilated encoder blocks), 2-D and 3-D from one definition.

One class per network family, ``dims=2`` or ``dims=3`` selects ``Conv2d``/``Conv3d``
(and the matching pooling, transposed convolution and normalisation layers).

Layout (``depth`` resolution levels, level ``l`` has ``channels[l]`` feature maps,
``channels[l] = round(base_channels * channel_mult**l)``)::

    encoder level 0 .. depth-2 : block -> skip s_l -> MaxPool(2)
    encoder level depth-1      : block (the bottleneck, no pooling)
    decoder level depth-2 .. 0 : up (x2) to channels[l] -> concat(s_l) -> decoder_convs convs
    head                       : head_channels convs (kernel head_kernel_size)
    out                        : conv to out_channels (kernel out_kernel_size) [+ residual] -> out_activation

A block is ``convs_per_block`` x (conv -> norm -> activation). In :class:`UNetMod`
the first ``len(dilations)`` encoder blocks are *dilated blocks*: parallel dilated
convolutions (one per dilation rate, ``channels[l] // len(dilations)`` maps each)
concatenated with the block input (as in the seed thesis, Table 4.1), followed
by ``convs_per_block - 1`` ordinary convolutions.

Every spatial size must be divisible by ``2**(depth-1)``; a clear ``ValueError``
is raised otherwise.

The seed thesis' 2-D networks are reproduced exactly by the registry entries
``'unet2d_seed'`` (31,827,673 parameters) and ``'unetmod2d_seed'`` (32,652,337).

**Residual mode** (``residual=True``): the network output is *added* to input
channel ``residual_channel`` before ``out_activation``. For inpainting, channel 0
is the normalised log-intensity whose gap voxels were prefilled by log-space
interpolation, so the network only learns the correction to the interpolation
and starts (final convolution zero-initialised) as exactly that interpolation.
Requires ``out_channels == 1``.

Both models work under ``torch.autocast('cpu', dtype=torch.bfloat16)`` and with
``memory_format=torch.channels_last_3d`` (model and input). On the CPU, GroupNorm's
backward is slow in channels_last_3d under bf16: train GroupNorm models with bf16 in
the default (channels-first) layout; channels_last_3d pays off for inference and
for BatchNorm/no-norm models.

Convolutions are :mod:`pynx_dlgap.models.fastconv`'s ``Conv2d``/``Conv3d``: ``nn.ConvNd``
(same parameters and state-dict keys) that run float32 CPU inference on oneDNN at every
size, where PyTorch would take its slower im2col path for one small sample.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .dilated import SubLatticeDilatedConv
from .fastconv import Conv2d, Conv3d

__all__ = [
    "UNet", "UNetMod", "SEED_DILATIONS", "unit_phasor", "make_activation", "make_norm",
    "count_parameters",
]

#: Dilation rates of the three dilated encoder blocks of the seed's U-Net_mod.
SEED_DILATIONS = ((16, 8, 4, 2), (10, 5, 3, 1), (5, 3, 2, 1))

_CONV = {2: Conv2d, 3: Conv3d}  # nn.ConvNd, oneDNN for CPU inference (fastconv.py)
_CONVT = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
_BATCHNORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_INSTNORM = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
_LINEAR_MODE = {2: "bilinear", 3: "trilinear"}

_ACTIVATIONS = ("relu", "leaky_relu", "gelu", "silu", "elu", "tanh", "sigmoid", "identity", "none")
_NORMS = ("group", "batch", "instance", "none")
_OUT_ACTIVATIONS = ("identity", "none", "sigmoid", "tanh", "clamp01", "phasor")


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (all, or only those requiring grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _check_dims(dims) -> int:
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3 (got {dims!r})")
    return int(dims)


def make_activation(name) -> nn.Module:
    """Activation module from its name (``relu``, ``leaky_relu`` (slope 0.2, as
    TensorFlow's), ``gelu``, ``silu``, ``elu``, ``tanh``, ``sigmoid``, ``identity``)."""
    n = "identity" if name is None else str(name).lower()
    if n == "relu":
        return nn.ReLU(inplace=True)
    if n == "leaky_relu":
        return nn.LeakyReLU(0.2, inplace=True)
    if n == "gelu":
        return nn.GELU()
    if n == "silu":
        return nn.SiLU(inplace=True)
    if n == "elu":
        return nn.ELU(inplace=True)
    if n == "tanh":
        return nn.Tanh()
    if n == "sigmoid":
        return nn.Sigmoid()
    if n in ("identity", "none"):
        return nn.Identity()
    raise ValueError(f"unknown activation {name!r}; choose one of {_ACTIVATIONS}")


def _num_groups(channels: int, max_groups: int) -> int:
    g = max(1, min(int(max_groups), channels))
    while channels % g:
        g -= 1
    return g


def make_norm(norm, channels: int, dims: int, groups: int = 8) -> nn.Module:
    """Normalisation layer: ``'group'`` (GroupNorm, up to ``groups`` groups dividing
    ``channels``), ``'batch'``, ``'instance'`` (affine) or ``None``/``'none'``."""
    n = "none" if norm is None else str(norm).lower()
    if n == "group":
        return nn.GroupNorm(_num_groups(channels, groups), channels)
    if n == "batch":
        return _BATCHNORM[dims](channels)
    if n == "instance":
        return _INSTNORM[dims](channels, affine=True)
    if n == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {norm!r}; choose one of {_NORMS}")


def unit_phasor(x: torch.Tensor, dim: int = 1, eps: float = 1e-6) -> torch.Tensor:
    """Normalise a (cos, sin) pair along ``dim`` to unit length (computed in float32;
    lengths below ``eps`` are divided by ``eps``)."""
    x = x.float()
    # sqrt(sum x^2) rather than linalg.vector_norm: the same value, about 40x faster on a
    # (1, 2, 64, 64, 64) CPU tensor; clamping before the sqrt keeps the gradient finite at 0
    return x / (x * x).sum(dim=dim, keepdim=True).clamp_min(eps * eps).sqrt()


class OutputActivation(nn.Module):
    """Final activation: identity, sigmoid, tanh, clamp01 (clamp to [0, 1]) or
    phasor (normalise the 2 output channels to a unit (cos, sin) phasor)."""

    def __init__(self, name, out_channels: int):
        super().__init__()
        n = "identity" if name is None else str(name).lower()
        if n not in _OUT_ACTIVATIONS:
            raise ValueError(f"unknown out_activation {name!r}; choose one of {_OUT_ACTIVATIONS}")
        if n == "phasor" and out_channels != 2:
            raise ValueError("out_activation='phasor' needs out_channels=2 (cos, sin)")
        self.name = n

    def forward(self, x):
        if self.name == "sigmoid":
            return torch.sigmoid(x)
        if self.name == "tanh":
            return torch.tanh(x)
        if self.name == "clamp01":
            return x.clamp(0.0, 1.0)
        if self.name == "phasor":
            return unit_phasor(x, dim=1)
        return x

    def extra_repr(self):
        return self.name


class ConvNormAct(nn.Sequential):
    """conv (odd kernel, 'same' padding, optional dilation) -> norm -> activation."""

    def __init__(self, dims, cin, cout, kernel_size=3, dilation=1, norm="group", norm_groups=8,
                 activation="leaky_relu", padding_mode="zeros"):
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel sizes of ordinary convolutions must be odd (got {kernel_size})")
        use_norm = norm is not None and str(norm).lower() != "none"
        if dilation > 1 and padding_mode == "zeros":
            # same maths as a dilated ConvNd, computed on sub-lattices: torch's CPU backward of
            # dilated 3-D convolutions is 10-100x slower (see models/dilated.py)
            conv = SubLatticeDilatedConv(dims, cin, cout, kernel_size, dilation, bias=not use_norm)
        else:
            conv = _CONV[dims](cin, cout, kernel_size, padding=dilation * (kernel_size - 1) // 2,
                               dilation=dilation, bias=not use_norm, padding_mode=padding_mode)
        super().__init__(conv, make_norm(norm, cout, dims, norm_groups), make_activation(activation))
        self.out_channels = cout


class ConvBlock(nn.Sequential):
    """``n`` x ConvNormAct, cin -> cout -> ... -> cout."""

    def __init__(self, dims, cin, cout, n, **kw):
        if n < 1:
            raise ValueError("convs_per_block must be >= 1")
        super().__init__(*[ConvNormAct(dims, cin if i == 0 else cout, cout, **kw) for i in range(n)])
        self.out_channels = cout


class DilatedBlock(nn.Module):
    """Parallel dilated convolutions of the block input, concatenated with it
    (``keep_input``), then ``extra_convs`` ordinary convolutions to ``cout``.

    Output channels: ``cout`` if ``extra_convs > 0``, else ``cin*keep_input + cout``.
    """

    def __init__(self, dims, cin, cout, dilations, extra_convs=0, keep_input=True, kernel_size=3, **kw):
        super().__init__()
        dil = [int(d) for d in dilations]
        if not dil or min(dil) < 1:
            raise ValueError(f"dilations must be a non-empty sequence of integers >= 1 (got {dilations!r})")
        n = len(dil)
        if cout < n:
            raise ValueError(f"a dilated block needs at least one channel per dilation ({cout} < {n})")
        sizes = [cout // n + (1 if i < cout % n else 0) for i in range(n)]
        self.branches = nn.ModuleList(
            ConvNormAct(dims, cin, s, kernel_size=kernel_size, dilation=d, **kw) for s, d in zip(sizes, dil))
        self.keep_input = bool(keep_input)
        cat_ch = (cin if self.keep_input else 0) + cout
        self.post = (ConvBlock(dims, cat_ch, cout, extra_convs, kernel_size=kernel_size, **kw)
                     if extra_convs > 0 else nn.Identity())
        self.out_channels = cout if extra_convs > 0 else cat_ch

    def forward(self, x):
        feats = ([x] if self.keep_input else []) + [b(x) for b in self.branches]
        return self.post(torch.cat(feats, dim=1))


class _Up(nn.Module):
    """x2 upsampling to ``cout`` channels: transposed conv (kernel k, stride 2) or
    nearest/linear interpolation followed by a conv; then norm and activation."""

    def __init__(self, dims, cin, cout, mode="transpose", kernel_size=2, norm="group", norm_groups=8,
                 activation="leaky_relu", padding_mode="zeros"):
        super().__init__()
        mode = str(mode).lower()
        use_norm = norm is not None and str(norm).lower() != "none"
        if mode == "transpose":
            k = int(kernel_size)
            if k < 2:
                raise ValueError(f"up_kernel_size must be >= 2 for transposed convolutions (got {k})")
            p = (k - 1) // 2
            self.up = _CONVT[dims](cin, cout, k, stride=2, padding=p, output_padding=2 - k + 2 * p,
                                   bias=not use_norm)
            self.post = nn.Sequential(make_norm(norm, cout, dims, norm_groups), make_activation(activation))
        elif mode in ("nearest", "linear"):
            m = "nearest" if mode == "nearest" else _LINEAR_MODE[dims]
            self.up = nn.Upsample(scale_factor=2, mode=m, **({} if m == "nearest" else {"align_corners": False}))
            k = int(kernel_size) if int(kernel_size) % 2 == 1 else 3
            self.post = ConvNormAct(dims, cin, cout, kernel_size=k, norm=norm, norm_groups=norm_groups,
                                    activation=activation, padding_mode=padding_mode)
        else:
            raise ValueError(f"unknown up_mode {mode!r}; choose 'transpose', 'nearest' or 'linear'")

    def forward(self, x):
        return self.post(self.up(x))


def _jsonable(v):
    if isinstance(v, (tuple, list)):
        return [_jsonable(u) for u in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(u) for k, u in v.items()}
    return v


def check_input(model: nn.Module, x: torch.Tensor, multiple: int = 1) -> None:
    """Raise a clear ``ValueError`` if ``x`` does not fit ``model`` (ndim, channels, size)."""
    dims, cin = model.dims, model.in_channels
    name = type(model).__name__
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} expects a torch.Tensor, got {type(x).__name__}")
    axes = "(batch, channels, z, y, x)" if dims == 3 else "(batch, channels, y, x)"
    if x.ndim != dims + 2:
        raise ValueError(f"{name}(dims={dims}) expects a {dims + 2}-D tensor {axes}; got shape {tuple(x.shape)}")
    if x.shape[1] != cin:
        raise ValueError(f"{name} was built for in_channels={cin} but the input has {x.shape[1]} channels "
                         f"(shape {tuple(x.shape)})")
    if multiple > 1:
        bad = [s for s in x.shape[2:] if s % multiple]
        if bad:
            raise ValueError(f"{name}(depth={model.depth}) needs every spatial size divisible by "
                             f"2**(depth-1) = {multiple}; got spatial shape {tuple(x.shape[2:])}. "
                             f"Pad or crop the input (e.g. 32^3 patches for inpainting, 64^3 for phasing)")


class UNet(nn.Module):
    """Configurable U-Net, 2-D or 3-D.

    Parameters
    ----------
    dims : 2 or 3
    in_channels, out_channels : int
        Inpainting uses 3 inputs (normalised log-intensity, gap mask, count level)
        and 1 output; phase prediction 1 input and 2 outputs (cos, sin).
    depth : int
        Number of resolution levels including the bottleneck (``depth-1`` poolings);
        spatial sizes must be divisible by ``2**(depth-1)``.
    base_channels, channel_mult : feature maps at level ``l`` are
        ``round(base_channels * channel_mult**l)``; ``channels`` (a list of
        ``depth`` ints) overrides them.
    convs_per_block : convolutions per encoder block (the seed uses 1).
    decoder_convs : convolutions after each skip concatenation (default
        ``convs_per_block``; 0 = the seed's layout where the next transposed
        convolution does the channel reduction).
    kernel_size : kernel of the ordinary convolutions (odd).
    dilations : per-level dilation rates for the first ``len(dilations)`` encoder
        blocks (dilated blocks, see module docstring); ``None`` = plain U-Net.
    keep_input : dilated blocks concatenate their input to the dilated maps.
    up_mode : ``'transpose'`` (ConvTranspose, stride 2), ``'nearest'`` or ``'linear'``
        (interpolation + conv).
    up_kernel_size : kernel of the transposed convolutions; an int or one value per
        decoder stage, deepest first.
    top_skip : concatenate the full-resolution skip (the seed's plain U-Net does not).
    head_channels, head_kernel_size : extra full-resolution convolutions before the output.
    out_kernel_size : kernel of the output convolution (odd).
    norm : ``'group'``, ``'batch'``, ``'instance'`` or ``None``; ``norm_groups`` max groups.
    activation : hidden activation (``'leaky_relu'``, ``'relu'``, ``'gelu'``, ``'silu'`` ...).
    out_activation : ``None``, ``'sigmoid'``, ``'tanh'``, ``'clamp01'`` or ``'phasor'``
        (unit (cos, sin) phasor, needs ``out_channels=2``).
    residual, residual_channel : add the output to input channel ``residual_channel``
        (before ``out_activation``); the output convolution is then zero-initialised
        so that the untrained network returns that channel.
    padding_mode : padding of the ordinary convolutions (``'zeros'``, ``'replicate'``...).

    Attributes
    ----------
    config : dict
        ``{"class": <class name>, "kwargs": {...}}``, JSON-serialisable; rebuild with
        :func:`pynx_dlgap.models.build_model`.
    """

    def __init__(self, dims: int = 3, in_channels: int = 1, out_channels: int = 1, depth: int = 4,
                 base_channels: int = 16, channel_mult: float = 2.0, channels: Sequence[int] | None = None,
                 convs_per_block: int = 2, decoder_convs: int | None = None, kernel_size: int = 3,
                 dilations: Sequence[Sequence[int]] | None = None, keep_input: bool = True,
                 up_mode: str = "transpose", up_kernel_size: int | Sequence[int] = 2, top_skip: bool = True,
                 head_channels: Sequence[int] = (), head_kernel_size: int = 3, out_kernel_size: int = 1,
                 norm: str | None = "group", norm_groups: int = 8, activation: str = "leaky_relu",
                 out_activation: str | None = None, residual: bool = False, residual_channel: int = 0,
                 padding_mode: str = "zeros"):
        super().__init__()
        dims = _check_dims(dims)
        depth = int(depth)
        if depth < 1:
            raise ValueError(f"depth must be >= 1 (got {depth})")
        if channels is None:
            channels = [max(1, int(round(base_channels * channel_mult ** level))) for level in range(depth)]
        channels = [int(c) for c in channels]
        if len(channels) != depth:
            raise ValueError(f"channels has {len(channels)} entries but depth={depth}")
        decoder_convs = convs_per_block if decoder_convs is None else int(decoder_convs)
        dilations = [] if dilations is None else [[int(d) for d in ds] for ds in dilations]
        if len(dilations) > depth:
            raise ValueError(f"{len(dilations)} dilated blocks requested but depth={depth}")
        if isinstance(up_kernel_size, (int, float)):
            up_kernels = [int(up_kernel_size)] * max(depth - 1, 0)
        else:
            up_kernels = [int(k) for k in up_kernel_size]
            if len(up_kernels) != depth - 1:
                raise ValueError(f"up_kernel_size needs depth-1 = {depth - 1} values (deepest first), "
                                 f"got {len(up_kernels)}")
        if residual and out_channels != 1:
            raise ValueError("residual=True adds the output to one input channel: it needs out_channels=1")
        if residual and not 0 <= residual_channel < in_channels:
            raise ValueError(f"residual_channel={residual_channel} is not an input channel "
                             f"(in_channels={in_channels})")
        if out_kernel_size % 2 != 1:
            raise ValueError(f"out_kernel_size must be odd (got {out_kernel_size})")

        self.dims, self.in_channels, self.out_channels, self.depth = dims, int(in_channels), int(out_channels), depth
        self.residual, self.residual_channel, self.top_skip = bool(residual), int(residual_channel), bool(top_skip)
        self.config = {"class": type(self).__name__, "kwargs": _jsonable(dict(
            dims=dims, in_channels=int(in_channels), out_channels=int(out_channels), depth=depth,
            base_channels=base_channels, channel_mult=channel_mult, channels=channels,
            convs_per_block=int(convs_per_block), decoder_convs=decoder_convs, kernel_size=int(kernel_size),
            dilations=dilations or None, keep_input=bool(keep_input), up_mode=up_mode,
            up_kernel_size=up_kernels if not isinstance(up_kernel_size, (int, float)) else int(up_kernel_size),
            top_skip=bool(top_skip), head_channels=list(head_channels), head_kernel_size=int(head_kernel_size),
            out_kernel_size=int(out_kernel_size), norm=norm, norm_groups=int(norm_groups),
            activation=activation, out_activation=out_activation, residual=bool(residual),
            residual_channel=int(residual_channel), padding_mode=padding_mode))}

        kw = dict(norm=norm, norm_groups=norm_groups, activation=activation, padding_mode=padding_mode)
        self.encoder = nn.ModuleList()
        ch = int(in_channels)
        enc_out = []
        for level in range(depth):
            if level < len(dilations):
                blk = DilatedBlock(dims, ch, channels[level], dilations[level], extra_convs=convs_per_block - 1,
                                   keep_input=keep_input, kernel_size=kernel_size, **kw)
            else:
                blk = ConvBlock(dims, ch, channels[level], convs_per_block, kernel_size=kernel_size, **kw)
            self.encoder.append(blk)
            ch = blk.out_channels
            enc_out.append(ch)
        self.pool = _POOL[dims](2)

        self.ups = nn.ModuleList([nn.Identity() for _ in range(depth - 1)])
        self.decoders = nn.ModuleList([nn.Identity() for _ in range(depth - 1)])
        for i, level in enumerate(reversed(range(depth - 1))):
            self.ups[level] = _Up(dims, ch, channels[level], mode=up_mode, kernel_size=up_kernels[i], **kw)
            ch = channels[level] + (enc_out[level] if (level > 0 or top_skip) else 0)
            if decoder_convs > 0:
                self.decoders[level] = ConvBlock(dims, ch, channels[level], decoder_convs,
                                                 kernel_size=kernel_size, **kw)
                ch = channels[level]
        head = []
        for hc in head_channels:
            head.append(ConvNormAct(dims, ch, int(hc), kernel_size=head_kernel_size, **kw))
            ch = int(hc)
        self.head = nn.Sequential(*head)
        self.out_conv = _CONV[dims](ch, out_channels, out_kernel_size, padding=out_kernel_size // 2,
                                    padding_mode=padding_mode)
        self.out_act = OutputActivation(out_activation, out_channels)
        if self.residual:
            nn.init.zeros_(self.out_conv.weight)
            nn.init.zeros_(self.out_conv.bias)

    @property
    def size_multiple(self) -> int:
        """Every spatial size must be a multiple of this (``2**(depth-1)``)."""
        return 2 ** (self.depth - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(self, x, self.size_multiple)
        inp = x
        skips = []
        for level, block in enumerate(self.encoder):
            x = block(x)
            if level < self.depth - 1:
                skips.append(x)
                x = self.pool(x)
        for level in reversed(range(self.depth - 1)):
            x = self.ups[level](x)
            if level > 0 or self.top_skip:
                x = torch.cat([x, skips[level]], dim=1)
            x = self.decoders[level](x)
        x = self.out_conv(self.head(x))
        if self.residual:
            c = self.residual_channel
            x = x.float() + inp[:, c:c + 1].float()
        return self.out_act(x)


class UNetMod(UNet):
    """U-Net with dilated convolutions in the first three encoder blocks (the seed's
    U-Net_mod; the 3-D inpainting model of Masto et al. 2024 has the same layout).

    Same arguments as :class:`UNet`; ``dilations`` defaults to the seed's
    ``((16, 8, 4, 2), (10, 5, 3, 1), (5, 3, 2, 1))``.
    """

    def __init__(self, dims: int = 3, in_channels: int = 1, out_channels: int = 1, depth: int = 4,
                 dilations: Sequence[Sequence[int]] | None = SEED_DILATIONS, **kwargs):
        if dilations is None or len(dilations) == 0:
            raise ValueError("UNetMod needs dilation rates for its first encoder blocks; use UNet for none")
        super().__init__(dims=dims, in_channels=in_channels, out_channels=out_channels, depth=depth,
                         dilations=dilations, **kwargs)
