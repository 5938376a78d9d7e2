"""Our programs compile for TPUs we do not have, and fit their memory (deviceless, with libtpu).

Compiled for a TPU v5e-1 (a Colab TPU runtime) and an 8-chip v5e host: the DIV2K training step
(EDSR-baseline-LIIF, batch 16), the notebook's training step and render programs, and the render
programs of a 4K -> 8K render, each checked against the chip's 16 GiB. A TPU compile takes 30-100 s
of CPU here, so each program is compiled once per module and only the programs that prove a
point are (`experiments/aot.py` compiles the rest and its results are committed). Needs the
`aot-tpu` extra; CI installs it and sets LIIF_REQUIRE_AOT=1, which turns a missing libtpu into a
failure instead of a skip.
"""

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from aot_test import train_flops

from liif_jax import aot, configs
from liif_jax.data import sources
from liif_jax.models import build_model
from liif_jax.render import render
from xla_tools import estimate

from conftest import REPO

if importlib.util.find_spec("libtpu") is None:
    if os.environ.get("LIIF_REQUIRE_AOT"):
        raise ImportError("LIIF_REQUIRE_AOT is set but libtpu is not installed: pip install -e '.[aot-tpu]'")
    pytest.skip("TPU compiles need the aot-tpu extra: pip install -e '.[aot-tpu]'", allow_module_level=True)

NOTEBOOK = REPO / "experiments" / "notebooks" / "liif_jax_colab.ipynb"


def config(name: str, dtype: str = "float32"):
    c = configs.get(name)
    c.compute_dtype = dtype
    return c


def notebook_parameters() -> dict:
    """The values of the notebook's `parameters` cell (plain assignments)."""
    nb = json.loads(NOTEBOOK.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    values: dict = {}
    exec("".join(cell["source"]), {}, values)
    return values


@pytest.fixture(scope="module")
def v5e1() -> list[jax.Device]:
    return aot.devices("v5e-1")


@pytest.fixture(scope="module")
def v5e8() -> list[jax.Device]:
    return aot.devices("v5e-8")


def assert_fits(report: estimate.ProgramReport, t: str) -> None:
    assert report.error is None and report.fits, report.to_json()
    assert 0 < report.total_bytes <= aot.target(t).memory_bytes


def test_compile_only_devices_are_the_targets_chips(v5e1, v5e8):
    assert len(v5e1) == 1 and len(v5e8) == 8
    assert {d.device_kind for d in v5e1 + v5e8} == {"TPU v5 lite"}


FULL = pytest.mark.aot_full  # compiled by `pytest -m aot_full` (and experiments/aot.py), not by CI
TRAIN = [
    ("quickstart", "float32", "v5e-8"),  # the notebook's step on an 8-chip runtime: one example per chip
    pytest.param("edsr-baseline-liif", "bfloat16", "v5e-1", marks=FULL),  # the DIV2K step on a Colab TPU
    pytest.param("edsr-baseline-liif", "float32", "v5e-1", marks=FULL),
    pytest.param("edsr-baseline-liif", "float32", "v5e-8", marks=FULL),
    pytest.param("edsr-baseline-liif", "bfloat16", "v5e-8", marks=FULL),
    pytest.param("quickstart", "bfloat16", "v5e-1", marks=FULL),
    pytest.param("quickstart", "bfloat16", "v5e-8", marks=FULL),
]


@pytest.mark.parametrize("name, dtype, t", TRAIN)
def test_the_training_step_fits_the_chip(name, dtype, t, v5e1, v5e8):
    """The step `train` runs for the config (its model, batch, optimizer), data-parallel over every
    chip: it fits in each chip's 16 GiB (the DIV2K step, batch 16: about 1-1.5 GB); on 8 chips
    the gradients are all-reduced across them."""
    devs = {"v5e-1": v5e1, "v5e-8": v5e8}[t]
    report = estimate.read(aot.train_step(config(name, dtype), devs, precision="default"), t)
    assert_fits(report, t)
    assert report.total_bytes < 4e9
    kinds = report.stats.by_kind()
    assert kinds["convolution"]["flops"] > 1e9  # the encoder's 3x3 convolutions, forward and backward
    assert report.stats.unknown_trip_counts == []
    assert ("collective" in kinds) == (len(devs) > 1)
    if len(devs) == 1:  # on 8 chips a batch of 1-2 per chip is padded to the TPU's tiles
        assert report.stats.flops == pytest.approx(train_flops(config(name)), rel=1e-3)


@FULL
def test_the_notebooks_programs_fit_one_v5e_chip(v5e1):
    """What the notebook runs, with its parameters, on a Colab TPU runtime (one v5e chip): the
    training step of its config, its largest render (its LR crop at its largest scale) and its
    animated zoom (the first held-out photograph encoded whole, each frame queried in chunks)."""
    p = notebook_parameters()
    assert p["DATA"] is None and p["PRETRAINED"] is None  # it trains CONFIG on the sample photographs
    c = config(p["CONFIG"])
    c.update_from_flattened_dict(p["OVERRIDES"])
    model = build_model(c.model.to_dict())
    side, scale = p["LR_CROP"], max(p["SCALES"])
    photo = sources.sample_images("val")[0]
    frame = (p["ZOOM_SIZE"], p["ZOOM_SIZE"])
    programs = {
        "train_step": (aot.train_step(c, v5e1, precision="default"), 1),
        **{
            f"render {k}": v
            for k, v in aot.render_programs(
                model,
                (side, side),
                (side * scale, side * scale),
                v5e1[0],
                precision="default",
                memory_bytes=aot.target("v5e-1").memory_bytes,
                batch_queries=p["BATCH_QUERIES"],
            ).items()
        },
        **{
            f"zoom {k}": v
            for k, v in aot.zoom_programs(
                model,
                photo.shape[:2],
                frame,
                p["ZOOM_FRAMES"],
                v5e1[0],
                precision="default",
                batch_queries=p["BATCH_QUERIES"],
            ).items()
        },
    }
    assert programs["zoom query"][1] == p["ZOOM_FRAMES"] * -(-frame[0] * frame[1] // p["BATCH_QUERIES"])
    for name, (low, runs) in programs.items():
        assert runs >= 1, name
        assert_fits(estimate.read(low, "v5e-1"), "v5e-1")


def test_render_programs_pick_their_tile_with_the_targets_memory(v5e1):
    """As the README's API example: no memory given, the compile-only chip's is its target's."""
    assert aot.chip_memory(v5e1[0]) == aot.target("v5e-1").memory_bytes
    model = build_model(config("quickstart").model.to_dict())
    programs = aot.render_programs(model, (20, 30), (80, 120), v5e1[0], precision="default")
    assert {k: runs for k, (_, runs) in programs.items()} == {"encode_tile": 1, "query_block": 1}


@FULL
def test_a_4k_to_8k_render_fits_one_v5e_chip(v5e1):
    """2160x3840 -> 4320x7680 with EDSR-baseline-LIIF, the tile chosen by memory (the render's
    3 GB budget), 30000 queries per step: two programs, each inside the budget, run once per tile
    and once per output block."""
    model = build_model(config("edsr-baseline-liif").model.to_dict())
    in_hw, out_hw = (2160, 3840), (4320, 7680)
    memory_bytes = aot.target("v5e-1").memory_bytes
    tile = aot.render_tile(model, in_hw, out_hw, v5e1[0], "default", memory_bytes)
    assert 0 < tile < 2160
    programs = aot.render_programs(model, in_hw, out_hw, v5e1[0], precision="default", tile=tile)
    assert {k: runs for k, (_, runs) in programs.items()} == render.program_runs(model, in_hw, out_hw, tile)
    for name, (low, _runs) in programs.items():
        report = estimate.read(low, "v5e-1")
        assert_fits(report, "v5e-1")
        assert report.total_bytes < 3e9, name  # bounded by the tile, not the 8K image


def test_a_program_too_big_for_the_chip_is_reported_as_not_fitting(v5e1):
    """The compiler refuses 24 GiB of temporaries on a 16 GiB chip; `read` reports it, and a
    program that compiles but exceeds a (smaller) target's memory is not called fitting either."""
    shard = jax.sharding.SingleDeviceSharding(v5e1[0])
    big = jax.ShapeDtypeStruct((3, 1024, 1024, 1024), jnp.float32, sharding=shard)  # 12 GiB
    report = estimate.read(jax.jit(lambda x: (jnp.sin(x), jnp.cos(x))).lower(big), "v5e-1")
    assert not report.fits and report.memory is None and "memory" in report.error.lower()

    small = jax.ShapeDtypeStruct((1024, 1024), jnp.float32, sharding=shard)  # 4 MiB
    tiny_chip = dataclasses.replace(aot.target("v5e-1"), name="v5e-1 with 1 MiB", memory_bytes=2**20)
    report = estimate.read(jax.jit(lambda x: x * 2).lower(small), tiny_chip)
    assert report.memory is not None and report.total_bytes > 2**20 and not report.fits


def test_a_pallas_kernel_compiles_for_the_tpu_and_counts_as_one_opaque_kernel(v5e1):
    """Lowered in `aot.lowering` (the abstract mesh tells Pallas which chip), a Mosaic kernel
    compiles deviceless; `hlo_stats` sees one custom call that reads and writes its 64x128 floats."""
    from jax.experimental import pallas as pl

    def double_plus_one(x_ref, o_ref):
        o_ref[...] = x_ref[...] * 2.0 + 1.0

    block = pl.BlockSpec((8, 128), lambda i: (i, 0))
    f = lambda x: pl.pallas_call(
        double_plus_one, out_shape=jax.ShapeDtypeStruct(x.shape, x.dtype), grid=(8,), in_specs=[block], out_specs=block
    )(x)
    x = jax.ShapeDtypeStruct((64, 128), jnp.float32, sharding=jax.sharding.SingleDeviceSharding(v5e1[0]))
    with aot.lowering(v5e1):
        report = estimate.read(jax.jit(f).lower(x), "v5e-1")
    assert report.fits
    [kernel] = [k for k in report.stats.kernels if k.kind == "custom-call"]
    assert kernel.opaque and kernel.launches == 1 and kernel.bytes == 2 * 64 * 128 * 4


def test_the_script_writes_its_tables_for_a_target(tmp_path):
    """`experiments/aot.py` end to end on a small render: JSON and markdown with the memory, the
    runs per render and the estimate, marked as one."""
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "experiments" / "aot.py"),
            "--target",
            "v5e-1",
            "--programs",
            "render",
            "--render_config",
            "quickstart",
            "--renders",
            "20x30-80x120",
            "--dtype",
            "float32",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "aot_v5e-1.json").read_text())
    [case] = result["renders"]
    assert case["in_hw"] == [20, 30] and case["out_hw"] == [80, 120] and case["fits"]
    assert {k: p["runs"] for k, p in case["programs"].items()} == {"encode_tile": 1, "query_block": 1}
    assert case["est_s"] > 0 and "estimated, not measured" in result["note"]
    md = (tmp_path / "aot_v5e-1.md").read_text()
    assert "20x30 -> 80x120" in md and "estimated, not measured" in md and "Peak GB at once" in md


def test_mosaic_refuses_the_fused_query_kernel_so_tpu_renders_keep_xla(tmp_path):
    """Why a TPU render uses XLA's decoder: the fused kernel's row gather by a vector of indices
    does not lower with Mosaic (`experiments/fused_tpu_check.py`), while the same sums as XLA
    operations compile. If Mosaic learns the gather, this fails: time to revisit the decision."""
    out = subprocess.run(
        [sys.executable, str(REPO / "experiments" / "fused_tpu_check.py"), "--target", "v5e-1", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    md = (tmp_path / "fused_tpu_v5e-1.md").read_text()
    assert "| fused Pallas kernel (Mosaic) | refused" in md and "int indexing" in md
    assert "| XLA decoder (fused_query.reference) | compiled" in md
    model = build_model(config("edsr-baseline-liif").model.to_dict())
    assert render.fused_supported(model) and render.resolve_decoder(model, None, "tpu") == "xla"
