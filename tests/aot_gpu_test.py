"""Our programs compile for an H100 we do not have, and fit its memory (deviceless, CUDA plugin).

Needs the `aot-gpu` extra (the CUDA plugin and its wheels, ~5 GB installed), which CI does not
install (see README, "Checked without the hardware"): skipped without it, unless
LIIF_REQUIRE_AOT_GPU=1 turns the skip into a failure. `experiments/aot.py --target h100|h200`
compiles the same programs and more; their results are committed.
"""

import importlib.util
import os

import jax
import jax.numpy as jnp
import pytest

from aot_test import train_flops
from conftest import REPO, load_module
from liif_jax import aot
from liif_jax.models import build_model

def cuda_plugin_installed() -> bool:
    try:
        return importlib.util.find_spec("jax_plugins.xla_cuda12") is not None
    except ModuleNotFoundError:  # no jax_plugins package at all
        return False


if not cuda_plugin_installed():
    if os.environ.get("LIIF_REQUIRE_AOT_GPU"):
        raise ImportError("LIIF_REQUIRE_AOT_GPU is set but the CUDA plugin is not installed: pip install -e '.[aot-gpu]'")
    pytest.skip("GPU compiles need the aot-gpu extra: pip install -e '.[aot-gpu]'", allow_module_level=True)


@pytest.fixture(scope="module")
def h100() -> list[jax.Device]:
    return aot.devices("h100")


def div2k_model_config(dtype: str = "float32"):
    c = load_module(REPO / "experiments" / "configs" / "edsr-baseline-liif.py").get_config()
    c.compute_dtype = dtype
    return c


def test_the_div2k_training_step_fits_an_h100(h100):
    """float32 with TF32 matmuls, as a GPU runs it: cuDNN convolutions, about 1.3 GB."""
    report = aot.read(aot.train_step(div2k_model_config(), h100, precision="tensorfloat32"), "h100")
    assert report.fits and 0 < report.total_bytes < 4e9
    kinds = report.stats.by_kind()
    assert kinds["convolution"]["launches"] > 50 and kinds["convolution"]["flops"] > 1e11
    assert report.stats.flops == pytest.approx(train_flops(div2k_model_config()), rel=1e-3)  # cuDNN and cuBLAS/Triton
    assert report.est_s is not None and report.est_s > 0


def test_a_4k_to_8k_render_fits_an_h100(h100):
    model = build_model(div2k_model_config().model.to_dict())
    programs = aot.render_programs(model, (2160, 3840), (4320, 7680), h100[0], precision="tensorfloat32")
    for low, runs in programs.values():
        report = aot.read(low, "h100")
        assert report.fits and report.total_bytes < 2e9 and runs >= 1


def test_a_pallas_triton_kernel_compiles_for_the_gpu(h100):
    """Inside `aot.lowering` (the abstract mesh names the GPU) a Triton kernel compiles deviceless
    and counts as one opaque kernel moving its operands."""
    from jax.experimental import pallas as pl

    def double_plus_one(x_ref, o_ref):
        o_ref[...] = x_ref[...] * 2.0 + 1.0

    block = pl.BlockSpec((16, 128), lambda i: (i, 0))
    f = lambda x: pl.pallas_call(double_plus_one, out_shape=jax.ShapeDtypeStruct(x.shape, x.dtype), grid=(4,),
                                 in_specs=[block], out_specs=block)(x)
    x = jax.ShapeDtypeStruct((64, 128), jnp.float32, sharding=jax.sharding.SingleDeviceSharding(h100[0]))
    with aot.lowering(h100):
        report = aot.read(jax.jit(f).lower(x), "h100")
    [kernel] = [k for k in report.stats.kernels if k.kind == "custom-call"]
    assert kernel.opaque and kernel.bytes == 2 * 64 * 128 * 4
