"""Official test configs (`configs/test/*.yaml`): what `python test.py --config` evaluates, read
into a source, a scale, a protocol and a batch size for `evaluator.evaluate`."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from liif_jax.configs import official
from liif_jax.data import datasets
from liif_jax.evaluation import metrics
from liif_jax.render.render import DEFAULT_BATCH_QUERIES


@dataclass(frozen=True)
class OfficialTest:
    """What an official test config (`configs/test/*.yaml`) asks for, in this module's terms."""

    source: Sequence[Any]
    names: list[str]
    scale: float
    protocol: metrics.Protocol
    batch_queries: int


def read_official_test_config(path: str | os.PathLike) -> OfficialTest:
    """An official test YAML (`test_dataset` {dataset, wrapper}, `eval_type`, `eval_bsize`,
    `data_norm`), as `python test.py --config` reads it; relative data paths are from the working
    directory, as there. Only what the official test path can mean is accepted: whole images
    (`inp_size` unset), one scale, the standard normalisation."""
    import yaml  # Imported here: only this path reads YAML.

    where = os.fspath(path)
    try:
        config = yaml.safe_load(pathlib.Path(path).read_text())
        spec = config["test_dataset"]
        dataset, wrapper = dict(spec["dataset"]), dict(spec["wrapper"])
    except (OSError, yaml.YAMLError, TypeError, KeyError) as err:
        raise ValueError(
            f"--config {where}: not an official test config (test_dataset: dataset, wrapper): {err}"
        ) from None
    norm = config.get("data_norm")
    if norm != official.OFFICIAL_DATA_NORM:
        raise ValueError(f"--config {where}: data_norm must be the official inp/gt sub [0.5] div [0.5], got {norm}")
    try:
        protocol, type_scale = metrics.eval_type_to_protocol(config.get("eval_type"))
    except ValueError as err:
        raise ValueError(f"--config {where}: {err}") from None
    args = dict(wrapper.get("args") or {})
    if args.get("inp_size") is not None or args.get("sample_q") is not None:
        raise ValueError(
            f"--config {where}: the wrapper crops or samples (inp_size / sample_q); a test uses whole images"
        )
    # A test reads each image once: the official `cache` (bin files beside the data) would only write files.
    dataset["args"] = {k: v for k, v in (dataset.get("args") or {}).items() if k != "cache"}
    source = datasets.make_source(dataset, f"--config {where}: test_dataset.dataset")
    if wrapper.get("name") == "sr-implicit-downsampled":
        scale = float(args.get("scale_min", 1))
        if args.get("scale_max", scale) != scale:
            raise ValueError(
                f"--config {where}: scale_min {scale:g} and scale_max {args['scale_max']} differ; a test has one scale"
            )
        names = [f.name for f in source.files]
    elif wrapper.get("name") == "sr-implicit-paired":
        first = source[0]
        scale = float(type_scale if config.get("eval_type") else first["hr"].shape[0] // first["lr"].shape[0])
        names = [hr.name for _, hr in source.pairs]
    else:
        raise ValueError(
            f"--config {where}: wrapper {wrapper.get('name')!r} is not a test wrapper "
            "(sr-implicit-downsampled or sr-implicit-paired)"
        )
    if config.get("eval_type") and type_scale != scale:
        raise ValueError(
            f"--config {where}: eval_type {config['eval_type']!r} does not match the wrapper's scale {scale:g}"
        )
    return OfficialTest(source, names, scale, protocol, int(config.get("eval_bsize") or DEFAULT_BATCH_QUERIES))
