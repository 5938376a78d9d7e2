"""The Python API: `load` a model, `Upscaler.upscale` an image, `encode` it once and query any point,
or `train` a model. What the command lines do, from Python:

    model = liif_jax.load("pretrained:edsr-baseline-liif")
    big = model.upscale(photo, scale=3.5)  # what `python -m liif_jax.demo --scale 3.5` writes
    rgb = model.encode(photo).query([[0.0, 0.0]], cell=(2 / 600, 2 / 900))

jax and the models are imported on first use, so that `import liif_jax` stays cheap for the CLIs.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import ml_collections

    from liif_jax.models import Model

QUERY_BUCKET = 256  # queries are padded to a power of two from here, so few sizes compile


def load(model: str | os.PathLike, step: int | None = None, dtype: Any = None) -> Upscaler:
    """An `Upscaler` from `pretrained:NAME`, a training workdir, a checkpoint directory, or an
    official LIIF or LTE `.pth`; `step` picks a checkpoint (default: the latest), `dtype` (e.g.
    jnp.bfloat16) the compute dtype."""
    from liif_jax.formats.checkpoints import load_model

    return Upscaler(*load_model(model, step, dtype))


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Upscaler:
    """A model and its parameters (`liif_jax.models.Model`, a params tree): renders any size."""

    model: Model
    params: Any

    @property
    def name(self) -> str:
        """The architecture in a few words: 'EDSR-baseline 16x64, MLP 256x4'."""
        from liif_jax.models import describe

        return describe(self.model)

    def __repr__(self) -> str:  # the params would print megabytes
        return f"Upscaler({self.name})"

    def upscale(
        self,
        image: Any,
        scale: float | None = None,
        size: tuple[int, int] | None = None,
        tile: int | None = None,
    ) -> np.ndarray:
        """uint8 (H, W, 3): the PNG that `python -m liif_jax.demo --scale S` (or `--resolution H,W`)
        writes for this image, pixel for pixel. `image`: uint8 (h, w, 3), or float in [0, 1].
        Exactly one of `scale` (round(h S) x round(w S); int(h S) x int(w S) for LTE's models, as
        LTE's demo) and `size` (height, width). `tile`: input pixels per tile side, None: the
        largest that fits the device's memory, 0: the whole image (the output is the same)."""
        from liif_jax.render import render

        img01 = as_float01(image)
        if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int | np.integer) or tile < 0):
            raise ValueError(f"tile must be 0 (the whole image) or a positive integer, got {tile!r}")
        return render.upscale_image(self.model, self.params, img01, scale, size, tile)

    def encode(self, image: Any) -> Latents:
        """The encoder's output for the whole image, once, for `Latents.query` at any points."""
        import jax.numpy as jnp

        from liif_jax.render import render

        img01 = as_float01(image)
        grid = render.encode_image(self.model, self.params, jnp.asarray((img01[None] - 0.5) / 0.5))
        return Latents(self.model, self.params, grid, img01.shape[:2])


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Latents:
    """An encoded image (`Upscaler.encode`): query its colour at any coordinates."""

    model: Model
    params: Any
    grid: Any  # the model's latents (a pytree of device arrays)
    in_hw: tuple[int, int]  # the encoded image's size

    def __repr__(self) -> str:
        return f"Latents({self.in_hw[0]}x{self.in_hw[1]} image)"

    def query(self, coords: Any, cell: tuple[float, float] | None = None) -> np.ndarray:
        """float32 RGB in [0, 1], shape coords.shape[:-1] + (3,), at `coords` (..., 2) = (y, x) in
        [-1, 1], row first: (-1, -1) is the top-left corner of the image, (1, 1) the bottom-right one.

        Coordinates and cell follow the official LIIF code: the pixel centres of an H x W output are
        y = -1 + (2 i + 1) / H and x = -1 + (2 j + 1) / W (`liif_jax.models.coords.make_coord`), and
        `cell` = (cell height, cell width) = (2 / H, 2 / W) is the size of an output pixel in those
        units (default: the input's pixel, 2 / h, 2 / w); these give `upscale(size=(H, W))`'s values
        before uint8 rounding. LTE's models get the demo's cell clamp above x4 (`render.scale_max_for`).
        """
        import jax.numpy as jnp

        from liif_jax.render import render

        coords = np.asarray(coords, np.float32)
        if coords.ndim < 1 or coords.shape[-1] != 2:
            raise ValueError(f"coords must be an array of (y, x) pairs, shape (..., 2); got shape {coords.shape}")
        flat = coords.reshape(-1, 2)
        if not (np.isfinite(flat).all() and np.abs(flat).max(initial=0) <= 1):
            raise ValueError("coords must be (y, x) in [-1, 1] (the image spans [-1, 1] on each axis)")
        h, w = self.in_hw
        cell = (2 / h, 2 / w) if cell is None else cell
        cell_arr = np.asarray(cell, np.float32)
        if cell_arr.shape != (2,) or not (np.isfinite(cell_arr).all() and (cell_arr > 0).all()):
            raise ValueError(
                f"cell must be (cell height, cell width), two positive numbers (2 / output size); got {cell!r}"
            )
        scale = 2 / (float(cell_arr[0]) * h)  # the output rows per input row this cell is for
        cell_arr = cell_arr * np.float32(render.lte_cell_factor(scale, render.scale_max_for(self.model)))
        n = len(flat)
        if n == 0:
            return np.zeros((*coords.shape[:-1], 3), np.float32)
        chunk = min(render.default_batch_queries(), max(QUERY_BUCKET, 1 << (n - 1).bit_length()))
        padded = np.concatenate([flat, np.repeat(flat[-1:], -n % chunk, axis=0)])
        out = [
            render.query_points(self.model, self.params, self.grid, jnp.asarray(padded[i : i + chunk]), cell_arr)
            for i in range(0, n, chunk)
        ]
        return np.concatenate([np.asarray(o) for o in out])[:n].reshape(*coords.shape[:-1], 3)


def as_float01(image: Any) -> np.ndarray:
    """float32 (h, w, 3) in [0, 1] from uint8 (h, w, 3) as the demo reads a file (k / 255), or from
    floats already in [0, 1]; anything else is refused in one line that says what was given."""
    from liif_jax.data import imaging

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"image must be H x W x 3 (RGB), got shape {img.shape}")
    if img.dtype == np.uint8:
        return imaging.to_float01(img)
    if not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f"image must be uint8 or float in [0, 1], got dtype {img.dtype}")
    img = img.astype(np.float32)
    finite = np.isfinite(img)
    if not (finite.all() and img.min() >= 0 and img.max() <= 1):
        seen = img[finite]
        got = f"[{seen.min():g}, {seen.max():g}]" if seen.size else "no finite values"
        raise ValueError(
            f"a float image must hold values in [0, 1], got {got}" + ("" if finite.all() else " and NaN or Inf")
        )
    return img


def train(
    workdir: str | os.PathLike,
    config: str | ml_collections.ConfigDict = "quickstart",
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """`python -m liif_jax.train --workdir DIR --config CONFIG --config.KEY=VALUE ...` from Python:
    trains (or resumes) the run in `workdir` and returns its last logged metrics. `config`: a
    shipped config's name, a config file, an official .yaml (`liif_jax.configs.load`) or a
    ConfigDict; `overrides`: {dotted key: value}, e.g. {"num_steps": 10, "final_eval.scales": (4,)}."""
    import ml_collections

    from liif_jax import configs
    from liif_jax.training import trainer

    if isinstance(config, ml_collections.ConfigDict):
        config = copy.deepcopy(config)  # the caller's stays as it is
    else:
        config = configs.load(os.fspath(config))
    configs.set_values(config, overrides or {})
    return trainer.train_and_evaluate(config, workdir)
