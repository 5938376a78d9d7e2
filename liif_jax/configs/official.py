"""An official training config (`configs/train-*/*.yaml` of the LIIF or LTE code) as a config here."""

from __future__ import annotations

import logging
import os
import pathlib
from typing import Any

import ml_collections

from liif_jax.configs.common import base_config

log = logging.getLogger(__name__)

_OFFICIAL_KEYS = {
    "train_dataset",
    "val_dataset",
    "data_norm",
    "model",
    "optimizer",
    "epoch_max",
    "multi_step_lr",
    "epoch_val",
    "epoch_save",
    "eval_type",
    "eval_bsize",
    "resume",
}
# The `data_norm` of every official config: (x - 0.5) / 0.5 for inputs and targets, as `imaging.normalize`.
OFFICIAL_DATA_NORM = {"inp": {"sub": [0.5], "div": [0.5]}, "gt": {"sub": [0.5], "div": [0.5]}}


def _tuples(x: Any) -> Any:
    """YAML lists -> tuples, recursively (what the configs here hold)."""
    if isinstance(x, dict):
        return {k: _tuples(v) for k, v in x.items()}
    return tuple(_tuples(v) for v in x) if isinstance(x, list) else x


def from_official_yaml(path: str | os.PathLike) -> ml_collections.ConfigDict:
    """An official training config (`configs/train-*/*.yaml`) as a config here: the same data,
    model and recipe, with our defaults for the rest (workers, logging, seed).

    The train set's `cache: in_memory` becomes `bin`: the same decoded images, shared by the grain
    worker processes through memory-mapped files instead of copied into each. A checkpoint is
    kept each epoch (the official `epoch-last`) and the best by validation PSNR (`epoch-best`);
    `epoch_save` snapshots are not kept. What the official trainer would do differently from here
    (`resume` from a file that exists, eval_type during training, other optimizers) is refused by
    name. LTE's configs name a `resume` file that a first run does not have, which LTE's train.py
    then ignores: so does this (resuming is by --workdir). LTE's train_swinir-liif.yaml names its
    model `swinir` with LIIF's args, which LTE's own code cannot build (TypeError): it is read as
    the `liif` model it describes, with a warning.
    """
    import yaml  # Imported here: only this path reads YAML.

    where = os.fspath(path)
    try:
        y = yaml.safe_load(pathlib.Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"cannot read official config {where}: {err}") from None

    def refuse(why: str) -> ValueError:
        return ValueError(f"official config {where}: {why}")

    if not isinstance(y, dict) or not {"train_dataset", "model", "optimizer", "epoch_max"} <= set(y):
        raise refuse("not an official training config (needs train_dataset, model, optimizer, epoch_max)")
    if set(y) - _OFFICIAL_KEYS:
        raise refuse(f"unknown keys {sorted(set(y) - _OFFICIAL_KEYS)}")
    resume = y.get("resume")
    if resume is not None and os.path.exists(resume):
        raise refuse(f"resume from {resume} is not supported: run again with the same --workdir to resume")
    if resume is not None:
        log.warning(
            "%s: resume file %s does not exist; starting a new run, as LTE's train.py does "
            "(liif_jax resumes a run from its --workdir)",
            where,
            resume,
        )
    if y.get("eval_type") is not None or y.get("eval_bsize") is not None:
        raise refuse("eval_type / eval_bsize during training are not supported; use python -m liif_jax.evaluate")
    if y.get("data_norm") != OFFICIAL_DATA_NORM:
        raise refuse(f"data_norm must be inp/gt sub [0.5] div [0.5] (every official config), got {y.get('data_norm')}")
    optimizer = y["optimizer"]
    if optimizer.get("name") != "adam" or set(optimizer.get("args") or {}) - {"lr"}:
        raise refuse(f"only adam with lr is supported, got {optimizer}")
    if y.get("epoch_val") not in (None, 1):
        raise refuse(f"epoch_val {y['epoch_val']}: validation runs each epoch; set --config.eval_every_steps instead")
    schedule = y.get("multi_step_lr") or {"milestones": [], "gamma": 1.0}

    model = _tuples(y["model"])
    if model.get("name") == "swinir" and {"encoder_spec", "imnet_spec"} <= set(model.get("args") or {}):
        log.warning(
            "%s: model name 'swinir' with an encoder_spec and an imnet_spec (LTE's code cannot build it) "
            "is read as the 'liif' model those args describe",
            where,
        )
        model = {**model, "name": "liif"}
    train = y["train_dataset"]
    train_dataset = _tuples(train["dataset"])
    if (train_dataset.get("args") or {}).get("cache") == "in_memory":
        train_dataset["args"]["cache"] = "bin"
    val = y.get("val_dataset") if y.get("epoch_val") else None
    c = base_config(
        model,
        train_dataset,
        _tuples(val["dataset"]) if val else None,
        _tuples(train["wrapper"]),
        _tuples(val["wrapper"]) if val else None,
        batch_size=train["batch_size"],
        epochs=y["epoch_max"],
        milestones=schedule["milestones"],
        gamma=schedule.get("gamma", 0.1),
        lr=optimizer["args"]["lr"],
    )
    if val:
        c.data.val.batch_size = val["batch_size"]
    return c
