"""Rendering an image at any resolution: encode once, then query pixel centres in chunks.

Chunk coordinates are computed on the device from their flat pixel indices, so neither the
coordinates nor the output of all H x W queries ever sit on the device at once: memory is bounded
by the chunk size, whatever the output size.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from liif_jax.coords import coord_affine
from liif_jax.models import LIIF, MetaSR

DEFAULT_BATCH_QUERIES = 30000  # the official demo's bsize


@functools.partial(jax.jit, static_argnames=("model",))
def encode(model: LIIF | MetaSR, params, inp: jax.Array) -> jax.Array:
    return model.encode(params, inp)


@functools.partial(jax.jit, static_argnames=("model", "n", "unit_range"))
def query_chunk(model: LIIF | MetaSR, params, grid: jax.Array, start: jax.Array, geometry: jax.Array, n: int,
                unit_range: bool = False):
    """RGB of the `n` pixels from flat index `start` of an H x W output (B, n, 3).

    In [-1, 1], or mapped to [0, 1] and clamped with `unit_range` (on the device, not the host).
    `geometry` (see `output_geometry`) is data, not a static shape, so one compiled query serves
    every output size.
    """
    (h, w), first, step, cell = geometry[0].astype(jnp.int32), geometry[1], geometry[2], geometry[3]
    idx = jnp.minimum(start + jnp.arange(n), h * w - 1)  # the last chunk repeats its final pixel
    rows_cols = jnp.stack([idx // w, idx % w], axis=-1).astype(jnp.float32)
    coord = first + step * rows_cols
    b = grid.shape[0]
    rgb = model.query(params, grid, jnp.broadcast_to(coord, (b, n, 2)), jnp.broadcast_to(cell, (b, n, 2)))
    return jnp.clip(rgb * 0.5 + 0.5, 0, 1) if unit_range else rgb


def output_geometry(out_hw: tuple[int, int]) -> np.ndarray:
    """(4, 2) float32: size, first pixel centre, centre spacing and cell of an H x W output."""
    (fh, sh), (fw, sw) = coord_affine(out_hw[0]), coord_affine(out_hw[1])
    return np.array([out_hw, [fh, fw], [sh, sw], [2 / out_hw[0], 2 / out_hw[1]]], np.float32)


def render(
    model: LIIF | MetaSR,
    params,
    inp: np.ndarray,
    out_hw: tuple[int, int],
    batch_queries: int = DEFAULT_BATCH_QUERIES,
    unit_range: bool = False,
) -> np.ndarray:
    """Prediction at every pixel centre of an H x W grid: (B, H, W, 3) float32.

    `inp` is a batch of images normalised to [-1, 1] (B, h, w, 3). The output is in [-1, 1], or
    in [0, 1] and clamped with `unit_range`.
    """
    h, w = out_hw
    if h <= 0 or w <= 0 or batch_queries <= 0:
        raise ValueError(f"output size {out_hw} and batch_queries {batch_queries} must be positive")
    grid = encode(model, params, jnp.asarray(inp, jnp.float32))
    geometry = jnp.asarray(output_geometry((h, w)))
    total, n = h * w, min(batch_queries, h * w)
    out = np.empty((inp.shape[0], total, 3), np.float32)
    pending = None
    for start in range(0, total, n):
        chunk = query_chunk(model, params, grid, jnp.int32(start), geometry, n, unit_range)
        if pending is not None:  # copy the previous chunk while this one computes
            s, prev = pending
            out[:, s : s + n] = np.asarray(prev)[:, : total - s]
        pending = (start, chunk)
    s, prev = pending
    out[:, s:] = np.asarray(prev)[:, : total - s]
    return out.reshape(inp.shape[0], h, w, 3)


def upscale(model: LIIF | MetaSR, params, img01: np.ndarray, out_hw: tuple[int, int], batch_queries: int = DEFAULT_BATCH_QUERIES) -> np.ndarray:
    """One image in [0, 1] (h, w, 3) -> the model's rendering in [0, 1] (H, W, 3), clamped."""
    inp = (np.asarray(img01, np.float32)[None] - 0.5) / 0.5
    return render(model, params, inp, out_hw, batch_queries, unit_range=True)[0]
