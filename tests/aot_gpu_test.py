"""Our programs compile for an H100 we do not have, and fit its memory (deviceless, CUDA plugin).

Needs the `aot-gpu` extra (the CUDA plugin and its wheels, ~5 GB installed), which CI does not
install (see README, "Checked without the hardware"): skipped without it, unless
LIIF_REQUIRE_AOT_GPU=1 turns the skip into a failure. `experiments/aot.py --target h100|h200`
compiles the same programs and more; their results are committed.
"""

import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import pytest
from aot_test import train_flops

from liif_jax import aot
from liif_jax.models import build_model
from xla_tools import estimate

from conftest import REPO, load_module


def cuda_plugin_installed() -> bool:
    try:
        return aot.targets.cuda_plugin() is not None
    except ModuleNotFoundError:  # no jax_plugins package at all
        return False


if not cuda_plugin_installed():
    if os.environ.get("LIIF_REQUIRE_AOT_GPU"):
        raise ImportError(
            "LIIF_REQUIRE_AOT_GPU is set but the CUDA plugin is not installed: pip install -e '.[aot-gpu]'"
        )
    pytest.skip("GPU compiles need the aot-gpu extra: pip install -e '.[aot-gpu]'", allow_module_level=True)


@pytest.fixture(scope="module")
def h100() -> list[jax.Device]:
    return aot.devices("h100")


def div2k_model_config(dtype: str = "float32"):
    c = importlib.import_module("liif_jax.configs.edsr_baseline_liif").get_config()
    c.compute_dtype = dtype
    return c


def test_the_div2k_training_step_fits_an_h100(h100):
    """float32 with TF32 matmuls, as a GPU runs it: cuDNN convolutions, about 1.3 GB."""
    report = estimate.read(aot.train_step(div2k_model_config(), h100, precision="tensorfloat32"), "h100")
    assert report.fits and 0 < report.total_bytes < 4e9
    kinds = report.stats.by_kind()
    assert kinds["convolution"]["launches"] > 50 and kinds["convolution"]["flops"] > 1e11
    assert report.stats.flops == pytest.approx(train_flops(div2k_model_config()), rel=1e-3)  # cuDNN and cuBLAS/Triton
    assert report.est_s is not None and report.est_s > 0


def test_a_4k_to_8k_render_fits_an_h100(h100):
    """Tiles by memory (the render's 3 GB budget on this chip), the fused query kernel: each
    program fits the budget, and the kernel is one opaque call whose FLOPs come from the model."""
    model = build_model(div2k_model_config().model.to_dict())
    out_hw = (4320, 7680)
    programs = aot.render_programs(
        model,
        (2160, 3840),
        out_hw,
        h100[0],
        precision="tensorfloat32",
        memory_bytes=aot.target("h100").memory_bytes,
        decoder="pallas",  # the kernel is opt-in (XLA's decoder is every device's default)
    )
    for name, (low, runs) in programs.items():
        flops = estimate.fused_kernel_flops(model, out_hw) / runs if name == "query_block" else 0.0
        report = estimate.read(low, "h100", opaque_flops=flops)
        assert report.fits and report.total_bytes < 3e9 and runs >= 1
    [kernel] = [k for k in report.stats.kernels if k.opaque]
    assert kernel.flops * runs == pytest.approx(estimate.fused_kernel_flops(model, out_hw))


def test_a_pallas_triton_kernel_compiles_for_the_gpu(h100):
    """Inside `aot.lowering` (the abstract mesh names the GPU) a Triton kernel compiles deviceless
    and counts as one opaque kernel moving its operands."""
    from jax.experimental import pallas as pl

    def double_plus_one(x_ref, o_ref):
        o_ref[...] = x_ref[...] * 2.0 + 1.0

    block = pl.BlockSpec((16, 128), lambda i: (i, 0))
    f = lambda x: pl.pallas_call(
        double_plus_one, out_shape=jax.ShapeDtypeStruct(x.shape, x.dtype), grid=(4,), in_specs=[block], out_specs=block
    )(x)
    x = jax.ShapeDtypeStruct((64, 128), jnp.float32, sharding=jax.sharding.SingleDeviceSharding(h100[0]))
    with aot.lowering(h100):
        report = estimate.read(jax.jit(f).lower(x), "h100")
    [kernel] = [k for k in report.stats.kernels if k.kind == "custom-call"]
    assert kernel.opaque and kernel.bytes == 2 * 64 * 128 * 4


def test_aot_compare_sets_estimates_beside_a_benchmarks_measurements(tmp_path):
    """`experiments/aot_compare.py` (run on the CPU after a GPU benchmark) compiles each case the
    benchmark timed at its sizes for the benchmark's GPU and reports estimated / measured - 1."""
    from liif_jax.configs.common import liif_spec

    spec = liif_spec("edsr-baseline", {"n_resblocks": 1, "n_feats": 8}, hidden_list=(16,))
    bench = {
        "device_kind": "NVIDIA H100 80GB HBM3",
        "device_count": 1,
        "command": "benchmark.py",
        "date_utc": "now",
        "settings": {"batch": 2, "inp_size": 8, "sample_q": 64, "tile": 32},
        "dtypes": {
            "float32": {
                "train_edsr_baseline": {"spec": spec, "model_only": {"ms_per_step": 2.0}},
                "render_x4_div2k": {
                    "spec": spec,
                    "in_hw": [17, 26],
                    "out_hw": [68, 104],
                    "batch_queries": 1024,
                    "tile": 32,
                    "render_mlp_dtype": "float32",
                    "ms": 4.0,
                },
                "render_x30_3840": {"error": "failed"},
            }
        },
    }  # a failed case has nothing to compare
    (tmp_path / "benchmark_h100.json").write_text(json.dumps(bench))
    compare = load_module(REPO / "experiments" / "aot_compare.py")
    assert compare.main(["--benchmark", str(tmp_path / "benchmark_h100.json")]) == 0
    result = json.loads((tmp_path / "aot_compare_h100.json").read_text())
    assert result["target"] == "h100" and [r["case"] for r in result["rows"]] == [
        "train_edsr_baseline",
        "render_x4_div2k",
    ]
    for row in result["rows"]:
        assert row["est_ms"] > 0 and row["error"] == pytest.approx(row["est_ms"] / row["measured_ms"] - 1)
    assert result["rows"][1]["programs"]["query_block"]["runs"] >= 1
    md = (tmp_path / "aot_compare_h100.md").read_text()
    assert "| train_edsr_baseline | float32 |" in md and "estimated, not measured" in md


@pytest.mark.parametrize("target", ["t4", "rtx4090"])
def test_a_t4_and_an_sm89_gpu_get_a_decoder_that_compiles(target):
    """What demo and evaluate do on these GPUs: the default decoder (XLA's), tiles by memory, and the
    render's programs compile; the kernel is refused on the T4 (compute capability 7.5) in one line."""
    from liif_jax.render import render

    device = aot.devices(target)[0]
    model = build_model(div2k_model_config().model.to_dict())
    assert render.resolve_decoder(model, None, device) == "xla"
    programs = aot.render_programs(model, (96, 128), (384, 512), device, precision="tensorfloat32")
    for low, _runs in programs.values():
        assert aot.fits(low.compile(), target)
    if target == "t4":
        with pytest.raises(ValueError, match=r"compute capability >= 8.0 \(Triton\), this GPU has 7.5") as info:
            render.resolve_decoder(model, "pallas", device)
        assert "\n" not in str(info.value)
