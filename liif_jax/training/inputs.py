"""A training run's data: the checkpointable training iterator, the validation batches, and the
decode caches (`cache: bin`), which go under the run's workdir unless a config names a `cache_dir`.
"""

from __future__ import annotations

import pathlib
from typing import Any

import ml_collections

from liif_jax.data import datasets, pipeline, wrappers


def train_iterator(
    config: ml_collections.ConfigDict, rows: list[int] | None = None, cache_root: pathlib.Path | None = None
) -> tuple[pipeline.TrainIterator, int]:
    """(checkpointable iterator of this process's `rows` of each global batch, steps per epoch).
    A `cache: bin` source without a `cache_dir` decodes into a folder under `cache_root`."""
    cfg = config.data.train
    source = datasets.make_source(cached(cfg.dataset.to_dict(), cache_root), "data.train.dataset")
    wrapper = datasets.make_wrapper(cfg.wrapper.to_dict(), "data.train.wrapper")
    degrade = datasets.make_degradation(cfg.get("degradation"))
    if degrade is not None:
        if not isinstance(wrapper, wrappers.RandomScaleDownsample) or wrapper.inp_size is None:
            raise ValueError("data.train.degradation needs the sr-implicit-downsampled wrapper with an inp_size")
        wrapper.degrade = degrade
    it = pipeline.make_train_dataset(
        source, wrapper, cfg.batch_size, config.seed, num_workers=config.num_workers, rows=rows
    )
    return it, pipeline.steps_per_epoch(len(source), cfg.batch_size)


def val_dataset(
    config: ml_collections.ConfigDict, rows: list[int] | None = None, cache_root: pathlib.Path | None = None
):
    cfg = config.data.get("val")
    if cfg is None:
        return None
    spec = cached(cfg.dataset.to_dict(), cache_root)
    args = dict(spec.get("args") or {})
    repeat = args.pop("repeat", 1)  # the validation set repeats its crops itself (same batches each pass)
    source = datasets.make_source({**spec, "args": args}, "data.val.dataset")
    wrapper = datasets.make_wrapper(cfg.wrapper.to_dict(), "data.val.wrapper")
    if hasattr(wrapper, "bicubic_reference"):  # validation reports bicubic on the same crops
        wrapper.bicubic_reference = True
    return pipeline.make_val_dataset(
        source, cfg.batch_size, config.seed, wrapper, first_k=None, repeat=repeat, rows=rows
    )


def cached(spec: dict[str, Any], cache_root: pathlib.Path | None) -> dict[str, Any]:
    return spec if cache_root is None else datasets.with_cache_dir(spec, cache_root)


def cache_dirs(config: ml_collections.ConfigDict, cache_root: pathlib.Path) -> list[pathlib.Path]:
    """The decode caches (`cache: bin`) of the run's data sets, where `_cached` puts them."""
    specs = [config.data.train.dataset.to_dict()]
    specs += [config.data.val.dataset.to_dict()] if config.data.get("val") is not None else []
    specs += [config.final_eval.dataset.to_dict()] if config.final_eval.scales else []
    found = {(cached(spec, cache_root).get("args") or {}).get("cache_dir") for spec in specs}
    return sorted(pathlib.Path(d) for d in found if d)


def describe_cache(folder: pathlib.Path) -> str:
    files = [p for p in folder.rglob("*.npy") if p.is_file()] if folder.is_dir() else []
    size = sum(p.stat().st_size for p in files)
    return f"image cache {folder}: {len(files)} decoded image(s), {size / 1e6:.0f} MB"
