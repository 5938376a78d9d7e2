"""Our checkpoint format (orbax) and the one loader every tool uses.

A checkpoint directory is an orbax `CheckpointManager` directory: `<dir>/<step>/` holds the item
`params`, the JSON item `meta` (the official model spec, so a checkpoint describes its own model),
and, for training runs, `opt_state` and `data_iter`. `load_model` accepts any of:
an official `.pth`, a training workdir (`<workdir>/checkpoints`), a manager directory, or one
step directory.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

from liif_jax.models import LIIF, MetaSR, Spec, build_model
from liif_jax.pth import OFFICIAL_SUFFIXES
from liif_jax.state_dict import load_official

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
    """(manager directory, step) for a workdir, manager directory or step directory."""
    path = pathlib.Path(path).resolve()
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


def read_meta(manager_dir: pathlib.Path, step: int) -> dict[str, Any]:
    with ocp.CheckpointManager(manager_dir, item_names=(META,)) as mngr:
        meta = mngr.restore(step, args=ocp.args.Composite(**{META: ocp.args.JsonRestore()}))[META]
    if meta.get("format") != FORMAT:
        raise ValueError(f"{manager_dir / str(step)}: not a liif_jax checkpoint (meta {meta!r})")
    return meta


def restore_params(manager_dir: pathlib.Path, step: int, abstract_params: Any) -> Any:
    with ocp.CheckpointManager(manager_dir, item_names=(PARAMS,)) as mngr:
        restored = mngr.restore(
            step, args=ocp.args.Composite(**{PARAMS: ocp.args.StandardRestore(abstract_params)})
        )
    return restored[PARAMS]


def load_model(path: str | os.PathLike, step: int | None = None, dtype=None) -> tuple[LIIF | MetaSR, Any]:
    """(model, params) from an official `.pth` or any liif_jax checkpoint location."""
    if str(path).endswith(OFFICIAL_SUFFIXES):
        return load_official(path, dtype)
    manager_dir, step = resolve(path, step)
    meta = read_meta(manager_dir, step)
    model = build_model(meta["model_spec"], dtype)
    abstract = jax.eval_shape(model.init, jax.random.key(0))
    return model, restore_params(manager_dir, step, abstract)
