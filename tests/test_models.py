"""Models: shapes, configs, registry sizes, residual mode, bf16/channels_last, clear errors."""
import numpy as np
import pytest
import torch

from pynx_dlgap.models import (MSDNet, UNet, UNetMod, build_model, count_parameters, get_config,
                               list_models)

torch.manual_seed(0)

TINY = dict(depth=3, base_channels=4, norm_groups=2)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("cls", [UNet, UNetMod])
def test_unet_shapes(cls, dims):
    kw = dict(TINY)
    if cls is UNetMod:
        kw["dilations"] = [[1, 2], [1, 3]]
    m = cls(dims=dims, in_channels=3, out_channels=2, **kw)
    x = torch.rand((2, 3) + (8,) * dims)
    y = m(x)
    assert y.shape == (2, 2) + (8,) * dims
    assert torch.isfinite(y).all()
    y.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


@pytest.mark.parametrize("dims", [2, 3])
def test_msdnet_shapes_any_size(dims):
    m = MSDNet(dims=dims, in_channels=2, out_channels=1, depth=5, width=2)
    x = torch.rand((1, 2) + (7,) * dims)  # no pooling: any size
    assert m(x).shape == (1, 1) + (7,) * dims
    assert m.dilations == [1, 2, 3, 4, 5]


def test_msdnet_param_formula():
    d, w, cin, cout = 12, 2, 3, 2
    m = MSDNet(dims=2, in_channels=cin, out_channels=cout, depth=d, width=w)
    expected = sum(9 * (cin + i * w) * w + w for i in range(d)) + (cin + d * w) * cout + cout
    assert count_parameters(m) == expected


@pytest.mark.parametrize("norm", ["group", "batch", "instance", None])
@pytest.mark.parametrize("up_mode", ["transpose", "nearest", "linear"])
def test_unet_options(norm, up_mode):
    m = UNet(dims=2, in_channels=1, out_channels=1, norm=norm, up_mode=up_mode, activation="gelu",
             head_channels=(4,), top_skip=False, **TINY)
    assert m(torch.rand(2, 1, 16, 16)).shape == (2, 1, 16, 16)


def test_size_not_divisible_raises():
    m = UNet(dims=3, in_channels=1, **TINY)  # depth 3 -> multiple of 4
    with pytest.raises(ValueError, match="divisible by 2\\*\\*\\(depth-1\\) = 4"):
        m(torch.rand(1, 1, 8, 8, 6))
    with pytest.raises(ValueError, match="in_channels=1"):
        m(torch.rand(1, 2, 8, 8, 8))
    with pytest.raises(ValueError, match="5-D tensor"):
        m(torch.rand(1, 8, 8, 8))


def test_bad_arguments():
    with pytest.raises(ValueError, match="dims"):
        UNet(dims=1)
    with pytest.raises(ValueError, match="out_channels=1"):
        UNet(dims=2, out_channels=2, residual=True)
    with pytest.raises(ValueError, match="phasor"):
        UNet(dims=2, out_channels=1, out_activation="phasor")
    with pytest.raises(ValueError, match="activation"):
        UNet(dims=2, activation="swishy")


@pytest.mark.parametrize("cls", ["UNetMod", "MSDNet"])
def test_residual_starts_as_identity(cls):
    if cls == "UNetMod":
        m = UNetMod(dims=3, in_channels=3, residual=True, residual_channel=0, dilations=[[1, 2]], **TINY)
    else:
        m = MSDNet(dims=3, in_channels=3, depth=4, residual=True)
    x = torch.rand(2, 3, 8, 8, 8)
    y = m(x)
    assert torch.equal(y, x[:, :1])  # zero-initialised output conv: returns the prefill
    y.square().sum().backward()  # but still trainable
    assert m.out_conv.weight.grad.abs().sum() > 0


def test_phasor_output_is_unit():
    m = UNet(dims=2, in_channels=1, out_channels=2, out_activation="phasor", **TINY)
    y = m(torch.rand(2, 1, 8, 8))
    assert torch.allclose((y ** 2).sum(1), torch.ones(2, 8, 8), atol=1e-5)


def test_bf16_autocast_channels_last_3d():
    m = build_model("inpaint3d_small", channels=[8, 8, 8, 8])
    x = torch.rand(2, 3, 16, 16, 16)
    with torch.no_grad():
        ref = m(x)
    m_cl = m.to(memory_format=torch.channels_last_3d)
    x_cl = x.to(memory_format=torch.channels_last_3d)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m_cl(x_cl)
    assert y.shape == ref.shape and torch.isfinite(y).all()
    assert (y.float() - ref).abs().max() < 0.05
    loss = (y.float() - 0.5).square().mean()
    loss.backward()
    # gradients exist; they are not always finite: torch 2.13's CPU bf16 backward overflows now and
    # then (seen in training: the trainers skip such steps), so finiteness is not asserted here
    assert all(p.grad is not None for p in m.parameters())
    # plain UNet with GroupNorm and MSDNet under autocast too
    for net in (UNet(dims=3, in_channels=1, out_channels=2, out_activation="phasor", **TINY),
                MSDNet(dims=3, depth=3)):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(torch.rand(1, 1, 8, 8, 8).to(memory_format=torch.channels_last_3d))
        assert torch.isfinite(out.float()).all()


def test_config_round_trip_and_json():
    import json

    m = UNetMod(dims=2, in_channels=3, out_channels=1, dilations=((1, 2), (2, 3)), up_kernel_size=(3, 4),
                head_channels=(4,), **TINY)
    cfg = json.loads(json.dumps(m.config))  # JSON-serialisable
    assert cfg["class"] == "UNetMod"
    m2 = build_model(cfg)
    m2.load_state_dict(m.state_dict())
    x = torch.rand(1, 3, 16, 16)
    m.eval(), m2.eval()
    assert torch.equal(m(x), m2(x))
    assert m2.config["kwargs"] == m.config["kwargs"]


def test_registry():
    names = list_models()
    for n in ("unet2d_seed", "unetmod2d_seed", "msdnet2d_seed", "inpaint3d_small", "phase3d_small",
              "phase2d_small"):
        assert n in names
    assert set(list_models("phase")) >= {"phase3d_small", "phase2d_small"}
    with pytest.raises(KeyError, match="registered models"):
        build_model("nope")
    with pytest.raises(ValueError, match="unknown model class"):
        build_model({"class": "os.system", "kwargs": {}})
    m = build_model("phase2d_small", channels=[4, 8, 8, 8, 8])
    assert m.config["name"] == "phase2d_small" and m.config["kwargs"]["channels"] == [4, 8, 8, 8, 8]
    assert get_config("phase2d_small")["kwargs"]["channels"] == (24, 48, 96, 192, 384)  # registry untouched


# Seed thesis Table 4.1 and the brief's size targets
SIZES = {
    "unet2d_seed": (31_827_673, 0.0),       # exact
    "unetmod2d_seed": (32_652_337, 0.0),    # exact
    "msdnet2d_seed": (322_458, 0.10),       # 322,538 (width 1, depth 267)
}


@pytest.mark.parametrize("name", sorted(SIZES))
def test_seed_param_counts(name):
    target, tol = SIZES[name]
    with torch.device("meta"):  # no memory, no initialisation cost
        n = count_parameters(build_model(name))
    assert abs(n - target) <= tol * target, (name, n, target)


def test_small_model_sizes():
    with torch.device("meta"):
        n_inp = count_parameters(build_model("inpaint3d_small"))
        n_ph3 = count_parameters(build_model("phase3d_small"))
        n_ph2 = count_parameters(build_model("phase2d_small"))
    assert 1_000_000 <= n_inp <= 1_500_000, n_inp
    assert 1_000_000 <= n_ph3 <= 144_000_000 / 10, n_ph3
    assert 1_000_000 <= n_ph2 <= 144_000_000 / 10, n_ph2  # 128x128 model (4.4 M)


@pytest.mark.parametrize("name", ["inpaint3d_small", "phase2d_small", "inpaint2d_small"])
def test_registry_models_run_on_their_input(name):
    m = build_model(name)
    shape = get_config(name)["input_shape"]
    with torch.no_grad():
        y = m(torch.rand(shape))
    assert y.shape == (shape[0], m.out_channels) + tuple(shape[2:])


def test_seed_unet_forward_small_input():
    m = build_model("unetmod2d_seed", channels=[4, 8, 8, 8, 8, 8])  # seed layout, tiny widths
    assert m(torch.rand(1, 1, 32, 32)).shape == (1, 1, 32, 32)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("kw", [dict(), dict(stride=2), dict(dilation=2, padding=2), dict(groups=2),
                                dict(bias=False, padding=0)])
def test_onednn_conv_matches_float64_reference(dims, kw):
    """fastconv.ConvNd (oneDNN for no-grad float32 CPU input, batch 1 and small sizes,
    where PyTorch's heuristic would pick its im2col path) against float64 F.convNd."""
    from pynx_dlgap.models.fastconv import Conv2d, Conv3d, plain_convolutions
    g = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, (1,))))
    kw = {"padding": 1, **kw}
    conv = (Conv2d if dims == 2 else Conv3d)(4, 6, 3, **kw)
    x = torch.randn((1, 4) + (9,) * dims, generator=g)
    ref_fn = torch.nn.functional.conv2d if dims == 2 else torch.nn.functional.conv3d
    b = None if conv.bias is None else conv.bias.double()
    ref = ref_fn(x.double(), conv.weight.double(), b, conv.stride, conv.padding, conv.dilation, conv.groups)
    with torch.no_grad():
        fast = conv(x)
        with plain_convolutions():
            plain = conv(x)
    assert fast.dtype == torch.float32 and fast.shape == ref.shape
    assert torch.allclose(fast.double(), ref, atol=1e-5, rtol=1e-5)
    assert torch.allclose(plain.double(), ref, atol=1e-5, rtol=1e-5)
    with torch.no_grad(), torch.profiler.profile() as prof:
        conv(x)
    assert "aten::mkldnn_convolution" in {e.name for e in prof.events()}  # the oneDNN path ran
    # under CPU autocast the convolution still runs in bfloat16, as nn.ConvNd's
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv(x).dtype == torch.bfloat16
    # with grad enabled (training) nn.ConvNd's own path runs and gradients flow
    y = conv(x.requires_grad_())
    assert torch.allclose(y.detach().double(), ref, atol=1e-5, rtol=1e-5)
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and conv.weight.grad.abs().sum() > 0
    # state dicts interchange with nn.ConvNd
    plain_cls = torch.nn.Conv2d if dims == 2 else torch.nn.Conv3d
    twin = plain_cls(4, 6, 3, **kw)
    twin.load_state_dict(conv.state_dict())
    with torch.no_grad():
        assert torch.allclose(twin(x.detach()), fast, atol=1e-5, rtol=1e-5)


def test_unit_phasor_against_numpy_and_finite_gradient_at_zero():
    from pynx_dlgap.models.unet import unit_phasor
    x = torch.randn(3, 2, 5, 6) * torch.rand(3, 1, 5, 6) * 10
    x[0, :, 0, 0] = 0.0  # a zero vector: divided by eps, gradient finite
    xn = x.double().numpy()
    norm = np.sqrt((xn ** 2).sum(axis=1, keepdims=True))
    ref = xn / np.maximum(norm, 1e-6)
    got = unit_phasor(x)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-5, atol=1e-6)
    xg = x.clone().requires_grad_()
    unit_phasor(xg)[:, 0].sum().backward()
    assert torch.isfinite(xg.grad).all()
