"""A training run's checkpoints: orbax `CheckpointManager` directories `<workdir>/checkpoints/<step>/`
holding params and the model spec (`liif_jax.formats.checkpoints`, what every tool loads), the optimizer
state, and each process's data position, so that a killed run resumes exactly.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

from liif_jax.formats import checkpoints

OPT_STATE, DATA_ITER = "opt_state", "data_iter"


class DataIterHandler(grain.checkpoint.CheckpointHandler):
    """grain's handler (each process writes `process_<i>-of-<n>.json`), restoring under any
    number of processes: every process saves the same global stream position (see
    `pipeline.TrainIterator`), so a run resumes with another layout from any process's file."""

    def restore(self, directory, item=None, args=None):
        item = item or args.item
        states = {f.name: json.loads(f.read_text()) for f in sorted(directory.glob("process_*-of-*.json"))}
        if not states:
            raise ValueError(f"{directory}: no data iterator state (process_<i>-of-<n>.json); cannot resume")
        if len({json.dumps(s, sort_keys=True) for s in states.values()}) > 1:
            raise ValueError(f"{directory}: the processes saved different data positions {states}; cannot resume")
        item.set_state(next(iter(states.values())))
        item.start_prefetch()
        return item


@ocp.args.register_with_handler(DataIterHandler, for_save=True)
@dataclasses.dataclass
class DataIterSave(ocp.args.CheckpointArgs):
    item: Any


@ocp.args.register_with_handler(DataIterHandler, for_restore=True)
@dataclasses.dataclass
class DataIterRestore(ocp.args.CheckpointArgs):
    item: Any


def checkpoint_manager(workdir: pathlib.Path, keep: int) -> ocp.CheckpointManager:
    """Keeps the last `keep` checkpoints and the best one by validation PSNR."""
    policy = ocp.checkpoint_managers.AnyPreservationPolicy(
        [
            ocp.checkpoint_managers.LatestN(keep),
            ocp.checkpoint_managers.BestN(
                get_metric_fn=lambda m: m["val_psnr"], n=1, keep_checkpoints_without_metrics=False
            ),
        ]
    )
    options = ocp.CheckpointManagerOptions(preservation_policy=policy, create=True)
    return ocp.CheckpointManager(
        workdir / "checkpoints",
        options=options,
        item_handlers={
            checkpoints.PARAMS: ocp.StandardCheckpointHandler(),
            OPT_STATE: ocp.StandardCheckpointHandler(),
            checkpoints.META: ocp.JsonCheckpointHandler(),
            DATA_ITER: DataIterHandler(),
        },
    )


def save(mngr: ocp.CheckpointManager, step: int, params, opt_state, it, meta: dict, metrics: dict | None) -> None:
    mngr.save(
        step,
        args=ocp.args.Composite(
            **{
                checkpoints.PARAMS: ocp.args.StandardSave(params),
                OPT_STATE: ocp.args.StandardSave(opt_state),
                checkpoints.META: ocp.args.JsonSave({**meta, "step": step}),
                DATA_ITER: DataIterSave(it),
            }
        ),
        metrics=metrics,
    )


def restore(mngr: ocp.CheckpointManager, step: int, abstract_params, abstract_opt_state, it) -> tuple[Any, Any]:
    """(params, optimizer state) of `step`, with the shardings of the abstract trees; `it` is set
    to the saved data position."""
    check_fits(mngr, step, abstract_params)
    restored = mngr.restore(
        step,
        args=ocp.args.Composite(
            **{
                checkpoints.PARAMS: ocp.args.StandardRestore(abstract_params),
                OPT_STATE: ocp.args.StandardRestore(abstract_opt_state),
                DATA_ITER: DataIterRestore(it),
            }
        ),
    )
    return restored[checkpoints.PARAMS], restored[OPT_STATE]


def check_fits(mngr: ocp.CheckpointManager, step: int, abstract_params) -> None:
    """Refuses a checkpoint of another model from its metadata, before any array is read: a
    restore that fails part-way leaves orbax reads pending, which fail again when Python exits."""
    saved = mngr.item_metadata(step)[checkpoints.PARAMS]
    shapes = lambda tree: {
        jax.tree_util.keystr(path): tuple(leaf.shape) for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }
    have, want = shapes(getattr(saved, "tree", saved)), shapes(abstract_params)
    if have != want:
        differ = sorted(k for k in have.keys() | want.keys() if have.get(k) != want.get(k))
        raise ValueError(
            f"its params do not fit this model: {differ[0]} is {have.get(differ[0], 'missing')} there and "
            f"{want.get(differ[0], 'missing')} here ({len(differ)} parameters differ)"
        )
