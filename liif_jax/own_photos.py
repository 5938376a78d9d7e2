"""Training on a folder of one's own photographs: `python -m liif_jax.train --workdir W --photos FOLDER`.

Every image under FOLDER, in any sub-folder, is a photograph. A few, spread evenly over the sorted
names, are held out for validation and the final table (`split`); the others train. Photographs
larger than DIV2K's (long side 2040 px) are shrunk to it once (PIL bicubic), into the run's decode
cache, as the shipped model's were.

The recipe is the official one (random scale x1-x4, L1 loss, Adam, lr halved late), sized for the
machine (`recipe`): on a CPU a small model (EDSR-baseline 4x32, MLP 128x2, 32 px inputs) that shows
learning within minutes; on a GPU or TPU the paper's EDSR-baseline-LIIF with the schedule that made
the shipped model. Epochs, validation crops and logging are counted in steps, not in passes over a
folder of a few photographs. This file is also the config file that `--photos` loads
(`--config liif_jax/own_photos.py:FOLDER`), so `--config.KEY=VALUE` overrides apply to the recipe.
"""

from __future__ import annotations

import functools
import math
import os
import pathlib

import ml_collections
import numpy as np

from liif_jax import shipped
from liif_jax.configs import base_config, downsampled, liif_spec
from liif_jax.imaging import IMAGE_SUFFIXES, ImageError, load_rgb
from liif_jax.named_photos import shrink_to
from liif_jax.sources import CachedImages, cache_names

MAX_SIDE = 2040  # DIV2K's long side
MAX_HELD_OUT = 5
SHIPPED = "edsr-baseline-liif"  # the model shown beside the run in the final table

# The recipes: model, crops and batch, learning rate, length in epochs of `epoch_steps` steps,
# logging and validation intervals, and how much of each held-out photograph the final table uses.
RECIPES = {
    "cpu": {"model": liif_spec("edsr-baseline", {"n_resblocks": 4, "n_feats": 32}, hidden_list=(128, 128)),
            "inp_size": 32, "sample_q": 1024, "batch_size": 8, "lr": 4e-4, "epoch_steps": 100, "epochs": 30,
            "log_every_steps": 50, "eval_every_steps": 250, "val_crops": 64, "center_crop": 512},
    "accelerator": {"model": liif_spec("edsr-baseline"), "inp_size": 48, "sample_q": 2304, "batch_size": 16,
                    "lr": 2e-4, "epoch_steps": 1000, "epochs": 22, "log_every_steps": 500,
                    "eval_every_steps": 2000, "val_crops": 128, "center_crop": None},
}


def list_photos(root: str | os.PathLike) -> list[pathlib.Path]:
    """The image files under `root`, in any sub-folder (hidden ones skipped), sorted by their path
    under `root`."""
    folder = pathlib.Path(root)
    if not folder.is_dir():
        raise ImageError(f"--photos {os.fspath(root)!r} is not a folder")
    files = [p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    files.sort(key=lambda p: p.relative_to(folder).as_posix())
    if len(files) < 2:
        raise ImageError(f"--photos {os.fspath(root)!r} holds {len(files)} image file(s) ({'/'.join(IMAGE_SUFFIXES)}) "
                         "in it and its sub-folders; it needs at least 2, since one is held out")
    return files


def held_out(n: int) -> list[int]:
    """Indices of the photographs held out of `n`: one in five (at least 1, at most 5), evenly spread
    over the sorted names so that they do not all come from the same day or place."""
    k = min(MAX_HELD_OUT, max(1, n // 5))
    return sorted({min(n - 1, int((i + 0.5) * n / k)) for i in range(k)})


def split(root: str | os.PathLike) -> dict[str, list[pathlib.Path]]:
    files = list_photos(root)
    val = set(held_out(len(files)))
    return {"train": [f for i, f in enumerate(files) if i not in val], "val": [f for i, f in enumerate(files) if i in val]}


def _decode(path: pathlib.Path, max_side: int | None) -> np.ndarray:
    return shrink_to(load_rgb(path), max_side)


class OwnPhotos:
    """The `split` ("train" or "val") photographs under `root_path` (the `own-photos` source),
    shrunk to `max_side` and decoded once (`cache`, as `ImageFolder`'s), `repeat` times over."""

    def __init__(self, root_path: str | os.PathLike, split_name: str, repeat: int = 1, max_side: int | None = MAX_SIDE,
                 cache: bool | str = "bin", cache_dir: str | os.PathLike | None = None):
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


def own_photos(root_path: str, split: str, repeat: int = 1, max_side: int | None = MAX_SIDE, cache: bool | str = "bin",
               cache_dir: str | None = None) -> OwnPhotos:
    return OwnPhotos(root_path, split, repeat, max_side, cache, cache_dir)


def recipe(folder: str | os.PathLike, machine: str, num_workers: int) -> ml_collections.ConfigDict:
    """The config that trains on the photographs under `folder` on a `machine` ("cpu" or
    "accelerator") with `num_workers` grain worker processes."""
    r = RECIPES[machine]
    root = os.path.abspath(folder)
    parts = split(root)
    n_train, n_val = len(parts["train"]), len(parts["val"])

    def photos(which: str, repeat: int = 1) -> dict:
        return {"name": "own-photos", "args": {"root_path": root, "split": which, "repeat": repeat, "cache": "bin"}}

    wrapper = lambda augment: downsampled(inp_size=r["inp_size"], sample_q=r["sample_q"], augment=augment)
    epochs = r["epochs"]
    c = base_config(r["model"], photos("train", math.ceil(r["epoch_steps"] * r["batch_size"] / n_train)),
                    photos("val", math.ceil(r["val_crops"] / n_val)), wrapper(True), wrapper(False),
                    batch_size=r["batch_size"], epochs=epochs, milestones=(epochs // 2, 3 * epochs // 4), lr=r["lr"])
    c.log_every_steps = r["log_every_steps"]
    c.eval_every_steps = c.checkpoint_every_steps = r["eval_every_steps"]
    c.num_workers = num_workers
    c.final_eval.dataset = photos("val")
    c.final_eval.scales = (2, 3, 4, 6, 12)
    c.final_eval.compare_with = f"{shipped.PRETRAINED_PREFIX}{SHIPPED}" if SHIPPED in shipped.pretrained_names() else ""
    if r["center_crop"]:
        c.final_eval.center_crop = r["center_crop"]
    return c


def get_config(folder: str) -> ml_collections.ConfigDict:
    """The recipe for this machine: `--photos FOLDER` loads this file with FOLDER as its argument."""
    import jax  # Here, not at the top: the sources above run in grain workers, which need no JAX.

    machine = "cpu" if jax.default_backend() == "cpu" else "accelerator"
    return recipe(folder, machine, 0 if machine == "cpu" else max(1, min(14, (os.cpu_count() or 2) - 2)))
