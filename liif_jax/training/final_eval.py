"""The end of a training run: its model against bicubic on held-out images (`final_eval` of the
config), whether it beats bicubic yet and what its recipe still plans, and how to use it.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sys

import jax
import ml_collections

from liif_jax import pretrained
from liif_jax.data import datasets
from liif_jax.formats import checkpoints
from liif_jax.models import Model, describe
from liif_jax.training import inputs


@dataclasses.dataclass
class Progress:
    """Where a finished run stands against its recipe: steps done, and the length of its
    learning-rate schedule (`optimizer.epochs` epochs)."""

    steps_done: int
    recipe_steps: int
    eta: str | None  # how long the rest of the recipe would take at this run's speed, if known


def python_command() -> str:
    """The interpreter running this, as a person would type it here: relative to the working folder
    when inside it (`.venv/bin/python`), else absolute; the venv need not be active to use it."""
    exe = pathlib.Path(sys.executable)
    try:
        return os.fspath(exe.relative_to(pathlib.Path.cwd()))
    except ValueError:
        return os.fspath(exe)


def final_evaluation(
    config: ml_collections.ConfigDict,
    model: Model,
    params,
    workdir: pathlib.Path,
    progress: Progress | None = None,
    cache_root: pathlib.Path | None = None,
) -> None:
    """The paper's protocol (LIIF vs bicubic per scale) on held-out images, if the config asks.

    Prints the table, whether the run beats bicubic yet and what its recipe still plans
    (`progress`), and where the run is, and writes `final_eval.json`; `config.final_eval` holds
    `dataset` (a source spec), `scales` (empty: skipped), `protocol` and, optionally,
    `compare_with`: another model (a checkpoint path or `pretrained:NAME`) to show on the same
    images, in the same table, and `center_crop`: evaluate the central N x N pixels of each image
    (large photographs on a CPU).
    """
    fe = config.final_eval
    if not fe.scales or jax.process_index() != 0:
        return
    if not fe.dataset:
        raise ValueError("final_eval.scales is set but final_eval.dataset is not")
    from liif_jax.evaluation import evaluator, report

    source = datasets.make_source(inputs.cached(fe.dataset.to_dict(), cache_root), "final_eval.dataset")
    if fe.get("center_crop"):
        source = evaluator.CenterCropped(source, fe.center_crop)
    results = evaluator.evaluate(model, jax.device_get(params), source, list(fe.scales), fe.protocol, progress=False)
    report.write_json(workdir / "final_eval.json", results)
    names = sorted({r.name.split("/")[-1] for r in results})
    print(f"held-out evaluation ({fe.protocol} protocol, {len(names)} images: {', '.join(names)}; PSNR in dB):")
    ours = report.aggregate(results)
    rows = {f"{workdir.name} ({describe(model)})": ours}
    if fe.get("compare_with"):
        other, other_params = checkpoints.load_model(fe.compare_with)
        other_results = evaluator.evaluate(other, other_params, source, list(fe.scales), fe.protocol, progress=False)
        label = fe.compare_with if fe.compare_with.startswith(pretrained.PREFIX) else pathlib.Path(fe.compare_with).name
        rows[f"{label} ({describe(other)})"] = report.aggregate(other_results)
    print(report.format_comparison(rows), flush=True)
    if progress is not None:
        print(report.verdict(ours, progress.steps_done, progress.recipe_steps, progress.eta), flush=True)
    print(
        f"the run is in {workdir} (checkpoints/, metrics.jsonl, final_eval.json, tensorboard/); render with it:\n"
        f"  {python_command()} -m liif_jax.demo --model {workdir} --input PHOTO --scale 4 --output out.png",
        flush=True,
    )
