"""The end of a training run: its model against bicubic on held-out images (`final_eval` of the
config), whether it beats bicubic yet and what its recipe still plans, and how to use it.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import ml_collections

from liif_jax.data import datasets
from liif_jax.formats import checkpoints
from liif_jax.models import Model
from liif_jax.training import inputs

if TYPE_CHECKING:
    from liif_jax.evaluation import report


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
    images, in the same table (its results are cached, `liif_jax.evaluation.cache`: they do not
    change from run to run), and `center_crop`: evaluate the central N x N pixels of each image
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
    label = evaluator.model_label(workdir, model)
    print(f"held-out evaluation of {label} on {len(source)} images:", flush=True)
    results = evaluator.evaluate(model, jax.device_get(params), source, list(fe.scales), fe.protocol)
    report.write_json(workdir / "final_eval.json", results)
    rows = {label: report.aggregate(results)}
    if fe.get("compare_with"):
        other_label, other_results = compare(fe, source)
        rows[other_label] = report.aggregate(other_results)
    names = sorted({r.name.split("/")[-1] for r in results})
    print(f"held-out evaluation ({fe.protocol} protocol, {len(names)} images: {', '.join(names)}; PSNR in dB):")
    print(report.format_comparison(rows), flush=True)
    degrade = degraded_inputs(config)
    if degrade:
        print(f"the same on degraded inputs ({degrade}), as the run trained on:", flush=True)
        degraded = evaluator.evaluate(
            model, jax.device_get(params), source, list(fe.scales), fe.protocol, degrade=degrade
        )
        report.write_json(workdir / "final_eval_degraded.json", degraded)
        degraded_rows = {label: report.aggregate(degraded)}
        if fe.get("compare_with"):
            other_label, other_results = compare(fe, source, degrade)
            degraded_rows[other_label] = report.aggregate(other_results)
        print(f"held-out evaluation on {degrade} inputs (PSNR in dB):")
        print(report.format_comparison(degraded_rows), flush=True)
    if progress is not None:
        print(report.verdict(rows[label], progress.steps_done, progress.recipe_steps, progress.eta), flush=True)
    print(
        f"the run is in {workdir} (checkpoints/, metrics.jsonl, final_eval.json, tensorboard/); render with it:\n"
        f"  {python_command()} -m liif_jax.demo --model {workdir} --input PHOTO --scale 4 --output out.png",
        flush=True,
    )


def degraded_inputs(config: ml_collections.ConfigDict) -> str | None:
    """The degradation (`--degrade` recipe) of the final table's second part: `final_eval.degrade`,
    for a run trained with `data.train.degradation` (default `jpeg:40`); None for other runs."""
    if not config.data.train.get("degradation"):
        return None
    return config.final_eval.get("degrade") or "jpeg:40"


def compare(
    fe: ml_collections.ConfigDict, source: Sequence[Any], degrade: str | None = None
) -> tuple[str, list[report.ImageResult]]:
    """(label, results) of `fe.compare_with` on the held-out images (on `degrade`d inputs if given):
    from the evaluation cache when this model was evaluated on these images before, else evaluated
    now and cached."""
    from liif_jax.evaluation import cache, evaluator

    scales = list(fe.scales)
    entry = cache.key(fe.compare_with, source, scales, fe.protocol, fe.get("center_crop"), degrade)
    hit = cache.load(entry)
    if hit is not None:
        print(f"{hit[0]}: the results of an earlier run on these images ({cache.cache_dir() / entry}.json)", flush=True)
        return hit
    other, other_params = checkpoints.load_model(fe.compare_with)
    label = evaluator.model_label(fe.compare_with, other)
    print(f"held-out evaluation of {label}, for comparison (once; the results are cached):", flush=True)
    results = evaluator.evaluate(other, other_params, source, scales, fe.protocol, degrade=degrade)
    cache.store(entry, label, results)
    return label, results
