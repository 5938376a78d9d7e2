"""Our checkpoint format (orbax) and the one loader every tool uses.

A checkpoint directory is an orbax `CheckpointManager` directory: `<dir>/<step>/` holds the item
`params`, the JSON item `meta` (the official model spec, so a checkpoint describes its own model),
and, for training runs, `opt_state` and `data_iter`. `load_model` accepts any of:
an official `.pth`, a training workdir (`<workdir>/checkpoints`), a manager directory, one
step directory, or a shipped model by name (`pretrained:edsr-baseline-liif`, `liif_jax.shipped`).
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

from liif_jax import pretrained
from liif_jax.formats.pth import OFFICIAL_SUFFIXES, CheckpointError
from liif_jax.formats.state_dict import load_official
from liif_jax.models import Model, Spec, build_model
from liif_jax.models.spec import SpecError, check_spec

FORMAT = "liif_jax"
PARAMS, META = "params", "meta"


def make_meta(spec: Spec, **extra: Any) -> dict[str, Any]:
    return {"format": FORMAT, "version": 1, "model_spec": spec, **extra}


def save_model(directory: str | os.PathLike, spec: Spec, params: Any, step: int = 0) -> pathlib.Path:
    """Writes params and model spec (no optimizer state) as step `step` of a new manager dir."""
    directory = pathlib.Path(directory).resolve()
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory}: output directory is not empty; choose a new one")
    with ocp.CheckpointManager(directory) as mngr:
        mngr.save(
            step,
            args=ocp.args.Composite(
                **{PARAMS: ocp.args.StandardSave(params), META: ocp.args.JsonSave(make_meta(spec))}
            ),
        )
        mngr.wait_until_finished()
    return directory


def _is_step_dir(path: pathlib.Path) -> bool:
    return (path / META).is_dir() and (path / PARAMS).is_dir()


def resolve(path: str | os.PathLike, step: int | None = None) -> tuple[pathlib.Path, int]:
    """(manager directory, step) for a workdir, manager directory, step directory or shipped model."""
    path = pathlib.Path(pretrained.model_path(path)).resolve()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file or directory")
    if _is_step_dir(path):
        if step is not None and int(path.name) != step:
            raise ValueError(f"{path} is step {path.name}, but --step {step} was asked for")
        return path.parent, int(path.name)
    if (path / "checkpoints").is_dir():
        path = path / "checkpoints"
    steps = sorted(int(p.name) for p in path.iterdir() if p.name.isdigit() and _is_step_dir(p))
    if not steps:
        raise FileNotFoundError(
            f"{path}: no liif_jax checkpoint here (expected <step>/{PARAMS} and <step>/{META}); "
            "pass a training workdir, a checkpoint directory, or an official .pth"
        )
    if step is None:
        return path, steps[-1]
    if step not in steps:
        raise FileNotFoundError(f"{path}: no step {step}; available steps: {steps}")
    return path, step


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}"


def read_meta(manager_dir: pathlib.Path, step: int) -> dict[str, Any]:
    """The step's meta, its model spec checked by the schema (`liif_jax.models.spec`)."""
    where = manager_dir / str(step)
    try:
        with ocp.CheckpointManager(manager_dir, item_names=(META,)) as mngr:
            meta = mngr.restore(step, args=ocp.args.Composite(**{META: ocp.args.JsonRestore()}))[META]
    except Exception as err:  # a damaged or hostile meta file: whatever orbax or json raise
        raise CheckpointError(f"{where}: cannot read its {META} ({_one_line(err)})") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{where}: not a liif_jax checkpoint (its {META} has no format {FORMAT!r})")
    try:
        check_spec(meta.get("model_spec"), f"{META}.model_spec")
    except SpecError as err:
        raise CheckpointError(f"{where}: {err}") from None
    return meta


def check_finite(params: Any, where: str) -> None:
    """Refuses params holding NaN or Inf (a diverged run), naming the first such parameter."""
    for path, value in traverse_util.flatten_dict(params).items():
        if not np.isfinite(np.asarray(value)).all():
            raise CheckpointError(
                f"{where}: parameter {'/'.join(path)} holds NaN or Inf values (a diverged training run?)"
            )


def restore_params(manager_dir: pathlib.Path, step: int, abstract_params: Any) -> Any:
    where = manager_dir / str(step)
    try:
        with ocp.CheckpointManager(manager_dir, item_names=(PARAMS,)) as mngr:
            restored = mngr.restore(
                step, args=ocp.args.Composite(**{PARAMS: ocp.args.StandardRestore(abstract_params)})
            )
    except Exception as err:  # missing, damaged or another model's arrays
        raise CheckpointError(f"{where}: cannot restore the params its {META} describes ({_one_line(err)})") from err
    check_finite(restored[PARAMS], str(where))
    return restored[PARAMS]


def load_model(path: str | os.PathLike, step: int | None = None, dtype=None) -> tuple[Model, Any]:
    """(model, params) from an official `.pth`, any liif_jax checkpoint location or `pretrained:NAME`."""
    if str(path).endswith(OFFICIAL_SUFFIXES):
        return load_official(path, dtype)
    manager_dir, step = resolve(path, step)
    meta = read_meta(manager_dir, step)
    model = build_model(meta["model_spec"], dtype)
    abstract = jax.eval_shape(model.init, jax.random.key(0))
    return model, restore_params(manager_dir, step, abstract)
