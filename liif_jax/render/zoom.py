"""An animated zoom into the centre of an image, each frame rendered by LIIF at its own scale.

LIIF decodes any coordinate, so a frame at zoom s queries only its own pixels: the central
(H/s, W/s) input pixels, sampled at the frame size (H, W) with cells of 1/s input pixel. The
image is encoded once; every frame costs H x W queries, whatever the zoom. At zoom 1 a frame is
the central H x W crop of a plain x1 rendering. Zooms grow geometrically, so the motion looks
steady.
"""

from __future__ import annotations

import functools
import os
import pathlib
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from liif_jax.models import Model
from liif_jax.render.render import DEFAULT_BATCH_QUERIES, lte_cell_factor
from liif_jax.render.render import encode_image as _encode  # whole image, once
from liif_jax.render.render import query_points as _query  # any coordinates of it

ANIMATION_SUFFIXES = (".gif", ".webp")
FRAME_MS, LAST_FRAME_MS = 80, 1000  # ~12 frames per second; the last frame is held for a look


def zoom_scales(frames: int, scale: float) -> np.ndarray:
    """`frames` zooms from 1 to `scale`, in a constant ratio from one frame to the next."""
    if frames < 2 or not scale > 1:
        raise ValueError(f"a zoom needs at least 2 frames and a scale above 1, got {frames} frames to x{scale:g}")
    return scale ** (np.arange(frames) / (frames - 1))


def frame_queries(in_hw: tuple[int, int], frame_hw: tuple[int, int], zoom: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (fh * fw, 2), row first in [-1, 1] over the input, and the cell (2,) of the
    pixel centres of a frame showing the central (h / zoom, w / zoom) input pixels."""
    axes, cell = [], []
    for n_in, n_out in zip(in_hw, frame_hw):
        pixel = 2 / (n_in * zoom)  # one frame pixel, in the input's [-1, 1] coordinates
        axes.append((np.arange(n_out) + 0.5 - n_out / 2) * pixel)
        cell.append(pixel)
    rows, cols = np.meshgrid(*axes, indexing="ij")
    return np.stack([rows, cols], -1).reshape(-1, 2).astype(np.float32), np.array(cell, np.float32)


def render_frame(
    model: Model,
    params,
    grid: jax.Array,
    in_hw: tuple[int, int],
    frame_hw: tuple[int, int],
    zoom: float,
    batch_queries: int = DEFAULT_BATCH_QUERIES,
    scale_max: float | None = None,
) -> np.ndarray:
    """One frame (fh, fw, 3) in [0, 1] from the encoded input `grid`, in chunks of one shape
    (the last is padded) so that one compiled query serves every frame. `scale_max`: LTE's cell
    clamp above that zoom (`render.lte_cell_factor`)."""
    coord, cell = frame_queries(in_hw, frame_hw, zoom)
    cell = cell * np.float32(lte_cell_factor(zoom, scale_max))
    total, n = len(coord), min(batch_queries, len(coord))
    padded = np.concatenate([coord, np.repeat(coord[-1:], -total % n, axis=0)])
    chunks = [
        _query(model, params, grid, jnp.asarray(padded[i : i + n]), jnp.asarray(cell)) for i in range(0, total, n)
    ]
    return np.concatenate([np.asarray(c) for c in chunks])[:total].reshape(*frame_hw, 3)


def render_zoom(
    model: Model,
    params,
    img01: np.ndarray,
    frames: int,
    scale: float,
    frame_hw: tuple[int, int] | None = None,
    batch_queries: int = DEFAULT_BATCH_QUERIES,
    scale_max: float | None = None,
) -> Iterator[np.ndarray]:
    """Frames (float [0, 1], `frame_hw`, default the input size) zooming from x1 to x`scale`."""
    in_hw = img01.shape[:2]
    grid = _encode(model, params, jnp.asarray((np.asarray(img01, np.float32)[None] - 0.5) / 0.5))
    for zoom in zoom_scales(frames, scale):
        yield render_frame(model, params, grid, in_hw, frame_hw or in_hw, float(zoom), batch_queries, scale_max)


def programs(
    model: Model, params, in_hw: tuple[int, int], frame_hw: tuple[int, int], batch_queries: int = DEFAULT_BATCH_QUERIES
) -> dict[str, jax.stages.Lowered]:
    """The zoom's two programs (encode the whole image once, query one chunk of a frame), lowered
    for their shapes without running them, as `render.programs`; `program_runs` counts their runs."""
    n = min(batch_queries, frame_hw[0] * frame_hw[1])
    inp = jax.ShapeDtypeStruct((1, *in_hw, 3), jnp.float32)
    grid = jax.eval_shape(functools.partial(_encode, model), params, inp)
    query = _query.lower(
        model, params, grid, jax.ShapeDtypeStruct((n, 2), jnp.float32), jax.ShapeDtypeStruct((2,), jnp.float32)
    )
    return {"encode": _encode.lower(model, params, inp), "query": query}


def program_runs(frames: int, frame_hw: tuple[int, int], batch_queries: int = DEFAULT_BATCH_QUERIES) -> dict[str, int]:
    """How many times `render_zoom` runs each of `programs`' programs for a zoom of `frames` frames."""
    total = frame_hw[0] * frame_hw[1]
    return {"encode": 1, "query": frames * -(-total // min(batch_queries, total))}


def progress_bar(done: int, total: int, width: int = 30) -> str:
    filled = round(width * done / total)
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} frames"


def write_animation(path: str | os.PathLike, frames: list[np.ndarray]) -> None:
    """A looping GIF or WebP (by the suffix) of [0, 1] frames; the last frame is held longer."""
    if pathlib.Path(path).suffix.lower() not in ANIMATION_SUFFIXES:
        raise ValueError(f"{os.fspath(path)}: an animation is written as {' or '.join(ANIMATION_SUFFIXES)}")
    images = [Image.fromarray((np.clip(f, 0, 1) * 255 + 0.5).astype(np.uint8)) for f in frames]
    durations = [FRAME_MS] * (len(images) - 1) + [LAST_FRAME_MS]
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0)


def save_zoom(
    model: Model,
    params,
    img01: np.ndarray,
    path: str | os.PathLike,
    frames: int,
    scale: float,
    frame_hw: tuple[int, int] | None = None,
    batch_queries: int = DEFAULT_BATCH_QUERIES,
    report: Callable[[str], None] = lambda line: None,
    scale_max: float | None = None,
) -> None:
    """Renders the zoom, reporting a progress bar line after each frame, and writes it to `path`."""
    done = []
    for frame in render_zoom(model, params, img01, frames, scale, frame_hw, batch_queries, scale_max):
        done.append(frame)
        report(progress_bar(len(done), frames))
    write_animation(path, done)
