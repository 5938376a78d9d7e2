"""Training: one jit-compiled, data-parallel step over a 1-D device mesh, orbax checkpoints that
hold params, optimizer state and the data iterator (`run_checkpoints`), so a killed run resumes
exactly. SIGTERM and Ctrl-C stop a run at the end of a step, with a checkpoint there (`stopping`).

Data parallelism is `jax.jit` over a `("data",)` mesh of every device (params replicated, batch
sharded); XLA inserts the gradient all-reduce. This is what `jax.pmap` is now built on, without
its per-device programming model.

On several hosts (`jax.distributed.initialize()` first: `python -m liif_jax.train --distributed`)
every process runs this same program. Each computes only the examples of the global batch that its
own devices hold (`local_rows`) and feeds them with `jax.make_array_from_process_local_data`, so a
global step sees the same examples, and the same loss, whatever the number of processes and
devices. Params and optimizer state are replicated; orbax writes them once, and each process's
data position. Only process 0 writes metrics, TensorBoard and the final table.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import signal
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from liif_jax.formats import checkpoints
from liif_jax.models import Model, build_model, describe
from liif_jax.models.spec import check_spec
from liif_jax.training import checkpointing, final_eval, inputs
from liif_jax.training.stopping import Stopped, StopRequest
from liif_jax.training.train_state import (
    TrainState,
    compute_copy,
    config_schedule,
    make_optimizer,
)
from liif_jax.training.writers import MetricWriter, format_duration

Batch = dict[str, Any]
DATA_AXIS = "data"


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what is kept."""


def make_mesh() -> jax.sharding.Mesh:
    """1-D mesh of all devices. Auto axes: jit partitions the step from the in/out shardings."""
    return jax.make_mesh((jax.device_count(),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def l1_loss(model: Model, params, batch: Batch, rng: jax.Array | None = None) -> jax.Array:
    """The official loss: L1 averaged over every element (nn.L1Loss). `rng`: the model in training
    mode (SwinIR's stochastic depth)."""
    pred = model.apply(params, batch["inp"], batch["coord"], batch["cell"], rng)
    return jnp.mean(jnp.abs(pred - batch["gt"]))


def step_rng(step: jax.Array) -> jax.Array:
    """The training-mode randomness of a step (SwinIR's stochastic depth): a function of the step
    number, so that a resumed run draws what the uninterrupted one would."""
    return jax.random.fold_in(jax.random.key(0), step)


def train_step(model: Model, tx: optax.GradientTransformation, state: TrainState, batch: Batch):
    """One optimizer step. The loss and gradients come from `state.compute_params` when the state
    has them (bfloat16); their gradients, cast to float32, update the float32 params."""
    loss_fn = functools.partial(l1_loss, model, rng=step_rng(state.step))
    forward = state.params if state.compute_params is None else state.compute_params
    loss, grads = jax.value_and_grad(loss_fn)(forward, batch)
    grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    compute = None if state.compute_params is None else compute_copy(model, params)
    return TrainState(state.step + 1, params, opt_state, compute), loss


def batch_psnr(model: Model, params, batch: Batch) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The official validation metric on one batch: PSNR of clamped [0, 1] RGB over all queries
    of the examples with `weight` 1 (padding has 0), their number, and the PSNR of the batch's
    `bicubic` upsampling at the same queries (NaN without one)."""
    gt = batch["gt"] * 0.5 + 0.5
    count = jnp.sum(batch["weight"])

    def psnr(pred: jax.Array) -> jax.Array:
        mse = jnp.mean((jnp.clip(pred, 0, 1) - gt) ** 2, axis=(1, 2))  # every example has as many queries
        return -10 * jnp.log10(jnp.sum(batch["weight"] * mse) / count)

    ours = psnr(model.apply(params, batch["inp"], batch["coord"], batch["cell"]) * 0.5 + 0.5)
    bicubic = psnr(batch["bicubic"] * 0.5 + 0.5) if "bicubic" in batch else jnp.float32(jnp.nan)
    return ours, count, bicubic


MODEL_KEYS = ("inp", "coord", "cell", "gt")
VAL_KEYS = (*MODEL_KEYS, "weight")


def to_global(batch: Batch, sharding: NamedSharding, keys: tuple[str, ...] = MODEL_KEYS) -> Batch:
    """This process's rows of the batch (`local_rows`) -> one global array sharded over the mesh."""
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(batch[k])) for k in keys}


def local_rows(sharding: NamedSharding, batch_size: int, what: str = "data.train.batch_size") -> list[int]:
    """The rows of a global batch that this process's devices hold, in the order
    `jax.make_array_from_process_local_data` takes them (increasing)."""
    if batch_size % jax.device_count():
        raise ValueError(
            f"{what} {batch_size} must be a multiple of the {jax.device_count()} devices; set --config.{what}"
        )
    index_map = sharding.addressable_devices_indices_map((batch_size,))
    return sorted({r for (rows,) in index_map.values() for r in range(*rows.indices(batch_size))})


@dataclasses.dataclass
class Steps:
    """The jitted functions of one run, with their shardings."""

    train: Callable
    eval_psnr: Callable
    replicated: NamedSharding
    batch: NamedSharding


def compile_steps(model: Model, tx: optax.GradientTransformation, mesh: jax.sharding.Mesh) -> Steps:
    repl, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P(DATA_AXIS))
    train = jax.jit(
        lambda s, b: train_step(model, tx, s, b),
        in_shardings=(repl, sharded),
        out_shardings=(repl, repl),
        donate_argnums=0,
    )
    evaluate = jax.jit(lambda p, b: batch_psnr(model, p, b), in_shardings=(repl, sharded), out_shardings=repl)
    return Steps(train, evaluate, repl, sharded)


def compute_dtype(name: str):
    return {"float32": None, "bfloat16": jnp.bfloat16}[name]


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


def check_config(config: ml_collections.ConfigDict) -> None:
    """Refuses a config that cannot train (a model spec off the schema, no steps to run), before
    any data is read or anything is written."""
    check_spec(config.model.to_dict(), "config.model")
    positive = {
        "data.train.batch_size": config.data.train.batch_size,
        "log_every_steps": config.log_every_steps,
        "keep_checkpoints": config.keep_checkpoints,
        "num_steps": config.num_steps,
        "eval_every_steps": config.eval_every_steps,
        "checkpoint_every_steps": config.checkpoint_every_steps,
    }
    if config.num_steps is None:
        positive["optimizer.epochs"] = config.optimizer.epochs
    for key, value in positive.items():
        if value is not None and not (type(value) is int and value > 0):
            raise ValueError(f"config.{key} must be a positive integer, got {value!r}")


def check_workdir(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
    """Refuses to mix runs (a workdir's saved config must describe the same model) and to train in a
    params-only checkpoint directory (what `convert` writes), before anything is written there."""
    if not workdir.exists():
        return
    if not workdir.is_dir():
        raise TrainingError(f"--workdir {workdir} is a file, not a folder")
    for folder in (workdir, workdir / "checkpoints"):
        steps = [p for p in folder.iterdir() if p.name.isdigit() and p.is_dir()] if folder.is_dir() else []
        if any(
            (p / checkpoints.PARAMS).is_dir() and not (p / checkpointing.OPT_STATE).is_dir() for p in steps + [workdir]
        ):
            raise TrainingError(
                f"--workdir {workdir} holds a params-only checkpoint (python -m liif_jax.convert made it; use it with "
                "demo or evaluate), not a training run; give train a new --workdir"
            )
    saved = workdir / "config.json"
    if saved.exists():
        old = json.loads(saved.read_text())
        if old.get("model") != json.loads(json.dumps(config.model.to_dict())):  # tuples as JSON lists
            raise TrainingError(
                f"{workdir} holds a run of another model:\n  saved:   {json.dumps(old.get('model'))}\n"
                f"  current: {json.dumps(config.model.to_dict())}\nUse a new --workdir, or the same config to resume."
            )


def spec_difference(config_spec: Any, init_spec: Any, where: str = "model", both: bool = False) -> str | None:
    """The first field where two model specs differ (`model.args.x: config 32, init 64`), or None;
    with `both`, only among the fields that both specs set."""
    if isinstance(config_spec, dict) and isinstance(init_spec, dict):
        for key in sorted(set(config_spec) | set(init_spec)):
            if key not in init_spec or key not in config_spec:
                if both:
                    continue
                value, side = (config_spec[key], "config") if key in config_spec else (init_spec[key], "init")
                other = "init" if side == "config" else "config"
                return f"{where}.{key}: {side} {json.dumps(value)}, {other} its default"
            found = spec_difference(config_spec[key], init_spec[key], f"{where}.{key}", both)
            if found:
                return found
        return None
    if config_spec != init_spec:
        return f"{where}: config {json.dumps(config_spec)}, init {json.dumps(init_spec)}"
    return None


def init_params(config: ml_collections.ConfigDict) -> Any | None:
    """The params that a new run starts from: those of the model `config.init` names (a
    `pretrained:NAME`, a workdir, a checkpoint or an official/LTE .pth), refused when its model
    is not the config's; None without `init` (random initialisation)."""
    source = config.get("init")
    if not source:
        return None
    model, params = checkpoints.load_model(source)
    as_json = lambda spec: json.loads(json.dumps(spec))  # tuples as lists
    ours, theirs = as_json(config.model.to_dict()), as_json(model.spec)
    # A field that one spec leaves at its default may match: the parameter shapes decide.
    difference = spec_difference(ours, theirs, both=True)
    if difference is None:
        shapes = lambda tree: jax.tree.map(lambda x: tuple(x.shape), tree)
        expected = shapes(jax.eval_shape(build_model(ours).init, jax.random.key(0)))
        if expected != shapes(params):
            difference = spec_difference(ours, theirs) or "the parameter shapes differ"
    if difference:
        raise TrainingError(f"--init {source} is another model than the config's: {difference}")
    return params


def stop_point(step: int, stop: StopRequest) -> bool:
    """True at the step at which the run stops on a signal and saves a checkpoint. One process:
    the first step that ends after SIGTERM or SIGINT (`stop`). Several: JAX's preemption service
    catches SIGTERM (a scheduler's notice; `stop` turns SIGINT into one) in any process and agrees
    on a step at which all of them stop, so that all save the same checkpoint."""
    if jax.process_count() == 1:
        return stop.requested
    try:
        return multihost_utils.reached_preemption_sync_point(step)
    except RuntimeError:  # the preemption service is off (jax_enable_preemption_service)
        return False


def evaluate_val(steps: Steps, params, val_ds, stop: StopRequest | None = None) -> tuple[float, float] | None:
    """(model, bicubic) mean PSNR over the validation batches, weighted by batch size as the official
    Averager; the padding of the last batch (weight 0) is left out, so the value is the same on any
    layout. Bicubic is NaN when the batches have no `bicubic`. None when a one-process run is asked
    to stop (`stop`) before the end: it stops without waiting."""
    total, bicubic_total, n = 0.0, 0.0, 0.0
    for batch in val_ds:
        if stop is not None and stop.requested and jax.process_count() == 1:
            return None
        keys = VAL_KEYS + (("bicubic",) if "bicubic" in batch else ())
        psnr, count, bicubic = jax.device_get(steps.eval_psnr(params, to_global(batch, steps.batch, keys)))
        total += float(psnr) * float(count)
        bicubic_total += float(bicubic) * float(count)
        n += float(count)
    return total / max(n, 1.0), bicubic_total / max(n, 1.0)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict[str, float]:
    """Trains (or resumes) the run in `workdir`; returns the last logged metrics.

    SIGTERM and SIGINT (Ctrl-C) stop it at the end of the current step with a checkpoint there and
    raise `stopping.Stopped` (see `liif_jax.training.stopping`); a second signal ends the process at once.
    """
    workdir = pathlib.Path(workdir).resolve()
    with StopRequest(forward_sigint=jax.process_count() > 1) as stop:
        return _train_and_evaluate(config, workdir, stop)


def _train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: pathlib.Path, stop: StopRequest
) -> dict[str, float]:
    say = print if jax.process_index() == 0 else lambda *args, **kwargs: None  # one progress log
    check_config(config)
    check_workdir(workdir, config)
    resuming = any(p.name.isdigit() for p in (workdir / "checkpoints").glob("*"))
    initial = None if resuming else init_params(config)  # refused before anything is written
    model = build_model(config.model.to_dict(), compute_dtype(config.compute_dtype))
    mesh = make_mesh()
    batch_sharding = NamedSharding(mesh, P(DATA_AXIS))
    cache_root = workdir / "cache"
    it, steps_per_epoch = inputs.train_iterator(
        config, local_rows(batch_sharding, config.data.train.batch_size), cache_root
    )
    try:
        val_cfg = config.data.get("val")
        val_rows = None if val_cfg is None else local_rows(batch_sharding, val_cfg.batch_size, "data.val.batch_size")
        val_ds = None if val_cfg is None else inputs.val_dataset(config, val_rows, cache_root)
        for folder in inputs.cache_dirs(config, cache_root):
            say(inputs.describe_cache(folder), flush=True)
        return _train_loop(config, workdir, stop, model, mesh, it, steps_per_epoch, val_ds, cache_root, say, initial)
    finally:
        it.close()  # stops the grain workers, however the run ends


def _train_loop(
    config, workdir, stop, model, mesh, it, steps_per_epoch, val_ds, cache_root, say, initial
) -> dict[str, float]:
    num_steps = config.num_steps or config.optimizer.epochs * steps_per_epoch
    checkpoint_every = config.checkpoint_every_steps or steps_per_epoch
    eval_every = config.eval_every_steps or steps_per_epoch
    tx = make_optimizer(config, steps_per_epoch)
    schedule = config_schedule(config, steps_per_epoch)
    steps = compile_steps(model, tx, mesh)

    def init_state(rng):
        return TrainState.create(model, tx, model.init(rng, config.data.train.wrapper.args.get("inp_size") or 48))

    init = jax.jit(init_state, out_shardings=steps.replicated)
    workdir.mkdir(parents=True, exist_ok=True)
    mngr = checkpointing.checkpoint_manager(workdir, config.keep_checkpoints)
    writer = None
    try:
        meta = checkpoints.make_meta(config.model.to_dict(), config=config.to_dict())
        start = mngr.latest_step()
        if start is None:
            if initial is None:
                state = init(jax.random.key(config.seed))
            else:  # the init model's params with a new optimizer
                create = lambda p: TrainState.create(model, tx, p)
                state = jax.jit(create, out_shardings=steps.replicated)(jax.device_put(initial, steps.replicated))
                say(f"starting from {config.init} with a new optimizer", flush=True)
            start = 0
        else:
            stop.where = f"before resuming; the last checkpoint is still {workdir / 'checkpoints' / str(start)}"
            abstract = jax.eval_shape(init, jax.random.key(0))
            abstract = jax.tree.map(
                lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=steps.replicated), abstract
            )
            try:
                params, opt_state = checkpointing.restore(mngr, start, abstract.params, abstract.opt_state, it)
            except Stopped:
                raise
            except Exception as err:  # another model's or a damaged checkpoint: whatever orbax or grain raise
                text = " ".join(str(err).split())[:200]
                raise TrainingError(
                    f"cannot resume from {workdir / 'checkpoints' / str(start)} ({type(err).__name__}: {text}); it holds "
                    "another model or is damaged. Use a new --workdir, or the config that made it."
                ) from err
            state = jax.jit(lambda p, o: TrainState.create(model, tx, p, o, start), out_shardings=steps.replicated)(
                params, opt_state
            )
            say(f"resumed from {workdir / 'checkpoints' / str(start)}", flush=True)
        if jax.process_index() == 0:  # once the run is known to fit this workdir
            tmp = workdir / "config.json.tmp"  # atomic: the other processes read it in check_workdir
            tmp.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
            os.replace(tmp, workdir / "config.json")

        writer = MetricWriter(workdir, start)
        n_params = sum(x.size for x in jax.tree.leaves(state.params))
        say(
            f"{workdir.name} ({describe(model)}): {n_params / 1e6:.2f} M params, "
            f"{jax.process_count()} process(es) x {jax.local_device_count()} {jax.devices()[0].platform} device(s), "
            f"global batch {config.data.train.batch_size}, "
            f"{steps_per_epoch} steps/epoch, steps {start} -> {num_steps}",
            flush=True,
        )
        last: dict[str, float] = {}
        last_val: float | None = None
        losses: list[jax.Array] = []
        t_last, step_last = time.perf_counter(), start
        t_start, step_start = t_last, start
        stop.defer = True  # from here a signal stops at the end of a step, with a checkpoint
        for step in range(start + 1, num_steps + 1):
            state, loss = steps.train(state, to_global(next(it), steps.batch))
            losses.append(loss)
            stopping = stop_point(step, stop)
            log_now = step % config.log_every_steps == 0 or step == num_steps or stopping
            ckpt_now = step % checkpoint_every == 0 or step == num_steps or stopping
            eval_now = val_ds is not None and (step % eval_every == 0 or step == num_steps) and not stopping
            if step == start + 1 and not log_now:  # a sign of life before the first progress line
                jax.block_until_ready(loss)
                say(
                    f"step {step}/{num_steps} compiled and ran in {format_duration(time.perf_counter() - t_start)}; "
                    f"progress every {config.log_every_steps} steps",
                    flush=True,
                )
            if not (log_now or ckpt_now or eval_now):
                continue
            values = np.asarray(jax.device_get(losses))
            if not np.all(np.isfinite(values)):
                bad = step - len(values) + int(np.argmin(np.isfinite(values)))
                raise TrainingError(
                    f"loss is {values[~np.isfinite(values)][0]} at step {bad}; stopped without saving. "
                    f"The last good checkpoint is step {mngr.latest_step()} in {workdir / 'checkpoints'}; "
                    "lower optimizer.lr or check the data."
                )
            if log_now:
                now = time.perf_counter()
                rate = (step - step_last) / (now - t_last)
                overall = (step - step_start) / (now - t_start)
                lr = float(schedule(step - 1))
                last = {"loss": float(values.mean()), "lr": lr, "steps_per_s": rate}
                writer.write(step, **last)
                eta = format_duration((num_steps - step) / overall) if overall > 0 else "?"
                epoch = (step - 1) // steps_per_epoch + 1
                say(
                    f"step {step}/{num_steps} (epoch {epoch})  loss {last['loss']:.4f}  lr {lr:.2e}  "
                    f"{rate:.2f} steps/s  ETA {eta}",
                    flush=True,
                )
                t_last, step_last = now, step
            losses = []
            if eval_now:
                measured = evaluate_val(steps, state.params, val_ds, stop)
                if measured is None:  # a signal came during validation: stop now, without its value
                    stopping = True
                else:
                    val, bicubic = measured
                    last_val = last["val_psnr"] = val
                    writer.write(step, val_psnr=val)
                    writer.plot_curves()
                    versus = "" if np.isnan(bicubic) else f" (bicubic {bicubic:.2f} dB on the same crops)"
                    say(f"step {step}/{num_steps}  val_psnr {val:.2f} dB{versus}", flush=True)
            if ckpt_now or stopping:
                checkpointing.save(
                    mngr,
                    step,
                    state.params,
                    state.opt_state,
                    it,
                    meta,
                    None if last_val is None else {"val_psnr": last_val},
                )
            if stopping:
                mngr.wait_until_finished()
                raise Stopped(
                    f"stopped at step {step}, checkpoint saved in {workdir / 'checkpoints' / str(step)}; "
                    "run the same command to resume",
                    stop.signum or signal.SIGTERM,
                )
        mngr.wait_until_finished()
        stop.defer = False
        stop.where = f"during the final evaluation; training is complete and saved (step {num_steps})"
        stop.raise_if_requested()
        if jax.process_count() == 1:
            recipe_steps, rate = config.optimizer.epochs * steps_per_epoch, last.get("steps_per_s")
            eta = format_duration((recipe_steps - num_steps) / rate) if rate and recipe_steps > num_steps else None
            final_eval.final_evaluation(
                config, model, state.params, workdir, final_eval.Progress(num_steps, recipe_steps, eta), cache_root
            )
        elif config.final_eval.scales:  # loading compare_with and a long evaluation need one process
            say(
                f"final evaluation skipped (several processes); on one host: python -m liif_jax.evaluate "
                f"--model {workdir} ...",
                flush=True,
            )
    finally:
        stop.defer = False
        mngr.close()
        if writer is not None:
            writer.close()
    return last
