"""Shared test helpers."""

#: a tiny untrained residual inpainting model: untrained, it returns exactly its
#: log-linear prefill, which gives the DL paths an independent reference
TINY_INPAINT = {"class": "UNetMod", "kwargs": dict(dims=3, in_channels=3, out_channels=1, depth=2, channels=(4, 8),
                                                   dilations=((1, 2),), residual=True, norm="group",
                                                   norm_groups=2)}
