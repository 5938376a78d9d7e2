"""Photographs named in a split file and found anywhere under one folder (the `named-photos` source).

The shipped model (`liif_jax/pretrained/`) was trained on wallpaper photographs that Debian
installs in two layouts (`/usr/share/backgrounds/X.jpg` and `.../mate/nature/Y.jpg`). They are not
in this repository, so the config names them by file and this source looks for each name under one
folder: the Debian folder, or any folder of copies, in whatever sub-folders. `shrink` resizes the
photographs of other split keys as the training copies were made (PIL bicubic, long side at most
the given size): {"lomiri": 2040} shrinks the photographs listed under "lomiri".
"""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
from PIL import Image

from liif_jax.data.imaging import ImageError, load_rgb
from liif_jax.data.sources import ArraySource


def find_named(root: str | os.PathLike, names: list[str]) -> tuple[list[pathlib.Path], list[str]]:
    """(paths of `names` in their order, names not found) under `root`, searched recursively.

    A name found in two places is an error: which copy trained the model would be a guess.
    """
    wanted, found = set(names), {}
    for folder, _, files in os.walk(root):
        for name in wanted.intersection(files):
            if name in found:
                raise ImageError(
                    f"{name} is both in {found[name].parent} and in {folder}; keep one copy under {os.fspath(root)!r}"
                )
            found[name] = pathlib.Path(folder) / name
    return [found[n] for n in names if n in found], [n for n in names if n not in found]


def shrink_to(img: np.ndarray, max_side: int | None) -> np.ndarray:
    """PIL bicubic resize so that the long side is at most `max_side` (never enlarged)."""
    h, w = img.shape[:2]
    if max_side is None or max(h, w) <= max_side:
        return img
    k = max_side / max(h, w)
    size = (max(1, round(w * k)), max(1, round(h * k)))
    return np.asarray(Image.fromarray(img).resize(size, Image.BICUBIC))


def named_photos(
    root_path: str,
    split_file: str,
    split_key: str,
    repeat: int = 1,
    shrink: dict[str, int] | None = None,
    missing_help: str = "",
) -> ArraySource:
    """The `split_key` photographs of `split_file` under `root_path`, decoded once into memory.

    `missing_help` is appended to the error when photographs are missing (where to get them).
    """
    try:
        splits = json.loads(pathlib.Path(split_file).read_text())
        names = splits[split_key]
        max_side = {name: side for key, side in (shrink or {}).items() for name in splits[key]}
    except (OSError, ValueError, KeyError) as err:
        raise ImageError(
            f"split file {split_file!r}: cannot read split {err!s}; it needs {split_key!r} and "
            f"the keys of shrink {sorted(shrink or {})}"
        ) from err
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    files, missing = find_named(root_path, names) if pathlib.Path(root_path).is_dir() else ([], names)
    if missing:
        raise ImageError(
            f"{len(missing)} of the {len(names)} {split_key!r} photographs of {split_file} are not under "
            f"{root_path!r} (e.g. {', '.join(missing[:3])}). {missing_help}".rstrip()
        )
    images = [shrink_to(load_rgb(f), max_side.get(f.name)) for f in files]
    return ArraySource(images * repeat, [os.fspath(f) for f in files] * repeat)
