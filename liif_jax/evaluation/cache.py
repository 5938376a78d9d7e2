"""Results of a saved model on an evaluation set, kept between runs: the model a training run is
compared with (the shipped one) gives the same numbers every time, so it is evaluated once.

An entry is one small JSON file named by a hash of everything the numbers depend on: the model's
path, step and the time its files were written, the images' names and pixels, the scales, the
protocol and the crop. It lives in `$LIIF_JAX_CACHE`, else `$XDG_CACHE_HOME/liif_jax/eval`, else
`~/.cache/liif_jax/eval`. An unreadable entry is reported, ignored and written again.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from liif_jax import pretrained
from liif_jax.evaluation.report import ImageResult
from liif_jax.formats import checkpoints
from liif_jax.formats.atomic import written_whole

VERSION = 1  # of the entries' layout and of what the key covers


def cache_dir() -> pathlib.Path:
    if os.environ.get("LIIF_JAX_CACHE"):
        return pathlib.Path(os.environ["LIIF_JAX_CACHE"])
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(root) / "liif_jax" / "eval"


def model_identity(model: str | os.PathLike) -> dict[str, Any]:
    """The saved model's path, step and write time: what tells one saved model from another."""
    path = pathlib.Path(pretrained.model_path(model)).resolve()
    if path.is_file():  # an official .pth
        return {"path": os.fspath(path), "step": None, "mtime_ns": path.stat().st_mtime_ns}
    directory, step = checkpoints.resolve(path)
    return {"path": os.fspath(directory), "step": step, "mtime_ns": (directory / str(step)).stat().st_mtime_ns}


def key(
    model: str | os.PathLike,
    source: Sequence[Any],
    scales: Sequence[float],
    protocol: str,
    crop: int | None,
    degrade: str | None = None,
) -> str:
    """The entry's name: a hash of the model's identity and of the evaluation (every image's name
    and pixels, as the evaluation reads them, scales, protocol, crop, degradation of the inputs)."""
    images = hashlib.sha256()
    for i in range(len(source)):
        name = source.describe(i) if hasattr(source, "describe") else str(i)
        images.update(name.encode() + b"\0")
        element = source[i]
        for part in element.values() if isinstance(element, Mapping) else (element,):
            array = np.ascontiguousarray(part)
            images.update(repr((array.dtype.str, array.shape)).encode() + array.tobytes())
    described = {
        "version": VERSION,
        "model": model_identity(model),
        "images": images.hexdigest(),
        "scales": [float(s) for s in scales],
        "protocol": protocol,
        "crop": crop,
        **({"degrade": degrade} if degrade else {}),  # entries of clean inputs keep their names
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:32]


def load(entry: str) -> tuple[str, list[ImageResult]] | None:
    """(the model's label, its results) of a cached evaluation, or None; a damaged entry is said
    and ignored (the evaluation runs and writes it again)."""
    path = cache_dir() / f"{entry}.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        return data["label"], [ImageResult(**r) for r in data["results"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        print(f"warning: ignoring the unreadable evaluation cache {path} ({err}); evaluating again", file=sys.stderr)
        return None


def store(entry: str, label: str, results: Sequence[ImageResult]) -> pathlib.Path | None:
    """Writes an entry, whole; a cache that cannot be written is said and skipped, never an error."""
    path = cache_dir() / f"{entry}.json"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with written_whole(path) as tmp:
            rows = [
                {"name": r.name, "scale": float(r.scale), "psnr": float(r.psnr), "bicubic_psnr": float(r.bicubic_psnr)}
                for r in results
            ]
            tmp.write_text(json.dumps({"label": label, "results": rows}, indent=1) + "\n")
    except OSError as err:
        print(f"warning: cannot write the evaluation cache {path} ({err})", file=sys.stderr)
        return None
    return path
