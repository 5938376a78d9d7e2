"""Compiling our programs for accelerators this machine does not have (ahead of time, deviceless).

XLA compiles for a TPU or an NVIDIA GPU without one: `devices(target)` gives compile-only devices
of a named target (`TARGETS`), `train_step(...)` and `render_programs(...)` lower our training step
and render programs for them, and `read(lowered, target)` compiles one and reads what the hardware
would run: compile time, memory against the chip's, kernels, FLOPs and HBM bytes
(`liif_jax.hlo_stats`) and an estimated time. Run with `JAX_PLATFORMS=cpu`; nothing is executed.

TPU targets need libtpu (`pip install -e ".[aot-tpu]"`); GPU targets need the CUDA plugin
(`pip install -e ".[aot-gpu]"`) and a `GpuTargetConfigProto` text file describing the GPU
(`experiments/targets/`, shipped in the wheel). Neither is imported until a target asks for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import re
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from liif_jax import fused_query, hlo_stats, liif, render, shipped, train_lib, zoom
from liif_jax.memory import render_budget
from liif_jax.models import Model, build_model

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Target:
    """A compile target and the facts an estimate needs, per device (a chip; a TensorCore on v4)."""

    name: str
    platform: str  # "tpu" or "cuda"
    topology: str  # TPU topology name ("v5e:2x4") or GPU topology ("1x1x1")
    chips_per_host: tuple[int, int, int] | None  # TPU only
    memory_bytes: int  # device memory per chip
    hbm_bandwidth: float  # bytes/s per chip
    peak_flops: dict[str, float]  # per chip, by `hlo_stats.Kernel.flops_class`
    description: str
    config_file: str | None = None  # GPU: its GpuTargetConfigProto text, shipped from experiments/targets/

    @property
    def extra(self) -> str:
        return "aot-tpu" if self.platform == "tpu" else "aot-gpu"


def _tpu(name: str, topology: str, chips: tuple[int, int, int], hbm_gib: int, bw: float, bf16: float, what: str) -> Target:
    # f32 matmuls at the default precision run as one bf16 pass on the MXU; "highest" as six.
    peaks = {"bf16": bf16, "f32": bf16, "f32_highest": bf16 / 6}
    return Target(name, "tpu", topology, chips, hbm_gib * GIB, bw, peaks, what)


# Hopper: dense peaks (TF32 is what float32 matmuls use at JAX's default precision on a GPU).
_HOPPER = {"bf16": 989e12, "f32": 494.7e12, "f32_highest": 66.9e12}
TARGETS: dict[str, Target] = {
    "h100": Target("h100", "cuda", "1x1x1", None, 84_978_434_048, 3.35232e12, _HOPPER,
                   "NVIDIA H100 SXM 80GB", "h100_sxm.txtpb"),
    "h200": Target("h200", "cuda", "1x1x1", None, 150_754_820_096, 4.8e12, _HOPPER,
                   "NVIDIA H200 141GB", "h200.txtpb"),
    "v5e-1": _tpu("v5e-1", "v5e:1x1", (1, 1, 1), 16, 819e9, 197e12, "TPU v5e, 1 chip (Colab)"),
    "v5e-8": _tpu("v5e-8", "v5e:2x4", (2, 4, 1), 16, 819e9, 197e12, "TPU v5e, 8 chips (one host)"),
    # libtpu's v4 topology has one device per TensorCore (2 per chip): facts per core.
    "v4-8": _tpu("v4-8", "v4:2x2x1", (2, 2, 1), 16, 614e9, 137.5e12, "TPU v4-8 (4 chips as 8 TensorCores)"),
    "v6e-1": _tpu("v6e-1", "v6e:1x1", (1, 1, 1), 32, 1640e9, 918e12, "TPU v6e, 1 chip"),
}


def target(name: str | Target) -> Target:
    if isinstance(name, Target):
        return name
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}; known: {', '.join(TARGETS)}")
    return TARGETS[name]


# ---------------------------------------------------------------------------------------------
# Compile-only devices
# ---------------------------------------------------------------------------------------------


def _libtpu_env() -> None:
    """libtpu looks for a TPU VM's metadata and its lock file unless told it is alone on localhost."""
    for key, value in {"TPU_SKIP_MDS_QUERY": "1", "TPU_WORKER_ID": "0", "TPU_WORKER_HOSTNAMES": "localhost",
                       "TPU_ACCELERATOR_TYPE": "v5litepod-1", "ALLOW_MULTIPLE_LIBTPU_LOAD": "1"}.items():
        os.environ.setdefault(key, value)


def _missing(t: Target, what: str) -> ImportError:
    return ImportError(f"compiling for {t.name} needs {what}: pip install -e \".[{t.extra}]\" "
                       f"(jax {jax.__version__}'s {'libtpu' if t.platform == 'tpu' else 'CUDA plugin'})")


def devices(name: str | Target, gpu_config: str | os.PathLike | None = None) -> list[jax.Device]:
    """Compile-only devices of a target: jit programs whose inputs are sharded over them compile
    for it. `gpu_config`: a GpuTargetConfigProto text file (default: the target's file, which
    liif_jax ships from experiments/targets/)."""
    t = target(name)
    from jax.experimental import topologies

    if t.platform == "tpu":
        import importlib.util

        if importlib.util.find_spec("libtpu") is None:
            raise _missing(t, "libtpu")
        _libtpu_env()
        return _remember(t, topologies.get_topology_desc(topology_name=t.topology, platform="tpu",
                                                         chips_per_host_bounds=t.chips_per_host).devices)
    try:
        import jax_plugins.xla_cuda12  # noqa: F401  (the plugin registers the "cuda" platform)
    except ImportError:
        raise _missing(t, "the CUDA plugin") from None
    path = pathlib.Path(gpu_config) if gpu_config is not None else shipped.root() / "targets" / t.config_file
    if not path.is_file():
        raise FileNotFoundError(f"{path}: GPU target description (GpuTargetConfigProto text) not found; "
                                f"pass gpu_config= (liif_jax ships {t.config_file} in experiments/targets/)")
    return _remember(t, topologies.get_topology_desc(topology_name="", platform="cuda", target_config=path.read_text(),
                                                     topology=t.topology).devices)


_CHIP_MEMORY: dict[str, int] = {}  # device kind -> memory per chip, of the targets `devices` made


def _remember(t: Target, devs) -> list[jax.Device]:
    _CHIP_MEMORY[devs[0].device_kind] = t.memory_bytes
    return list(devs)


def chip_memory(device: jax.Device) -> int:
    """Memory of a compile-only device made by `devices` (its target's), for choosing a render's tile."""
    if device.device_kind not in _CHIP_MEMORY:
        raise ValueError(f"{device.device_kind}: not a device of liif_jax.aot.devices; give memory_bytes")
    return _CHIP_MEMORY[device.device_kind]


def mesh(devs: list[jax.Device]) -> Mesh:
    """The training mesh (`train_lib.make_mesh`) over given devices."""
    return Mesh(np.array(devs), (train_lib.DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


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


def batch_shapes(config: ml_collections.ConfigDict, inp_hw: tuple[int, int] | None = None) -> dict[str, jax.ShapeDtypeStruct]:
    """Shapes of one global training batch (`train_lib.MODEL_KEYS`) of a config."""
    args = config.data.train.wrapper.get("args") or {}
    side, q = args.get("inp_size"), args.get("sample_q")
    if inp_hw is None and side is None:
        raise ValueError(f"wrapper {config.data.train.wrapper.name!r} has no fixed input size (inp_size); give inp_hw")
    if q is None:
        raise ValueError("data.train.wrapper.args.sample_q is None (every pixel queried): the batch has no fixed shape")
    h, w = inp_hw or (side, side)
    b = config.data.train.batch_size
    f32 = jnp.float32
    return {"inp": jax.ShapeDtypeStruct((b, h, w, 3), f32), "coord": jax.ShapeDtypeStruct((b, q, 2), f32),
            "cell": jax.ShapeDtypeStruct((b, q, 2), f32), "gt": jax.ShapeDtypeStruct((b, q, 3), f32)}


def train_step(config: ml_collections.ConfigDict, devs: list[jax.Device], inp_hw: tuple[int, int] | None = None,
               precision: str | None = None, steps_per_epoch: int = 1000) -> jax.stages.Lowered:
    """The training step that `train_lib.train_and_evaluate` runs for `config` (its model, batch,
    `compute_dtype` and optimizer), data-parallel over `devs`, lowered for them."""
    train_lib.check_config(config)
    model = build_model(config.model.to_dict(), train_lib.compute_dtype(config.compute_dtype))
    m = mesh(devs)
    tx = train_lib.make_optimizer(config, steps_per_epoch)
    steps = train_lib.compile_steps(model, tx, m)
    batch = batch_shapes(config, inp_hw)
    if batch["inp"].shape[0] % len(devs):
        raise ValueError(f"data.train.batch_size {batch['inp'].shape[0]} is not a multiple of the {len(devs)} devices")

    def init_state():
        return train_lib.TrainState.create(model, tx, model.init(jax.random.key(0), batch["inp"].shape[1]))

    state = _with_sharding(jax.eval_shape(init_state), steps.replicated)
    with lowering(devs, precision):
        return steps.train.lower(state, _with_sharding(batch, steps.batch))


def render_tile(model: Model, in_hw: tuple[int, int], out_hw: tuple[int, int], device: jax.Device,
                precision: str | None = None, memory_bytes: int | None = None, **kwargs) -> int:
    """The tile a render picks by memory (`render.choose_tile`) on a chip of `memory_bytes`
    (`memory.render_budget`; default: the device's target's, `chip_memory`). kwargs:
    `batch_queries`, `batch`, `unit_range`, `mlp_dtype`, `decoder` as `render.programs`."""
    params = _with_sharding(jax.eval_shape(lambda: model.init(jax.random.key(0))), jax.sharding.SingleDeviceSharding(device))
    kwargs.setdefault("batch_queries", render.DEFAULT_BATCH_QUERIES)  # an accelerator's default
    with lowering([device], precision):
        return render.choose_tile(model, params, in_hw, out_hw, **kwargs,
                                  budget=render_budget(device, memory_bytes or chip_memory(device)))


def render_programs(model: Model, in_hw: tuple[int, int], out_hw: tuple[int, int], device: jax.Device,
                    precision: str | None = None, memory_bytes: int | None = None,
                    **kwargs) -> dict[str, tuple[jax.stages.Lowered, int]]:
    """`render.programs` on one compile-only device, with how many times a render runs each.
    kwargs: `tile` (default: `render_tile`), `batch_queries`, `batch`, `unit_range`, `mlp_dtype`,
    `decoder` (default: the device's, `render.resolve_decoder`) as `render.programs`."""
    params = _with_sharding(jax.eval_shape(lambda: model.init(jax.random.key(0))), jax.sharding.SingleDeviceSharding(device))
    kwargs.setdefault("batch_queries", render.DEFAULT_BATCH_QUERIES)  # an accelerator's default
    kwargs["decoder"] = render.resolve_decoder(model, kwargs.get("decoder"), device.platform)
    tile = kwargs.pop("tile", None)
    if tile is None:
        tile = render_tile(model, in_hw, out_hw, device, precision, memory_bytes, **kwargs)
    with lowering([device], precision):
        lowered = render.programs(model, params, in_hw, out_hw, tile, **kwargs)
    runs = render.program_runs(model, in_hw, out_hw, tile, kwargs["decoder"])
    return {name: (low, runs[name]) for name, low in lowered.items()}


def fused_kernel_flops(model: Model, out_hw: tuple[int, int], batch: int = 1) -> float:
    """FLOPs of the fused query kernel (`liif_jax.fused_query`) in one render: a Pallas kernel is
    opaque to `hlo_stats`, so `read` takes them from here (`opaque_flops`)."""
    n = len(liif.neighbour_signs(model.local_ensemble))
    return batch * out_hw[0] * out_hw[1] * fused_query.flops(model.imnet.hidden_list, model.imnet.out_dim,
                                                             4 if model.cell_decode else 2, n)


def zoom_programs(model: Model, in_hw: tuple[int, int], frame_hw: tuple[int, int], frames: int, device: jax.Device,
                  precision: str | None = None, batch_queries: int = render.DEFAULT_BATCH_QUERIES
                  ) -> dict[str, tuple[jax.stages.Lowered, int]]:
    """`zoom.programs` (an animated zoom into an `in_hw` image) on one compile-only device, with
    how many times a zoom of `frames` frames runs each."""
    params = _with_sharding(jax.eval_shape(lambda: model.init(jax.random.key(0))), jax.sharding.SingleDeviceSharding(device))
    with lowering([device], precision):
        lowered = zoom.programs(model, params, in_hw, frame_hw, batch_queries)
    runs = zoom.program_runs(frames, frame_hw, batch_queries)
    return {name: (low, runs[name]) for name, low in lowered.items()}


# ---------------------------------------------------------------------------------------------
# Reading a compiled program
# ---------------------------------------------------------------------------------------------

# Fitted to the H200 training steps of commit 148494c (experiments/aot_fit.py -> results/aot_fit_h200.md).
H200_FIT = hlo_stats.Roofline(efficiency=0.402, launch_s=1.16e-6)
ESTIMATE_NOTE = ("estimated, not measured (a roofline fitted to the H200 training steps of 148494c): it ranks "
                 "training steps and counts bytes, it does not predict render times (148494c's renders came out "
                 "10-49% below their measured times)")


@dataclasses.dataclass
class ProgramReport:
    """What a program would use and do on a target, read from its deviceless compile."""

    target: str
    compile_s: float  # wall-clock
    compile_cpu_s: float  # CPU time of this process (all threads) while compiling
    memory: dict[str, int] | None  # memory_analysis() fields, bytes (None: the compiler refused it)
    fits: bool
    error: str | None
    stats: hlo_stats.ProgramStats | None
    est_s: float | None

    @property
    def total_bytes(self) -> int | None:
        """Device memory the program needs at once: arguments, outputs (less donated), temporaries, code."""
        m = self.memory
        return None if m is None else m["argument"] + m["output"] - m["alias"] + m["temp"] + m["code"]

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "compile_s": self.compile_s, "compile_cpu_s": self.compile_cpu_s, "memory": self.memory, "total_bytes": self.total_bytes,
                "fits": self.fits, "error": self.error, "est_s": self.est_s,
                "hlo": None if self.stats is None else hlo_stats.to_json(self.stats)}


def memory(compiled: jax.stages.Compiled) -> dict[str, int]:
    m = compiled.memory_analysis()
    return {"argument": m.argument_size_in_bytes, "output": m.output_size_in_bytes, "alias": m.alias_size_in_bytes,
            "temp": m.temp_size_in_bytes, "code": m.generated_code_size_in_bytes}


def read(lowered: jax.stages.Lowered, name: str | Target, roofline: hlo_stats.Roofline = H200_FIT,
         opaque_flops: float = 0.0, opaque_class: str = "f32") -> ProgramReport:
    """Compiles a lowered program for its target and reads it. A program the compiler refuses for
    lack of memory is reported as not fitting (with the compiler's message), not raised.
    `opaque_flops`: FLOPs per run of the program's opaque kernels (custom calls whose work the HLO
    does not show, e.g. `fused_kernel_flops`), at the `opaque_class` peak, spread over their launches."""
    t = target(name)
    start, cpu = time.perf_counter(), time.process_time()
    try:
        compiled = lowered.compile()
    except jax.errors.JaxRuntimeError as err:
        if "RESOURCE_EXHAUSTED" not in str(err):
            raise
        return ProgramReport(t.name, time.perf_counter() - start, time.process_time() - cpu, None, False,
                             _first_line(str(err)), None, None)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    mem = memory(compiled)
    stats = hlo_stats.analyze(compiled.as_text())
    opaque = [k for k in stats.kernels if k.opaque]
    for k in opaque:
        k.flops, k.flops_class = opaque_flops / sum(o.launches for o in opaque), opaque_class
    if opaque_flops and not opaque:
        raise ValueError("opaque_flops given for a program without opaque kernels")
    report = ProgramReport(t.name, seconds, cpu, mem, True, None, stats, roofline.seconds(stats, t.peak_flops, t.hbm_bandwidth))
    report.fits = report.total_bytes <= t.memory_bytes
    return report


def _first_line(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().splitlines()[0])[:300]
