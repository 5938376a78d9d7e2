"""Training: one jit-compiled, data-parallel step over a 1-D device mesh, orbax checkpoints that
hold params, optimizer state and the data iterator (`run_checkpoints`), so a killed run resumes exactly.

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
import time
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

from liif_jax import checkpoints, datasets, pipeline, run_checkpoints, shipped
from liif_jax.models import Model, build_model, describe
from liif_jax.spec import check_spec

Batch = dict[str, Any]
DATA_AXIS = "data"


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what is kept."""


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any


def make_mesh() -> jax.sharding.Mesh:
    """1-D mesh of all devices. Auto axes: jit partitions the step from the in/out shardings."""
    return jax.make_mesh((jax.device_count(),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def lr_schedule(lr: float, milestones_epochs: list[int], gamma: float, steps_per_epoch: int) -> optax.Schedule:
    """The official MultiStepLR, stepped per epoch, expressed in optimizer steps."""
    boundaries = {int(m) * steps_per_epoch: gamma for m in milestones_epochs}
    return optax.piecewise_constant_schedule(lr, boundaries)


def config_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
    opt = config.optimizer
    return lr_schedule(opt.lr, list(opt.milestones), opt.gamma, steps_per_epoch)


def make_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.GradientTransformation:
    if config.optimizer.name != "adam":
        raise ValueError(f"optimizer.name: only 'adam' (the official choice) is supported, got {config.optimizer.name!r}")
    # torch.optim.Adam defaults: betas (0.9, 0.999), eps 1e-8 outside the square root.
    return optax.adam(config_schedule(config, steps_per_epoch), b1=0.9, b2=0.999, eps=1e-8)


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
    loss_fn = functools.partial(l1_loss, model, rng=step_rng(state.step))
    loss, grads = jax.value_and_grad(loss_fn)(state.params, batch)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(state.step + 1, params, opt_state), loss


def batch_psnr(model: Model, params, batch: Batch) -> tuple[jax.Array, jax.Array]:
    """The official validation metric on one batch: PSNR of clamped [0, 1] RGB over all queries
    of the examples with `weight` 1 (padding has 0), and their number."""
    pred = jnp.clip(model.apply(params, batch["inp"], batch["coord"], batch["cell"]) * 0.5 + 0.5, 0, 1)
    gt = batch["gt"] * 0.5 + 0.5
    mse = jnp.mean((pred - gt) ** 2, axis=(1, 2))  # every example has as many queries
    count = jnp.sum(batch["weight"])
    return -10 * jnp.log10(jnp.sum(batch["weight"] * mse) / count), count


MODEL_KEYS = ("inp", "coord", "cell", "gt")
VAL_KEYS = (*MODEL_KEYS, "weight")


def to_global(batch: Batch, sharding: NamedSharding, keys: tuple[str, ...] = MODEL_KEYS) -> Batch:
    """This process's rows of the batch (`local_rows`) -> one global array sharded over the mesh."""
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(batch[k])) for k in keys}


def local_rows(sharding: NamedSharding, batch_size: int, what: str = "data.train.batch_size") -> list[int]:
    """The rows of a global batch that this process's devices hold, in the order
    `jax.make_array_from_process_local_data` takes them (increasing)."""
    if batch_size % jax.device_count():
        raise ValueError(f"{what} {batch_size} must be a multiple of the {jax.device_count()} devices; "
                         f"set --config.{what}")
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
# Data
# ---------------------------------------------------------------------------------------------


def train_iterator(
    config: ml_collections.ConfigDict, rows: list[int] | None = None
) -> tuple[pipeline.TrainIterator, int]:
    """(checkpointable iterator of this process's `rows` of each global batch, steps per epoch)."""
    cfg = config.data.train
    source = datasets.make_source(cfg.dataset.to_dict(), "data.train.dataset")
    wrapper = datasets.make_wrapper(cfg.wrapper.to_dict(), "data.train.wrapper")
    it = pipeline.make_train_dataset(source, wrapper, cfg.batch_size, config.seed, num_workers=config.num_workers, rows=rows)
    return it, pipeline.steps_per_epoch(len(source), cfg.batch_size)


def val_dataset(config: ml_collections.ConfigDict, rows: list[int] | None = None):
    cfg = config.data.get("val")
    if cfg is None:
        return None
    spec = cfg.dataset.to_dict()
    args = dict(spec.get("args") or {})
    repeat = args.pop("repeat", 1)  # the validation set repeats its crops itself (same batches each pass)
    source = datasets.make_source({**spec, "args": args}, "data.val.dataset")
    wrapper = datasets.make_wrapper(cfg.wrapper.to_dict(), "data.val.wrapper")
    return pipeline.make_val_dataset(source, cfg.batch_size, config.seed, wrapper, first_k=None, repeat=repeat, rows=rows)


# ---------------------------------------------------------------------------------------------
# Logging
# ---------------------------------------------------------------------------------------------


class MetricWriter:
    """metrics.jsonl (one JSON object per row) and TensorBoard events, on process 0 only."""

    def __init__(self, workdir: pathlib.Path, resume_step: int):
        self.enabled = jax.process_index() == 0
        self.path = workdir / "metrics.jsonl"
        if not self.enabled:
            return
        self._truncate_after(resume_step)
        from tensorboardX import SummaryWriter

        self._tb = SummaryWriter(os.fspath(workdir / "tensorboard"), purge_step=resume_step + 1 if resume_step else None)

    def _truncate_after(self, step: int) -> None:
        """Rows logged after the checkpoint we resume from are logged again by the resumed run."""
        if not self.path.exists():
            return
        rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        kept = [r for r in rows if r["step"] <= step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def write(self, step: int, **scalars: float) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **scalars}) + "\n")
        for k, v in scalars.items():
            self._tb.add_scalar(k, v, step)
        self._tb.flush()

    def close(self) -> None:
        if self.enabled:
            self._tb.close()


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


def check_config(config: ml_collections.ConfigDict) -> None:
    """Refuses a config that cannot train (a model spec off the schema, no steps to run), before
    any data is read or anything is written."""
    check_spec(config.model.to_dict(), "config.model")
    positive = {"data.train.batch_size": config.data.train.batch_size, "log_every_steps": config.log_every_steps,
                "keep_checkpoints": config.keep_checkpoints, "num_steps": config.num_steps,
                "eval_every_steps": config.eval_every_steps, "checkpoint_every_steps": config.checkpoint_every_steps}
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
        if any((p / checkpoints.PARAMS).is_dir() and not (p / run_checkpoints.OPT_STATE).is_dir() for p in steps + [workdir]):
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


def preemption_point(step: int) -> bool:
    """True at the step at which every process stops after any of them got SIGTERM: in a
    distributed run JAX's preemption service catches SIGTERM (a scheduler's notice) and agrees on
    this step, so that all save the same checkpoint; never True in a single process."""
    try:
        return multihost_utils.reached_preemption_sync_point(step)
    except RuntimeError:  # the preemption service is off (jax_enable_preemption_service)
        return False


def evaluate_val(steps: Steps, params, val_ds) -> float:
    """Mean PSNR over the validation batches, weighted by batch size as the official Averager;
    the padding of the last batch (weight 0) is left out, so the value is the same on any layout."""
    total, n = 0.0, 0.0
    for batch in val_ds:
        psnr, count = jax.device_get(steps.eval_psnr(params, to_global(batch, steps.batch, VAL_KEYS)))
        total += float(psnr) * float(count)
        n += float(count)
    return total / max(n, 1.0)


def final_evaluation(config: ml_collections.ConfigDict, model: Model, params, workdir: pathlib.Path) -> None:
    """The paper's protocol (LIIF vs bicubic per scale) on held-out images, if the config asks.

    Prints the table and where the run is, and writes `final_eval.json`; `config.final_eval` holds
    `dataset` (a source spec), `scales` (empty: skipped), `protocol` and, optionally,
    `compare_with`: another model (a checkpoint path or `pretrained:NAME`) to show on the same
    images, in the same table.
    """
    fe = config.final_eval
    if not fe.scales or jax.process_index() != 0:
        return
    if not fe.dataset:
        raise ValueError("final_eval.scales is set but final_eval.dataset is not")
    from liif_jax import evaluate, report

    source = datasets.make_source(fe.dataset.to_dict(), "final_eval.dataset")
    results = evaluate.evaluate(model, jax.device_get(params), source, list(fe.scales), fe.protocol, progress=False)
    report.write_json(workdir / "final_eval.json", results)
    names = sorted({r.name.split("/")[-1] for r in results})
    print(f"held-out evaluation ({fe.protocol} protocol, {len(names)} images: {', '.join(names)}; PSNR in dB):")
    rows = {f"{workdir.name} ({describe(model)})": report.aggregate(results)}
    if fe.get("compare_with"):
        other, other_params = checkpoints.load_model(fe.compare_with)
        other_results = evaluate.evaluate(other, other_params, source, list(fe.scales), fe.protocol, progress=False)
        label = fe.compare_with if fe.compare_with.startswith(shipped.PRETRAINED_PREFIX) else pathlib.Path(fe.compare_with).name
        rows[f"{label} ({describe(other)})"] = report.aggregate(other_results)
    print(report.format_comparison(rows), flush=True)
    print(f"the run is in {workdir} (checkpoints/, metrics.jsonl, final_eval.json, tensorboard/); render with it:\n"
          f"  python -m liif_jax.demo --model {workdir} --input PHOTO --scale 4 --output out.png", flush=True)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict[str, float]:
    """Trains (or resumes) the run in `workdir`; returns the last logged metrics."""
    workdir = pathlib.Path(workdir).resolve()
    say = print if jax.process_index() == 0 else lambda *args, **kwargs: None  # one progress log
    check_config(config)
    check_workdir(workdir, config)
    model = build_model(config.model.to_dict(), compute_dtype(config.compute_dtype))
    mesh = make_mesh()
    batch_sharding = NamedSharding(mesh, P(DATA_AXIS))
    it, steps_per_epoch = train_iterator(config, local_rows(batch_sharding, config.data.train.batch_size))
    val_cfg = config.data.get("val")
    val_ds = None if val_cfg is None else val_dataset(config, local_rows(batch_sharding, val_cfg.batch_size, "data.val.batch_size"))
    num_steps = config.num_steps or config.optimizer.epochs * steps_per_epoch
    checkpoint_every = config.checkpoint_every_steps or steps_per_epoch
    eval_every = config.eval_every_steps or steps_per_epoch
    tx = make_optimizer(config, steps_per_epoch)
    schedule = config_schedule(config, steps_per_epoch)
    steps = compile_steps(model, tx, mesh)

    def init_state(rng):
        params = model.init(rng, config.data.train.wrapper.args.get("inp_size") or 48)
        return TrainState(jnp.zeros((), jnp.int32), params, tx.init(params))

    init = jax.jit(init_state, out_shardings=steps.replicated)
    workdir.mkdir(parents=True, exist_ok=True)
    mngr = run_checkpoints.checkpoint_manager(workdir, config.keep_checkpoints)
    meta = checkpoints.make_meta(config.model.to_dict(), config=config.to_dict())
    start = mngr.latest_step()
    if start is None:
        state = init(jax.random.key(config.seed))
        start = 0
    else:
        abstract = jax.eval_shape(init, jax.random.key(0))
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=steps.replicated), abstract)
        try:
            params, opt_state = run_checkpoints.restore(mngr, start, abstract.params, abstract.opt_state, it)
        except Exception as err:  # another model's or a damaged checkpoint: whatever orbax or grain raise
            mngr.close()
            it.close()
            text = " ".join(str(err).split())[:200]
            raise TrainingError(
                f"cannot resume from {workdir / 'checkpoints' / str(start)} ({type(err).__name__}: {text}); it holds "
                "another model or is damaged. Use a new --workdir, or the config that made it."
            ) from err
        state = TrainState(jnp.asarray(start, jnp.int32), params, opt_state)
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
    try:
        for step in range(start + 1, num_steps + 1):
            state, loss = steps.train(state, to_global(next(it), steps.batch))
            losses.append(loss)
            preempted = preemption_point(step)
            log_now = step % config.log_every_steps == 0 or step == num_steps or preempted
            ckpt_now = step % checkpoint_every == 0 or step == num_steps or preempted
            eval_now = val_ds is not None and (step % eval_every == 0 or step == num_steps)
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
                say(f"step {step}/{num_steps} (epoch {epoch})  loss {last['loss']:.4f}  lr {lr:.2e}  "
                      f"{rate:.2f} steps/s  ETA {eta}", flush=True)
                t_last, step_last = now, step
            losses = []
            if eval_now:
                last_val = evaluate_val(steps, state.params, val_ds)
                last["val_psnr"] = last_val
                writer.write(step, val_psnr=last_val)
                say(f"step {step}/{num_steps}  val_psnr {last_val:.2f} dB", flush=True)
            if ckpt_now:
                run_checkpoints.save(mngr, step, state.params, state.opt_state, it, meta,
                                     None if last_val is None else {"val_psnr": last_val})
            if preempted:
                mngr.wait_until_finished()
                raise TrainingError(f"stopped at step {step} on a termination signal (SIGTERM) to one of the "
                                    f"processes; saved {workdir / 'checkpoints' / str(step)}: run the same command to resume")
        mngr.wait_until_finished()
        if jax.process_count() == 1:
            final_evaluation(config, model, state.params, workdir)
        elif config.final_eval.scales:  # loading compare_with and a long evaluation need one process
            say(f"final evaluation skipped (several processes); on one host: python -m liif_jax.evaluate "
                f"--model {workdir} ...", flush=True)
    finally:
        mngr.close()
        writer.close()
        it.close()
    return last

