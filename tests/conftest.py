"""Shared test helpers."""
import pytest

#: a tiny untrained residual inpainting model: untrained, it returns exactly its
#: log-linear prefill, which gives the DL paths an independent reference
TINY_INPAINT = {"class": "UNetMod", "kwargs": dict(dims=3, in_channels=3, out_channels=1, depth=2, channels=(4, 8),
                                                   dilations=((1, 2),), residual=True, norm="group",
                                                   norm_groups=2)}


@pytest.fixture
def pynx_opencl():
    """PyNX's OpenCL and CPU operator namespaces ``(pcl, pc)``, with PyNX's OpenCL device set
    (PoCL on machines without a GPU); skips the test when there is no OpenCL device."""
    from pynx_dlgap.evaluate.phasing import import_pynx_cdi
    from pynx_dlgap.pynx_backend import has_opencl_device, init_pynx_opencl
    if not has_opencl_device():
        pytest.skip("no OpenCL device (install PoCL: pip install pocl-binary-distribution)")
    init_pynx_opencl()
    return import_pynx_cdi("opencl"), import_pynx_cdi("cpu")
