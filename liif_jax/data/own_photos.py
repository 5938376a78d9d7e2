"""A folder of one's own photographs as a data source (`own-photos`), for `python -m liif_jax.train --photos FOLDER`.

Every image under FOLDER, in any sub-folder, is a photograph. A few, spread evenly over the sorted
names, are held out for validation and the final table (`split`); the others train. Photographs
larger than DIV2K's (long side 2040 px) are shrunk to it once (PIL bicubic), into the run's decode
cache, as the shipped model's were.

The training recipe for such a folder is `liif_jax.configs.own_photos`.
"""

from __future__ import annotations

import functools
import os
import pathlib

import numpy as np

from liif_jax.data.imaging import IMAGE_SUFFIXES, ImageError, load_rgb
from liif_jax.data.named_photos import shrink_to
from liif_jax.data.sources import CachedImages, cache_names

MAX_SIDE = 2040  # DIV2K's long side
MAX_HELD_OUT = 5


def list_photos(root: str | os.PathLike) -> list[pathlib.Path]:
    """The image files under `root`, in any sub-folder (hidden ones skipped), sorted by their path
    under `root`."""
    folder = pathlib.Path(root)
    if not folder.is_dir():
        raise ImageError(f"--photos {os.fspath(root)!r} is not a folder")
    files = [
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]
    files.sort(key=lambda p: p.relative_to(folder).as_posix())
    if len(files) < 2:
        raise ImageError(
            f"--photos {os.fspath(root)!r} holds {len(files)} image file(s) ({'/'.join(IMAGE_SUFFIXES)}) "
            "in it and its sub-folders; it needs at least 2, since one is held out"
        )
    return files


def held_out(n: int) -> list[int]:
    """Indices of the photographs held out of `n`: one in five (at least 1, at most 5), evenly spread
    over the sorted names so that they do not all come from the same day or place."""
    k = min(MAX_HELD_OUT, max(1, n // 5))
    return sorted({min(n - 1, int((i + 0.5) * n / k)) for i in range(k)})


def split(root: str | os.PathLike) -> dict[str, list[pathlib.Path]]:
    files = list_photos(root)
    val = set(held_out(len(files)))
    return {
        "train": [f for i, f in enumerate(files) if i not in val],
        "val": [f for i, f in enumerate(files) if i in val],
    }


def _decode(path: pathlib.Path, max_side: int | None) -> np.ndarray:
    return shrink_to(load_rgb(path), max_side)


class OwnPhotos:
    """The `split` ("train" or "val") photographs under `root_path` (the `own-photos` source),
    shrunk to `max_side` and decoded once (`cache`, as `ImageFolder`'s), `repeat` times over."""

    def __init__(
        self,
        root_path: str | os.PathLike,
        split_name: str,
        repeat: int = 1,
        max_side: int | None = MAX_SIDE,
        cache: bool | str = "bin",
        cache_dir: str | os.PathLike | None = None,
    ):
        splits = split(root_path)
        if split_name not in splits:
            raise ValueError(f"split must be 'train' or 'val', got {split_name!r}")
        if repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {repeat}")
        files = splits[split_name]
        names = [f"{name}.max{max_side}" for name in cache_names(files, root_path)]
        self._images = CachedImages(files, cache, cache_dir, names, functools.partial(_decode, max_side=max_side))
        self.files, self.repeat = files, repeat

    def __len__(self) -> int:
        return len(self.files) * self.repeat

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a source of length {len(self)}")
        return self._images[index % len(self.files)]

    def describe(self, index: int) -> str:
        return os.fspath(self.files[index % len(self.files)])


def own_photos(
    root_path: str,
    split: str,
    repeat: int = 1,
    max_side: int | None = MAX_SIDE,
    cache: bool | str = "bin",
    cache_dir: str | None = None,
) -> OwnPhotos:
    return OwnPhotos(root_path, split, repeat, max_side, cache, cache_dir)
