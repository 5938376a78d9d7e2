"""Data sets from config, in the official config's vocabulary.

A data config mirrors the official YAML: `dataset: {name, args}`, `wrapper: {name, args}`,
`batch_size`; the names are the official registry names plus `tfds` and `samples`, and the
wrappers' defaults are the official ones, so an official YAML translates line by line.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

from liif_jax.data import degradations, named_photos, own_photos, sources, wrappers

SOURCES: dict[str, Callable[..., sources.DataSource]] = {
    "image-folder": lambda root_path, first_k=None, repeat=1, cache=False, cache_dir=None, split_file=None, split_key=None: (
        sources.ImageFolder(root_path, first_k, repeat, cache, cache_dir, split_file, split_key)
    ),
    "paired-image-folders": lambda root_path_1, root_path_2, first_k=None, repeat=1, cache=False, cache_dir=None, split_file=None, split_key=None: (
        sources.PairedImageFolders(root_path_1, root_path_2, first_k, repeat, cache, cache_dir, split_file, split_key)
    ),
    "tfds": lambda name, data_dir, split, hr_key="hr", lr_key=None, first_k=None, repeat=1: sources.TfdsSource(
        name, os.path.expanduser(data_dir), split, hr_key, lr_key, first_k, repeat
    ),
    "samples": lambda split, repeat=1: sources.sample_images(split, repeat),
    "named-photos": named_photos.named_photos,
    "own-photos": own_photos.own_photos,
}

WRAPPERS: dict[str, Callable[..., Any]] = {
    "sr-implicit-downsampled": wrappers.RandomScaleDownsample,
    "sr-implicit-paired": wrappers.PairedRandomCrop,
    "sr-implicit-uniform-varied": wrappers.UniformVariedResize,
}


def _build(registry: Mapping[str, Callable[..., Any]], spec: Mapping[str, Any], what: str):
    name, args = spec.get("name"), dict(spec.get("args") or {})
    if name not in registry:
        raise ValueError(f"{what}: unknown name {name!r}; available: {', '.join(registry)}")
    try:
        return registry[name](**args)
    except TypeError as e:
        raise ValueError(f"{what} {name!r}: bad args {sorted(args)}: {e}") from None


def make_source(spec: Mapping[str, Any], what: str = "dataset") -> sources.DataSource:
    return _build(SOURCES, spec, what)


def with_cache_dir(spec: Mapping[str, Any], cache_root: str | os.PathLike) -> dict[str, Any]:
    """`spec` with `cache_dir` set to a folder under `cache_root` when it asks for `cache: bin`
    without naming one: one folder per data folder (its name and a hash of its absolute path), so
    that the training and validation splits of one folder share it and another run's folder of the
    same name does not."""
    args = dict(spec.get("args") or {})
    if args.get("cache") != "bin" or args.get("cache_dir"):
        return dict(spec)
    roots = [os.path.abspath(args[k]) for k in ("root_path", "root_path_1", "root_path_2") if args.get(k)]
    digest = hashlib.sha1("|".join(roots).encode()).hexdigest()[:8]
    name = pathlib.Path(roots[0]).name if roots else str(spec.get("name"))
    return {**spec, "args": {**args, "cache_dir": os.fspath(pathlib.Path(cache_root) / f"{name}-{digest}")}}


def make_wrapper(spec: Mapping[str, Any], what: str = "wrapper"):
    return _build(WRAPPERS, spec, what)


def make_degradation(spec: Mapping[str, Any] | None) -> degradations.Degrade | None:
    """`data.train.degradation`: {} (off) or {'name': 'realesrgan' | 'jpeg', 'args': {...}}."""
    return _build(degradations.DEGRADATIONS, spec, "data.train.degradation") if spec else None
