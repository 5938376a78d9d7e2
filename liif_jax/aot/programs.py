"""Our programs lowered for compile targets (`liif_jax.aot.targets`), and what they need there.

`train_step(config, devices)` lowers the training step that `python -m liif_jax.train` runs,
data-parallel over the devices; `render_programs` and `zoom_programs` lower what `demo` runs.
`memory`, `total_bytes` and `fits` read a compiled program's memory against its target's.
Nothing here executes on the target.
"""

from __future__ import annotations

import contextlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from liif_jax.aot.targets import Target, chip_memory, target
from liif_jax.models import Model, build_model
from liif_jax.render import render, zoom
from liif_jax.render.memory import render_budget
from liif_jax.training import trainer


def mesh(devs: list[jax.Device]) -> Mesh:
    """The training mesh (`trainer.make_mesh`) over given devices."""
    return Mesh(np.array(devs), (trainer.DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def _with_sharding(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), tree)


@contextlib.contextmanager
def lowering(devs: list[jax.Device], precision: str | None = None):
    """The context to lower a program for compile-only devices in: their abstract mesh (which
    Pallas needs to know the chip it compiles for) and, if given, a matmul precision."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(jax.sharding.use_abstract_mesh(mesh(devs).abstract_mesh))
        if precision:
            stack.enter_context(jax.default_matmul_precision(precision))
        yield


# ---------------------------------------------------------------------------------------------
# Our programs
# ---------------------------------------------------------------------------------------------


def batch_shapes(
    config: ml_collections.ConfigDict, inp_hw: tuple[int, int] | None = None
) -> dict[str, jax.ShapeDtypeStruct]:
    """Shapes of one global training batch (`trainer.MODEL_KEYS`) of a config."""
    args = config.data.train.wrapper.get("args") or {}
    side, q = args.get("inp_size"), args.get("sample_q")
    if inp_hw is None and side is None:
        raise ValueError(f"wrapper {config.data.train.wrapper.name!r} has no fixed input size (inp_size); give inp_hw")
    if q is None:
        raise ValueError("data.train.wrapper.args.sample_q is None (every pixel queried): the batch has no fixed shape")
    h, w = inp_hw or (side, side)
    b = config.data.train.batch_size
    f32 = jnp.float32
    return {
        "inp": jax.ShapeDtypeStruct((b, h, w, 3), f32),
        "coord": jax.ShapeDtypeStruct((b, q, 2), f32),
        "cell": jax.ShapeDtypeStruct((b, q, 2), f32),
        "gt": jax.ShapeDtypeStruct((b, q, 3), f32),
    }


def train_step(
    config: ml_collections.ConfigDict,
    devs: list[jax.Device],
    inp_hw: tuple[int, int] | None = None,
    precision: str | None = None,
    steps_per_epoch: int = 1000,
) -> jax.stages.Lowered:
    """The training step that `trainer.train_and_evaluate` runs for `config` (its model, batch,
    `compute_dtype` and optimizer), data-parallel over `devs`, lowered for them."""
    trainer.check_config(config)
    model = build_model(config.model.to_dict(), trainer.compute_dtype(config.compute_dtype))
    m = mesh(devs)
    tx = trainer.make_optimizer(config, steps_per_epoch)
    steps = trainer.compile_steps(model, tx, m)
    batch = batch_shapes(config, inp_hw)
    if batch["inp"].shape[0] % len(devs):
        raise ValueError(f"data.train.batch_size {batch['inp'].shape[0]} is not a multiple of the {len(devs)} devices")

    def init_state():
        return trainer.TrainState.create(model, tx, model.init(jax.random.key(0), batch["inp"].shape[1]))

    state = _with_sharding(jax.eval_shape(init_state), steps.replicated)
    with lowering(devs, precision):
        return steps.train.lower(state, _with_sharding(batch, steps.batch))


def render_tile(
    model: Model,
    in_hw: tuple[int, int],
    out_hw: tuple[int, int],
    device: jax.Device,
    precision: str | None = None,
    memory_bytes: int | None = None,
    **kwargs,
) -> int:
    """The tile a render picks by memory (`render.choose_tile`) on a chip of `memory_bytes`
    (`memory.render_budget`; default: the device's target's, `chip_memory`). kwargs:
    `batch_queries`, `batch`, `unit_range`, `mlp_dtype`, `decoder` as `render.programs`."""
    params = _with_sharding(
        jax.eval_shape(lambda: model.init(jax.random.key(0))), jax.sharding.SingleDeviceSharding(device)
    )
    kwargs.setdefault("batch_queries", render.DEFAULT_BATCH_QUERIES)  # an accelerator's default
    with lowering([device], precision):
        return render.choose_tile(
            model, params, in_hw, out_hw, **kwargs, budget=render_budget(device, memory_bytes or chip_memory(device))
        )


def render_programs(
    model: Model,
    in_hw: tuple[int, int],
    out_hw: tuple[int, int],
    device: jax.Device,
    precision: str | None = None,
    memory_bytes: int | None = None,
    **kwargs,
) -> dict[str, tuple[jax.stages.Lowered, int]]:
    """`render.programs` on one compile-only device, with how many times a render runs each.
    kwargs: `tile` (default: `render_tile`), `batch_queries`, `batch`, `unit_range`, `mlp_dtype`,
    `decoder` (default: the device's, `render.resolve_decoder`) as `render.programs`."""
    params = _with_sharding(
        jax.eval_shape(lambda: model.init(jax.random.key(0))), jax.sharding.SingleDeviceSharding(device)
    )
    kwargs.setdefault("batch_queries", render.DEFAULT_BATCH_QUERIES)  # an accelerator's default
    kwargs["decoder"] = render.resolve_decoder(model, kwargs.get("decoder"), device)
    tile = kwargs.pop("tile", None)
    if tile is None:
        tile = render_tile(model, in_hw, out_hw, device, precision, memory_bytes, **kwargs)
    with lowering([device], precision):
        lowered = render.programs(model, params, in_hw, out_hw, tile, **kwargs)
    runs = render.program_runs(model, in_hw, out_hw, tile, kwargs["decoder"])
    return {name: (low, runs[name]) for name, low in lowered.items()}


def zoom_programs(
    model: Model,
    in_hw: tuple[int, int],
    frame_hw: tuple[int, int],
    frames: int,
    device: jax.Device,
    precision: str | None = None,
    batch_queries: int = render.DEFAULT_BATCH_QUERIES,
) -> dict[str, tuple[jax.stages.Lowered, int]]:
    """`zoom.programs` (an animated zoom into an `in_hw` image) on one compile-only device, with
    how many times a zoom of `frames` frames runs each."""
    params = _with_sharding(
        jax.eval_shape(lambda: model.init(jax.random.key(0))), jax.sharding.SingleDeviceSharding(device)
    )
    with lowering([device], precision):
        lowered = zoom.programs(model, params, in_hw, frame_hw, batch_queries)
    runs = zoom.program_runs(frames, frame_hw, batch_queries)
    return {name: (low, runs[name]) for name, low in lowered.items()}


def memory(compiled: jax.stages.Compiled) -> dict[str, int]:
    """What a compiled program needs on its device, from XLA's `memory_analysis()`, in bytes."""
    m = compiled.memory_analysis()
    return {
        "argument": m.argument_size_in_bytes,
        "output": m.output_size_in_bytes,
        "alias": m.alias_size_in_bytes,
        "temp": m.temp_size_in_bytes,
        "code": m.generated_code_size_in_bytes,
    }


def total_bytes(mem: dict[str, int]) -> int:
    """Device memory a program needs at once: arguments, outputs (less donated), temporaries, code."""
    return mem["argument"] + mem["output"] - mem["alias"] + mem["temp"] + mem["code"]


def fits(compiled: jax.stages.Compiled, name: str | Target) -> bool:
    """Whether a compiled program fits one device of its target."""
    return total_bytes(memory(compiled)) <= target(name).memory_bytes
