"""Performance benchmark of liif_jax against the official PyTorch LIIF numbers (one H100 80GB).

    python experiments/benchmark.py [--size full|small] [--dtypes float32,bfloat16]
        [--out experiments/results] [--steps N] [--num_workers N] [--batch_queries N]
        [--cases train_edsr_baseline,...] [--[no]isolate] [--tile N] [--render_mlp_dtype bfloat16]

Times, for each compute dtype:

* training, EDSR-baseline-LIIF, RDN-LIIF, EDSR-baseline-LTE and SwinIR-LTE: the jitted step on one
  pre-made device batch (model only), the grain pipeline alone (samples/s), and the two together
  (end to end: the real grain pipeline with `num_workers` worker processes over synthetic DIV2K-size
  uint8 images held in memory, batch 16, 48 px inputs, 2304 queries), after warm-up, and the samples
  per second of one worker with bicubic and with Real-ESRGAN-degraded inputs (LTE trains
  SwinIR-LTE with batch 32: `--batch 32 --cases train_swinir_lte` times that);
* rendering with `render.upscale` (`--tile` input pixels per tile, [0, 1] clamped on the device):
  x4 339x510 -> 1356x2040 (EDSR-baseline and RDN LIIF, EDSR-baseline and SwinIR LTE; SwinIR is
  encoded whole), x30 128x128 -> 3840x3840 and x2 3840x2160 -> 7680x4320 (EDSR-baseline-LIIF), mean
  time per render after one warm-up render.

float32 runs under `jax.default_matmul_precision('tensorfloat32')` (TF32 matmuls and convolutions
on GPU; no effect on CPU), bfloat16 builds the model with `build_model(spec, jnp.bfloat16)` (bf16
compute, float32 params and optimizer). Compile time (XLA compile seconds and the first call's wall
time) is reported apart, as is the number of compilations after the first call (0 unless something
recompiles). Peak device memory is `peak_bytes_in_use` (null where the device does not report it,
e.g. CPU), and the host's peak resident memory is `ru_maxrss`. JAX cannot reset either peak, and
compilation (GPU autotuning) counts in it, so with `--isolate` (default for full runs) every case runs
twice, each time in a fresh process sharing a persistent compilation cache: the first process
compiles (its peak, `peak_bytes_with_compile`, includes compilation), the second loads the compiled
programs from the cache and measures: its peak, `peak_bytes`, is the case's own at run time.

`--size small` shrinks everything (images, crops, batch, queries, render sizes, steps, model widths)
and compiles without XLA optimisation: a CPU smoke test of the same code paths and output keys,
whose figures are not performance figures. Writes `<out>/benchmark_<device>.json` and
`<out>/benchmark_<device>.md` (device from `jax.devices()[0].device_kind`: h100, h200, cpu, ...).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import json
import math
import os
import pathlib
import resource
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from liif_jax.configs.common import base_config, liif_spec, lte_spec
from liif_jax.data import degradations, pipeline, sources, wrappers
from liif_jax.evaluation.report import device_slug
from liif_jax.models import LIIF, build_model
from liif_jax.render import render
from liif_jax.training import trainer

Result = dict[str, Any]

# case -> (kind, model key)
CASES = {
    "train_edsr_baseline": ("train", "edsr-baseline"),
    "train_rdn": ("train", "rdn"),
    "render_x4_div2k": ("render", "edsr-baseline"),
    "render_x30_3840": ("render", "edsr-baseline"),
    "render_x4_rdn_div2k": ("render", "rdn"),
    "render_x2_8k": ("render", "edsr-baseline"),
    "train_edsr_baseline_lte": ("train", "edsr-baseline-lte"),
    "train_swinir_lte": ("train", "swinir-lte"),
    "render_x4_lte_div2k": ("render", "edsr-baseline-lte"),
    "render_x4_swinir_lte_div2k": ("render", "swinir-lte"),
}
DTYPES = ("float32", "bfloat16")
MODEL_NAMES = {
    "edsr-baseline": "EDSR-baseline-LIIF",
    "rdn": "RDN-LIIF",
    "edsr-baseline-lte": "EDSR-baseline-LTE",
    "swinir-lte": "SwinIR-LTE",
}
# Elements of the official DIV2K training source: 800 images x repeat 20. grain's index_shuffle
# costs ~2.7 ms per element on a 16-element source but ~10 us on 16000, so the length matters.
SOURCE_LEN = 16000

_SIZE = flags.DEFINE_enum("size", "full", ["full", "small"], "full: the official sizes; small: a CPU smoke test")
_DTYPES = flags.DEFINE_list("dtypes", list(DTYPES), "compute dtypes to time: float32 (TF32 on GPU), bfloat16")
_OUT = flags.DEFINE_string("out", "experiments/results", "folder for benchmark_<device>.json and .md")
_STEPS = flags.DEFINE_integer(
    "steps", None, "timed training steps per measure (default 100 full, 2 small)", lower_bound=1
)
_NUM_WORKERS = flags.DEFINE_integer(
    "num_workers", None, "grain worker processes (default 8 full, 1 small)", lower_bound=0
)
_BATCH = flags.DEFINE_integer("batch", None, "training batch size (default 16 full, 4 small)", lower_bound=1)
_BATCH_QUERIES = flags.DEFINE_integer(
    "batch_queries",
    None,
    "queries per render chunk (default 30000 full, the official demo's; 1024 small)",
    lower_bound=1,
)
_CASES = flags.DEFINE_list("cases", list(CASES), f"cases to run, of: {', '.join(CASES)}")
_ISOLATE = flags.DEFINE_bool(
    "isolate", None, "run every case in a fresh process, so peak memory is per case (default: on for full)"
)
_TILE = flags.DEFINE_integer(
    "tile",
    None,
    "input pixels per render tile side (0: whole images; default: `render.choose_tile`, by memory)",
    lower_bound=0,
)
_DECODER = flags.DEFINE_enum(
    "decoder",
    None,
    list(render.DECODERS),
    "render decoder (default: `render.resolve_decoder`: xla unless a measurement made the kernel the default)",
)
_RENDER_MLP = flags.DEFINE_enum(
    "render_mlp_dtype",
    "float32",
    ["float32", "bfloat16"],
    "dtype of the MLP when rendering (`render.upscale(mlp_dtype=)`)",
)
_RUN_ONE = flags.DEFINE_string("run_one", None, "internal: run one CASE:DTYPE in this process")
_COMPILE_ONLY = flags.DEFINE_bool("compile_only", False, "internal: --run_one stops after the first (compiling) call")
_RUN_ONE_OUT = flags.DEFINE_string("run_one_out", None, "internal: where --run_one writes its result")


# ---------------------------------------------------------------------------------------------
# Sizes
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Everything that `--size` (and the flags overriding it) sets."""

    name: str
    image_hw: tuple[int, int]  # synthetic training images
    n_images: int
    batch: int
    inp_size: int
    sample_q: int
    steps: int
    warmup: int
    num_workers: int
    render_repeats: int
    batch_queries: int
    tile: int | None  # None: by memory (`render.choose_tile`)
    renders: dict[str, tuple[tuple[int, int], tuple[int, int]]]  # case -> (input hw, output hw)
    models: dict[str, dict[str, Any]]  # model key -> official model spec


FULL = Sizes(
    name="full",
    image_hw=(1356, 2040),
    n_images=16,
    batch=16,
    inp_size=48,
    sample_q=2304,
    steps=100,
    warmup=10,
    num_workers=8,
    render_repeats=5,
    batch_queries=render.DEFAULT_BATCH_QUERIES,
    tile=None,
    renders={
        "render_x4_div2k": ((339, 510), (1356, 2040)),
        "render_x30_3840": ((128, 128), (3840, 3840)),
        "render_x4_rdn_div2k": ((339, 510), (1356, 2040)),
        "render_x2_8k": ((2160, 3840), (4320, 7680)),
        "render_x4_lte_div2k": ((339, 510), (1356, 2040)),
        "render_x4_swinir_lte_div2k": ((339, 510), (1356, 2040)),
    },
    models={
        "edsr-baseline": liif_spec("edsr-baseline"),
        "rdn": liif_spec("rdn"),
        "edsr-baseline-lte": lte_spec("edsr-baseline"),
        "swinir-lte": lte_spec("swinir"),
    },
)

SMALL = Sizes(
    name="small",
    image_hw=(48, 72),
    n_images=4,
    batch=4,
    inp_size=8,
    sample_q=64,
    steps=2,
    warmup=1,
    num_workers=1,
    render_repeats=2,
    batch_queries=1024,
    tile=32,
    renders={
        "render_x4_div2k": ((17, 26), (68, 104)),
        "render_x30_3840": ((4, 4), (120, 120)),
        "render_x4_rdn_div2k": ((17, 26), (68, 104)),
        "render_x2_8k": ((27, 48), (54, 96)),
        "render_x4_lte_div2k": ((17, 26), (68, 104)),
        "render_x4_swinir_lte_div2k": ((17, 26), (68, 104)),
    },
    models={
        "edsr-baseline": liif_spec("edsr-baseline", {"n_resblocks": 2, "n_feats": 16}, hidden_list=(32, 32)),
        "rdn": liif_spec("rdn", {"G0": 8, "RDNconfig": "A"}, hidden_list=(32, 32)),
        "edsr-baseline-lte": lte_spec("edsr-baseline", {"n_resblocks": 2, "n_feats": 16}, 32, (32, 32)),
        "swinir-lte": lte_spec(
            "swinir", {"embed_dim": 12, "depths": [2], "num_heads": [2], "window_size": 4}, 32, (32, 32)
        ),
    },
)


def sizes_from_flags() -> Sizes:
    base = FULL if _SIZE.value == "full" else SMALL
    overrides = {
        "steps": _STEPS.value,
        "num_workers": _NUM_WORKERS.value,
        "batch_queries": _BATCH_QUERIES.value,
        "batch": _BATCH.value,
        "tile": _TILE.value if _TILE.present else None,
    }
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})


def compile_fast_for_small_runs() -> None:
    """Small runs are smoke tests whose time goes to XLA compilation on a CPU; unoptimised code
    compiles about twice as fast. Must run before JAX starts its backend."""
    xla_flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in xla_flags:
        os.environ["XLA_FLAGS"] = f"{xla_flags} --xla_backend_optimization_level=0".strip()


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------


class CompileMonitor:
    """XLA compile seconds and the number of XLA compilations (loads from a persistent compilation
    cache included), and the cache's misses (programs really compiled), from JAX's monitoring events."""

    EVENT = "/jax/core/compile/backend_compile_duration"
    MISS = "/jax/compilation_cache/cache_misses"

    def __init__(self):
        self.seconds, self.count, self.cache_misses = 0.0, 0, 0
        jax.monitoring.register_event_duration_secs_listener(self._on_event)
        jax.monitoring.register_event_listener(self._on_count)

    def _on_event(self, event: str, duration: float, **_) -> None:
        if event == self.EVENT:
            self.seconds += duration
            self.count += 1

    def _on_count(self, event: str, **_) -> None:
        if event == self.MISS:
            self.cache_misses += 1

    def mark(self) -> tuple[float, int]:
        return self.seconds, self.count


def peak_bytes() -> int | None:
    """Largest `peak_bytes_in_use` over the local devices; None where they do not report it."""
    stats = [d.memory_stats() for d in jax.local_devices()]
    if any(not s or "peak_bytes_in_use" not in s for s in stats):
        return None
    return max(int(s["peak_bytes_in_use"]) for s in stats)


def host_peak_rss_bytes() -> int:
    """This process's peak resident memory (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def precision(dtype: str) -> contextlib.AbstractContextManager:
    """TF32 matmuls and convolutions for float32 (on GPU); bfloat16 computes in bf16 anyway."""
    return jax.default_matmul_precision("tensorfloat32") if dtype == "float32" else contextlib.nullcontext()


def seconds(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t


def rate(n: int, secs: float) -> dict[str, float]:
    return {"ms_per_step": 1e3 * secs / n, "steps_per_s": n / secs, "steps": n}


def random_params(model: LIIF, inp_size: int, seed: int = 0) -> Any:
    """Params of the model's shapes drawn on the host: kernels U(+-1/sqrt(fan_in)) as PyTorch's
    default init, zero biases. Values do not change the cost, and jit-compiling flax's init of
    RDN takes over a minute on a small CPU."""
    shapes = jax.eval_shape(functools.partial(model.init, inp_size=inp_size), jax.random.key(0))
    rng = np.random.default_rng(seed)

    def draw(s: jax.ShapeDtypeStruct) -> np.ndarray:
        if len(s.shape) < 2:
            return np.zeros(s.shape, s.dtype)
        bound = 1 / math.sqrt(math.prod(s.shape[:-1]))
        return rng.uniform(-bound, bound, s.shape).astype(s.dtype)

    return jax.tree.map(draw, shapes)


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def synthetic_source(sizes: Sizes) -> sources.ArraySource:
    """Random uint8 images held in memory, repeated to the official source length. The cost of a
    crop does not depend on content, but grain's shuffle costs milliseconds per element on a
    source of a few elements (see `SOURCE_LEN`)."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (*sizes.image_hw, 3), dtype=np.uint8) for _ in range(sizes.n_images)]
    names = [f"synthetic_{i}" for i in range(sizes.n_images)]
    repeat = SOURCE_LEN // sizes.n_images
    return sources.ArraySource(images * repeat, names * repeat)


class Pipeline:
    """The real training pipeline (grain, `num_workers` processes) over synthetic images, started on
    first use and shared by the training cases of this process, with its own throughput."""

    def __init__(self, sizes: Sizes):
        self.sizes = sizes
        self.transform = wrappers.RandomScaleDownsample(sizes.inp_size, 1.0, 4.0, augment=True, sample_q=sizes.sample_q)
        self._it: pipeline.TrainIterator | None = None
        self.stats: Result = {}

    @functools.cached_property
    def source(self) -> sources.ArraySource:
        return synthetic_source(self.sizes)

    def one_batch(self) -> dict[str, np.ndarray]:
        """A batch made in this process by the pipeline's own transform: the model-only input."""
        rng = np.random.default_rng(0)
        n = self.sizes.batch
        items = [self.transform.random_map(self.source[i % len(self.source)], rng) for i in range(n)]
        return {k: np.stack([x[k] for x in items]) for k in trainer.MODEL_KEYS}

    def iterator(self) -> pipeline.TrainIterator:
        if self._it is None:
            s = self.sizes
            self._it = pipeline.make_train_dataset(
                self.source, self.transform, s.batch, seed=0, num_workers=s.num_workers
            )
            self.stats = self._measure(self._it)
        return self._it

    def _measure(self, it: pipeline.TrainIterator) -> Result:
        """The pipeline alone: start-up time, then batches drained as fast as they come."""
        s = self.sizes
        first = seconds(lambda: next(it))
        t = time.perf_counter()
        for _ in range(s.steps):
            next(it)
        secs = time.perf_counter() - t
        return {
            "num_workers": s.num_workers,
            "first_batch_s": first,
            "batches_per_s": s.steps / secs,
            "samples_per_s": s.steps * s.batch / secs,
            "per_worker_samples_per_s": self._per_worker(),
        }

    def _per_worker(self) -> Result:
        """Samples per second that one worker makes, with bicubic inputs and with Real-ESRGAN's
        degradations (`data.train.degradation`): a GPU's step rate times its batch, divided by this,
        is the number of workers it needs."""
        s = self.sizes
        degraded = wrappers.RandomScaleDownsample(
            s.inp_size, 1.0, 4.0, augment=True, sample_q=s.sample_q, degrade=degradations.SecondOrder()
        )
        n = max(16, s.steps * s.batch)
        out = {}
        for name, transform in (("bicubic", self.transform), ("realesrgan", degraded)):
            rng = np.random.default_rng(0)
            secs = seconds(lambda t=transform: [t.random_map(self.source[i], rng) for i in range(n)])
            out[name] = n / secs
        return out

    def close(self) -> None:
        if self._it is not None:
            self._it.close()


def run_steps(train: Callable, state: trainer.TrainState, next_batch: Callable[[], Any], n: int):
    """n training steps; returns (state, last loss, seconds until both are ready)."""
    t = time.perf_counter()
    loss = None
    for _ in range(n):
        state, loss = train(state, next_batch())
    jax.block_until_ready((state, loss))
    return state, loss, time.perf_counter() - t


@dataclasses.dataclass
class Session:
    """What the cases run in one process share."""

    sizes: Sizes
    monitor: CompileMonitor
    pipeline: Pipeline
    compile_only: bool = False  # stop each case after its first (compiling) call


def train_case(model: LIIF, session: Session) -> Result:
    sizes, monitor, pipeline = session.sizes, session.monitor, session.pipeline
    tx = trainer.make_optimizer(base_config(model.spec, {}, None), steps_per_epoch=1000)
    steps = trainer.compile_steps(model, tx, trainer.make_mesh())
    params = random_params(model, sizes.inp_size)
    make_state = lambda p: trainer.TrainState.create(model, tx, p)
    state = jax.jit(make_state, out_shardings=steps.replicated)(params)  # as train_lib does
    device_batch = trainer.to_global(pipeline.one_batch(), steps.batch)

    compile_mark = monitor.mark()
    state, _, first = run_steps(steps.train, state, lambda: device_batch, 1)
    after_first = monitor.mark()
    if session.compile_only:
        return {"compile_s": after_first[0] - compile_mark[0], "first_call_s": first}
    state, _, _ = run_steps(steps.train, state, lambda: device_batch, sizes.warmup)
    state, _, model_secs = run_steps(steps.train, state, lambda: device_batch, sizes.steps)

    it = pipeline.iterator()
    from_pipeline = lambda: trainer.to_global(next(it), steps.batch)
    state, _, _ = run_steps(steps.train, state, from_pipeline, sizes.warmup)
    state, loss, e2e_secs = run_steps(steps.train, state, from_pipeline, sizes.steps)
    return {
        "spec": model.spec,
        "compile_s": after_first[0] - compile_mark[0],
        "first_call_s": first,
        "model_only": rate(sizes.steps, model_secs),
        "pipeline": pipeline.stats,
        "end_to_end": rate(sizes.steps, e2e_secs),
        "final_loss": float(loss),
        "compiles_after_first_call": monitor.count - after_first[1],
    }


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def render_case(name: str, model: LIIF, session: Session) -> Result:
    sizes, monitor = session.sizes, session.monitor
    in_hw, out_hw = sizes.renders[name]
    params = jax.device_put(random_params(model, sizes.inp_size))
    img = np.random.default_rng(0).random((*in_hw, 3), dtype=np.float32)
    mlp_dtype = jnp.bfloat16 if _RENDER_MLP.value == "bfloat16" else None
    decoder = render.resolve_decoder(model, _DECODER.value)
    tile = sizes.tile
    upscale = lambda: render.upscale(model, params, img, out_hw, sizes.batch_queries, tile, mlp_dtype, decoder)

    compile_mark = monitor.mark()
    if tile is None:  # chosen by memory, in the compiling call: its programs are the render's
        tile = render.choose_tile(model, params, in_hw, out_hw, sizes.batch_queries, 1, True, mlp_dtype, decoder)
    first = seconds(upscale)
    after_first = monitor.mark()
    if session.compile_only:
        return {"compile_s": after_first[0] - compile_mark[0], "first_call_s": first}
    times = [seconds(upscale) for _ in range(sizes.render_repeats)]
    ms = 1e3 * float(np.mean(times))
    return {
        "spec": model.spec,
        "in_hw": list(in_hw),
        "out_hw": list(out_hw),
        "batch_queries": sizes.batch_queries,
        "tile": tile,
        "tile_by_memory": sizes.tile is None,
        "decoder": decoder,
        "render_mlp_dtype": _RENDER_MLP.value,
        "tiles": render.plan(model, in_hw, out_hw, tile, decoder).n_tiles,
        "compile_s": after_first[0] - compile_mark[0],
        "first_call_s": first,
        "ms": ms,
        "ms_min": 1e3 * min(times),
        "repeats": sizes.render_repeats,
        "megapixels_per_s": out_hw[0] * out_hw[1] / 1e3 / ms,
        "compiles_after_first_call": monitor.count - after_first[1],
    }


# ---------------------------------------------------------------------------------------------
# Running cases
# ---------------------------------------------------------------------------------------------


def device_info() -> Result:
    dev = jax.devices()[0]
    return {
        "device": device_slug(dev.platform, dev.device_kind),
        "device_kind": dev.device_kind,
        "platform": dev.platform,
        "device_count": jax.device_count(),
        "host_cpus": os.cpu_count(),
        "jax_version": jax.__version__,
    }


def run_case(case: str, dtype: str, session: Session) -> Result:
    kind, model_key = CASES[case]
    model = build_model(session.sizes.models[model_key], trainer.compute_dtype(dtype))
    with precision(dtype):
        result = train_case(model, session) if kind == "train" else render_case(case, model, session)
    return {
        "model": MODEL_NAMES[model_key],
        **result,
        "peak_bytes": peak_bytes(),
        "host_peak_rss_bytes": host_peak_rss_bytes(),
    }


def run_here(case: str, dtype: str, session: Session) -> Result:
    """One case in this process; a failure is recorded, so that the other cases still run."""
    try:
        return run_case(case, dtype, session)
    except Exception as e:  # noqa: BLE001 - reported in the results, the run goes on
        traceback.print_exc()
        return {"error": f"{type(e).__name__}: {e}"}


def run_isolated(case: str, dtype: str) -> tuple[Result, Result | None]:
    """One case in fresh processes (same flags): one compiles into a persistent compilation cache,
    the next loads from it and measures. (result, device info of the measuring process)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "JAX_COMPILATION_CACHE_DIR": os.path.join(tmp, "cache"),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        }
        compiled, _ = run_child(case, dtype, env, pathlib.Path(tmp) / "compile.json", ["--compile_only"])
        if "error" in compiled:
            return compiled, None
        result, info = run_child(case, dtype, env, pathlib.Path(tmp) / "case.json", [])
    if "error" not in result:
        result.update(
            {
                "compile_s": compiled["compile_s"],
                "first_call_s": compiled["first_call_s"],
                "compiles_in_measuring_process": result.pop("cache_misses"),
                "peak_bytes_with_compile": compiled["peak_bytes"],
                "host_peak_rss_bytes_with_compile": compiled["host_peak_rss_bytes"],
            }
        )
    return result, info


def run_child(
    case: str, dtype: str, env: dict[str, str], out: pathlib.Path, extra: list[str]
) -> tuple[Result, Result | None]:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        *sys.argv[1:],
        *extra,
        f"--run_one={case}:{dtype}",
        f"--run_one_out={out}",
    ]
    rc = subprocess.run(cmd, check=False, env=env).returncode
    if rc or not out.exists():
        return {"error": f"the case's process exited with code {rc}; its output is above"}, None
    payload = json.loads(out.read_text())
    return payload["result"], payload["device"]


def workers(n: int) -> str:
    return f"{n} grain worker{'' if n == 1 else 's'}"


def describe(case: str, dtype: str, r: Result) -> str:
    """One progress line."""
    head = f"[{dtype}] {case}:"
    if "error" in r:
        return f"{head} FAILED: {r['error']}"
    mem = f", peak {r['peak_bytes'] / 1e9:.2f} GB" if r.get("peak_bytes") else ""
    if "end_to_end" in r:
        p, e = r["pipeline"], r["end_to_end"]
        return (
            f"{head} compile {r['compile_s']:.1f} s; model only {r['model_only']['ms_per_step']:.2f} ms/step; "
            f"pipeline {p['samples_per_s']:.0f} samples/s ({workers(p['num_workers'])}); end to end "
            f"{e['ms_per_step']:.2f} ms/step ({e['steps_per_s']:.1f} steps/s){mem}"
        )
    return (
        f"{head} compile {r['compile_s']:.1f} s; {r['ms']:.1f} ms per upscale ({r['megapixels_per_s']:.3g} Mpx/s){mem}"
    )


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the comparison table, with the official PyTorch figure on one H100 80GB."""

    case: str
    measure: str  # 'end_to_end', 'model_only' or 'render'
    official: str
    official_ms: float | None  # the official figure compared with
    target: str
    target_ms: float | None


ROWS = (
    Row("train_edsr_baseline", "end_to_end", "27.2 ms (36.7 steps/s)", 27.2, ">= 180 steps/s", 1e3 / 180),
    Row("train_edsr_baseline", "model_only", "24.1 ms (20.1 ms TF32)", 20.1, "<= 4 ms", 4.0),
    Row("train_rdn", "end_to_end", "91.5 ms (10.9 steps/s)", 91.5, ">= 33 steps/s", 1e3 / 33),
    Row("train_rdn", "model_only", "-", None, "-", None),
    Row("render_x4_div2k", "render", "473 ms, 0.78 GB", 473.0, "<= 40 ms", 40.0),
    Row("render_x30_3840", "render", "2.26 s, 2.4 GB", 2260.0, "<= 226 ms", 226.0),
    Row("render_x4_rdn_div2k", "render", "562 ms", 562.0, "<= 60 ms", 60.0),
    Row("render_x2_8k", "render", "-", None, "completes (bounded memory)", None),
    Row("train_edsr_baseline_lte", "end_to_end", "-", None, "-", None),
    Row("train_edsr_baseline_lte", "model_only", "-", None, "-", None),
    Row("train_swinir_lte", "end_to_end", "-", None, "-", None),
    Row("train_swinir_lte", "model_only", "-", None, "-", None),
    Row("render_x4_lte_div2k", "render", "-", None, "-", None),
    Row("render_x4_swinir_lte_div2k", "render", "-", None, "-", None),
)

# top-level key -> (case, measure, field): the float32 (TF32) figures.
HEADLINE = {
    "train_edsr_baseline_steps_per_s": ("train_edsr_baseline", "end_to_end", "steps_per_s"),
    "train_edsr_baseline_model_only_ms": ("train_edsr_baseline", "model_only", "ms_per_step"),
    "train_rdn_steps_per_s": ("train_rdn", "end_to_end", "steps_per_s"),
    "train_rdn_model_only_ms": ("train_rdn", "model_only", "ms_per_step"),
    "render_x4_div2k_ms": ("render_x4_div2k", None, "ms"),
    "render_x30_3840_ms": ("render_x30_3840", None, "ms"),
    "render_x4_rdn_div2k_ms": ("render_x4_rdn_div2k", None, "ms"),
    "render_x2_8k_ms": ("render_x2_8k", None, "ms"),
}


def figure(result: Result | None, measure: str | None, field: str) -> float | None:
    if not result or "error" in result:
        return None
    return (result[measure] if measure else result)[field]


def headline(per_dtype: dict[str, dict[str, Result]]) -> dict[str, float | None]:
    f32 = per_dtype.get("float32", {})
    return {key: figure(f32.get(case), measure, field) for key, (case, measure, field) in HEADLINE.items()}


def row_label(row: Row, sizes: Sizes) -> str:
    model = MODEL_NAMES[CASES[row.case][1]]
    if row.measure != "render":
        return f"{model} train step, {row.measure.replace('_', ' ')}"
    (h, w), (oh, ow) = sizes.renders[row.case]
    return f"Render x{oh / h:g} {h}x{w} -> {oh}x{ow}, {model}"


def ours_ms(row: Row, r: Result | None) -> float | None:
    if row.measure == "render":
        return figure(r, None, "ms")
    return figure(r, row.measure, "ms_per_step")


def cell(row: Row, r: Result | None) -> str:
    if r is None:
        return "-"
    if "error" in r:
        return "failed"
    ms = ours_ms(row, r)
    text = f"{ms:.1f} ms" if ms >= 10 else f"{ms:.2f} ms"
    if row.measure == "end_to_end":
        text += f" ({1e3 / ms:.1f} steps/s)"
    if row.measure != "model_only" and r.get("peak_bytes"):
        text += f", {r['peak_bytes'] / 1e9:.2f} GB"
    return text


def comparison(row: Row, results: list[Result | None], comparable: str | None) -> tuple[str, str]:
    """(speed-up over the official figure, target met) for each dtype, or why not meaningful."""
    if comparable:
        return comparable, comparable
    mss = [ours_ms(row, r) for r in results]
    speed = " / ".join("-" if ms is None or row.official_ms is None else f"{row.official_ms / ms:.2f}x" for ms in mss)
    met = " / ".join(
        "-" if ms is None or row.target_ms is None else "yes" if ms <= row.target_ms else "no" for ms in mss
    )
    return speed, met


def header(report: Result, sizes: Sizes) -> list[str]:
    """Title, command, provenance and settings of the markdown report."""
    per_case = (
        "yes: one process per case compiles into a persistent compilation cache, a fresh one loads the "
        "programs from it and measures, so the peak is the run's own (the compiling process's peak is apart)"
        if report["isolated"]
        else "no (cumulative over the run, compilation included)"
    )
    smoke = [
        "**Smoke run**: `--size small` shrinks images, crops, batch, queries, render sizes, steps and model "
        "widths, and compiles without XLA optimisation; these are not performance figures.",
        "",
    ]
    return [
        f"# liif_jax benchmark on {report['device_kind']} ({report['size']} run)",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Date (UTC): {report['date_utc']}. JAX {report['jax_version']}, {report['device_count']} x "
        f"{report['device_kind']} ({report['platform']}), {report['host_cpus']} host CPUs. "
        f"Peak memory per case: {per_case}.",
        "",
        *(smoke if report["smoke_run"] else []),
        f"Training: batch {sizes.batch}, {sizes.inp_size} px inputs, {sizes.sample_q} queries, "
        f"{workers(sizes.num_workers)} over {sizes.n_images} synthetic {sizes.image_hw[0]}x{sizes.image_hw[1]} "
        f"uint8 images in memory (a source of {SOURCE_LEN} elements, as DIV2K x20); {sizes.steps} timed steps "
        f"after {sizes.warmup} warm-up. Rendering (`render.upscale`, tiles of "
        f"{'the size chosen by memory' if sizes.tile is None else sizes.tile or 'the whole'} input pixels, "
        f"{sizes.batch_queries} queries per step, "
        f"sizes H x W): mean of {sizes.render_repeats} after one warm-up. Compilation excluded (see below). "
        "float32 uses TF32 (`jax.default_matmul_precision('tensorfloat32')`, GPU only); bfloat16 is bf16 "
        "compute, float32 params. Speed-up = official time / ours.",
        "",
    ]


def markdown(report: Result, sizes: Sizes) -> str:
    dtypes = list(report["dtypes"])
    small, cpu = report["smoke_run"], report["platform"] != "gpu"
    comparable = f"n/a ({'small ' if small else ''}{report['platform'].upper()} run)" if small or cpu else None
    names = [f"{d} (TF32)" if d == "float32" else d for d in dtypes]
    lines = [
        *header(report, sizes),
        f"| Measure | Official PyTorch (1x H100 80GB) | Target | {' | '.join(names)} "
        f"| Speed-up vs official ({' / '.join(dtypes)}) | Target met |",
        "|---|---|---|" + "---|" * len(dtypes) + "---|---|",
    ]
    for row in ROWS:
        results = [report["dtypes"][d].get(row.case) for d in dtypes]
        if all(r is None for r in results):
            continue
        speed, met = comparison(row, results, comparable)
        lines.append(
            f"| {row_label(row, sizes)} | {row.official} | {row.target} | "
            + " | ".join(cell(row, r) for r in results)
            + f" | {speed} | {met} |"
        )
    return "\n".join(lines + ["", *details(report)]) + "\n"


def details(report: Result) -> list[str]:
    """Compile times, recompilations, the data pipeline and memory of every case."""
    lines = [
        "| Case | dtype | XLA compile (s) | First call (s) | Compilations after the first call | Pipeline alone "
        "| Peak memory | Peak with compilation | Host peak RSS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for dtype, cases in report["dtypes"].items():
        for case, r in cases.items():
            if "error" in r:
                lines.append(f"| {case} | {dtype} | failed: {r['error']} | | | | | | |")
                continue
            p = r.get("pipeline")
            pipe = "-"
            if p:
                one = p["per_worker_samples_per_s"]
                pipe = (
                    f"{p['samples_per_s']:.0f} samples/s, {workers(p['num_workers'])}; one worker: "
                    f"{one['bicubic']:.0f} bicubic, {one['realesrgan']:.0f} Real-ESRGAN-degraded"
                )
            gb = lambda key: f"{r[key] / 1e9:.2f} GB" if r.get(key) else "n/a"
            lines.append(
                f"| {case} | {dtype} | {r['compile_s']:.1f} | {r['first_call_s']:.1f} | "
                f"{r['compiles_after_first_call']} | {pipe} | {gb('peak_bytes')} | "
                f"{gb('peak_bytes_with_compile')} | {gb('host_peak_rss_bytes')} |"
            )
    return lines


def write_report(report: Result, sizes: Sizes, out: pathlib.Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"benchmark_{report['device']}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report, sizes)
    stem.with_suffix(".md").write_text(table)
    print(f"wrote {stem}.json and {stem}.md", flush=True)
    return table


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def check_flags() -> None:
    for name, given, known in (("dtypes", _DTYPES.value, DTYPES), ("cases", _CASES.value, CASES)):
        unknown = sorted(set(given) - set(known))
        if unknown or not given:
            raise app.UsageError(f"--{name}: unknown or empty {unknown}; choose from {', '.join(known)}")


@contextlib.contextmanager
def open_session(sizes: Sizes) -> Iterator[Session]:
    session = Session(sizes, CompileMonitor(), Pipeline(sizes))
    try:
        yield session
    finally:
        session.pipeline.close()


def run_one(sizes: Sizes) -> None:
    """`--run_one CASE:DTYPE`: the child side of `--isolate`."""
    case, dtype = _RUN_ONE.value.split(":")
    with open_session(sizes) as session:
        session.compile_only = _COMPILE_ONLY.value
        result = run_here(case, dtype, session)
        result["cache_misses"] = session.monitor.cache_misses
    pathlib.Path(_RUN_ONE_OUT.value).write_text(json.dumps({"result": result, "device": device_info()}))


def run_all(sizes: Sizes, isolate: bool) -> tuple[dict[str, dict[str, Result]], Result | None]:
    """Every case for every dtype: ({dtype: {case: result}}, device info or None if none reported)."""
    per_dtype: dict[str, dict[str, Result]] = {d: {} for d in _DTYPES.value}
    infos = []
    with contextlib.ExitStack() as stack:
        session = None if isolate else stack.enter_context(open_session(sizes))  # isolated: no JAX here
        for dtype in _DTYPES.value:
            for case in _CASES.value:
                print(f"[{dtype}] {case} ...", flush=True)
                if session is None:
                    result, info = run_isolated(case, dtype)
                else:
                    result, info = run_here(case, dtype, session), device_info()
                per_dtype[dtype][case] = result
                infos.append(info)
                print(describe(case, dtype, result), flush=True)
    return per_dtype, next((i for i in infos if i), None)


def build_report(per_dtype: dict[str, dict[str, Result]], info: Result, sizes: Sizes, isolate: bool) -> Result:
    """The JSON document: device, float32 headline figures, provenance, then every result by dtype."""
    return {
        **info,
        **headline(per_dtype),
        "size": sizes.name,
        "smoke_run": sizes.name == "small",  # small runs check the code paths; not performance figures
        "command": shlex.join(["python", "experiments/benchmark.py", *sys.argv[1:]]),
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "isolated": isolate,
        "settings": {k: v for k, v in dataclasses.asdict(sizes).items() if k not in ("renders", "models")},
        "official_pytorch_h100": {f"{row.case}/{row.measure}": row.official for row in ROWS},
        "dtypes": per_dtype,
    }


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    check_flags()
    sizes = sizes_from_flags()
    if sizes.name == "small":
        compile_fast_for_small_runs()
    if _RUN_ONE.value:
        return run_one(sizes)
    isolate = _ISOLATE.value if _ISOLATE.value is not None else sizes.name == "full"
    per_dtype, info = run_all(sizes, isolate)
    if info is None:
        sys.exit("error: every case failed before it could report its device; see the output above")
    print(write_report(build_report(per_dtype, info, sizes, isolate), sizes, pathlib.Path(_OUT.value)), flush=True)
    if any("error" in r for cases in per_dtype.values() for r in cases.values()):
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
