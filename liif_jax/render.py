"""Rendering an image at any resolution, tile by tile, in bounded device memory.

The input is encoded in tiles of `tile` x `tile` pixels with a halo (see `liif_jax.tiling`), and
each tile's output is queried in blocks of at most `MAX_BLOCK` x `MAX_BLOCK` pixels, each block
one compiled program that loops over `batch_queries` queries at a time. Device memory therefore
depends on the tile size and `batch_queries`, not on the image size; the output is the
whole-image rendering's (`tile=0`), and finished blocks are copied to the host while the next
computes. Encoders whose features are not local (RCAN, SwinIR) are encoded whole, and keep their
whole feature map (SwinIR's is padded to its window).
"""

from __future__ import annotations

import functools
import logging
import math

import jax
import jax.numpy as jnp
import numpy as np

from liif_jax import liif, tiling
from liif_jax.coords import centre, coord_affine
from liif_jax.layers import Dtype
from liif_jax.models import Model

DEFAULT_BATCH_QUERIES = 30000  # the official demo's bsize: the default on accelerators
CPU_BATCH_QUERIES = 8192  # the default on a CPU, where larger steps cost host memory, not time
DEFAULT_TILE = 256  # input pixels per tile side
MAX_BLOCK = 512  # output pixels per side of one query program

log = logging.getLogger(__name__)


@functools.partial(jax.jit, static_argnames=("model", "crop"))
def encode_tile(model: Model, params, window: jax.Array, crop_start: jax.Array, crop: tuple[int, int]):
    """Latents (B, *crop, D) of the crop at `crop_start` (window pixels) of an input window; all of
    them when the crop is the whole window (an encoder that cannot be tiled: its map may be larger).

    The features may be several maps at the input's resolution (LTE: features and input), each
    cropped alike."""
    feat = model.features(params, window)
    if tuple(crop) == window.shape[1:3]:
        return model.latents(params, feat)
    f = jax.tree.leaves(feat)[0].shape[1] // window.shape[1]  # 1, or the scale of an upsampling encoder
    crop_map = lambda x: jax.lax.dynamic_slice(x, (0, crop_start[0] * f, crop_start[1] * f, 0),
                                               (x.shape[0], crop[0] * f, crop[1] * f, x.shape[3]))
    return model.latents(params, jax.tree.map(crop_map, feat))


@functools.partial(jax.jit, static_argnames=("model", "block", "batch_queries", "unit_range", "mlp_dtype"))
def query_block(
    model: Model,
    params,
    grid: jax.Array,
    lattice: liif.Lattice,
    geometry: jax.Array,
    rows: jax.Array,
    cols: jax.Array,
    block: tuple[int, int],
    batch_queries: int,
    unit_range: bool = False,
    mlp_dtype: Dtype = None,
) -> jax.Array:
    """RGB (B, *block, 3) of output rows [rows[0], rows[1]) x cols [cols[0], cols[1]), from the
    latents `grid` that `lattice` places in the whole image's grid.

    Pixels past the ranges repeat the last row / column (cropped by the caller). In [-1, 1], or
    mapped to [0, 1] and clamped with `unit_range`. `geometry` (see `output_geometry`) and the
    ranges are data, so one program serves every block of every output of this block size.
    """
    (qh, qw), b = block, jax.tree.leaves(grid)[0].shape[0]
    first, step, cell = geometry[1], geometry[2], geometry[3]
    r = jnp.minimum(rows[0] + jnp.arange(qh), rows[1] - 1).astype(jnp.float32)
    c = jnp.minimum(cols[0] + jnp.arange(qw), cols[1] - 1).astype(jnp.float32)
    y, x = centre(first[0], step[0], r), centre(first[1], step[1], c)
    coord = jnp.stack(jnp.broadcast_arrays(y[:, None], x[None, :]), axis=-1).reshape(qh * qw, 2)
    n = qh * qw
    bq = min(batch_queries, n)
    n_blocks = math.ceil(n / bq)
    coord = jnp.pad(coord, ((0, n_blocks * bq - n), (0, 0)), mode="edge").reshape(n_blocks, bq, 2)

    def one(chunk: jax.Array) -> jax.Array:
        rgb = model.query(params, grid, jnp.broadcast_to(chunk, (b, bq, 2)), jnp.broadcast_to(cell, (b, bq, 2)),
                          lattice, mlp_dtype)
        return jnp.clip(rgb * 0.5 + 0.5, 0, 1) if unit_range else rgb

    out = jax.lax.map(one, coord)  # (n_blocks, B, bq, 3)
    return out.transpose(1, 0, 2, 3).reshape(b, n_blocks * bq, 3)[:, :n].reshape(b, qh, qw, 3)


def default_batch_queries() -> int:
    return CPU_BATCH_QUERIES if jax.default_backend() == "cpu" else DEFAULT_BATCH_QUERIES


def output_geometry(out_hw: tuple[int, int], cell_factor: float = 1.0) -> np.ndarray:
    """(4, 2) float32: size, first pixel centre, centre spacing and cell of an H x W output; the
    cell times `cell_factor` (LTE's cell clamp), multiplied in float32 as LTE's code does."""
    (fh, sh), (fw, sw) = coord_affine(out_hw[0]), coord_affine(out_hw[1])
    cell = np.array([2 / out_hw[0], 2 / out_hw[1]], np.float32) * np.float32(cell_factor)
    return np.array([out_hw, [fh, fw], [sh, sw], cell], np.float32)


LTE_SCALE_MAX = 4  # LTE's demo.py and test.py: the largest training scale, for the cell clamp


def lte_family(model: Model) -> bool:
    """A model of LTE's code (LTE, or LIIF / MetaSR on its SwinIR encoder): LTE's demo and test
    clamp its cell above x`LTE_SCALE_MAX` and its demo sizes outputs int(h * S) x int(w * S)."""
    return model.spec["name"] == "lte" or model.spec["args"]["encoder_spec"]["name"] == "swinir"


def scale_max_for(model: Model, flag: float | None = None) -> float | None:
    """The cell clamp's scale: `flag` if given (0: no clamp), else LTE's 4 for its models and none
    for LIIF's, as each code's demo and test do."""
    if flag is not None:
        return flag or None
    return LTE_SCALE_MAX if lte_family(model) else None


def lte_cell_factor(scale: float, scale_max: float | None) -> float:
    """LTE's cell clamp (its demo.py and test.py): a query at a scale beyond the largest training
    scale `scale_max` gets its cell times scale / scale_max, as if it were at most that scale's
    (LTE's demo takes scale = output rows / input rows). 1 without `scale_max` (LIIF's code)."""
    return 1.0 if not scale_max else max(scale / scale_max, 1.0)


def plan(model: Model, in_hw: tuple[int, int], out_hw: tuple[int, int], tile: int) -> tiling.Plan:
    """The render's tiles; says in a log line when the encoder cannot be tiled."""
    if tile > 0 and tiling.local_radius(model) is None:
        log.warning("%s encoder: features are not local (or not known to liif_jax.tiling); encoding the whole image",
                    model.spec["args"]["encoder_spec"]["name"])
    return tiling.plan(model, in_hw, out_hw, tile, MAX_BLOCK)


def render(
    model: Model,
    params,
    inp: np.ndarray,
    out_hw: tuple[int, int],
    batch_queries: int | None = None,
    unit_range: bool = False,
    tile: int = DEFAULT_TILE,
    mlp_dtype: Dtype = None,
    cell_factor: float = 1.0,
) -> np.ndarray:
    """Prediction at every pixel centre of an H x W grid: (B, H, W, 3) float32.

    `inp` is a batch of images normalised to [-1, 1] (B, h, w, 3). The output is in [-1, 1], or
    in [0, 1] and clamped with `unit_range`. `tile`: input pixels per tile side (0: the whole
    image at once; the output is the same). `batch_queries`: queries per step of the decoder
    (None: `default_batch_queries()`). `mlp_dtype` (e.g. bfloat16) computes the MLP in it.
    `cell_factor` multiplies every query's cell (LTE's cell clamp, see `lte_cell_factor`).
    """
    h, w = out_hw
    batch_queries = default_batch_queries() if batch_queries is None else batch_queries
    if h <= 0 or w <= 0 or batch_queries <= 0 or tile < 0:
        raise ValueError(f"output size {out_hw} and batch_queries {batch_queries} must be positive, tile {tile} >= 0")
    inp = np.asarray(inp, np.float32)
    p = plan(model, inp.shape[1:3], out_hw, tile)
    geometry = jnp.asarray(output_geometry(out_hw, cell_factor))
    block = (p.rows.block, p.cols.block)
    out = np.empty((inp.shape[0], h, w, 3), np.float32)
    pending = None
    for i, (ys, cy) in enumerate(zip(p.rows.window_starts, p.rows.crop_starts)):
        for j, (xs, cx) in enumerate(zip(p.cols.window_starts, p.cols.crop_starts)):
            window = jnp.asarray(inp[:, ys : ys + p.rows.window, xs : xs + p.cols.window])
            grid = encode_tile(model, params, window, jnp.array([cy - ys, cx - xs], jnp.int32), (p.rows.crop, p.cols.crop))
            if pending is None:  # the encoder's activations are gone before the query program first compiles
                jax.block_until_ready(grid)
            lattice = liif.lattice(_feature_size(p, inp.shape[1:3], grid), (cy, cx))
            for rows in p.rows.blocks(i):
                for cols in p.cols.blocks(j):
                    rgb = query_block(model, params, grid, lattice, geometry, np.array(rows, np.int32),
                                      np.array(cols, np.int32), block, batch_queries, unit_range, mlp_dtype)
                    if pending is not None:  # copy the previous block while this one computes
                        _copy(out, *pending)
                    pending = (rows, cols, rgb)
    _copy(out, *pending)
    return out


def _feature_size(p: tiling.Plan, in_hw: tuple[int, int], grid) -> tuple[int, int]:
    """The whole image's latent grid size: the input's, or on an axis encoded whole the map's own
    (SwinIR pads it; an upsampling encoder's map is larger, and its query reads no lattice)."""
    map_hw = jax.tree.leaves(grid)[0].shape[1:3]
    return tuple(m if axis.window == axis.crop else n for axis, n, m in zip((p.rows, p.cols), in_hw, map_hw))


def _copy(out: np.ndarray, rows: tuple[int, int], cols: tuple[int, int], rgb: jax.Array) -> None:
    (r0, r1), (c0, c1) = rows, cols
    out[:, r0:r1, c0:c1] = np.asarray(rgb)[:, : r1 - r0, : c1 - c0]


def upscale(
    model: Model,
    params,
    img01: np.ndarray,
    out_hw: tuple[int, int],
    batch_queries: int | None = None,
    tile: int = DEFAULT_TILE,
    mlp_dtype: Dtype = None,
    cell_factor: float = 1.0,
) -> np.ndarray:
    """One image in [0, 1] (h, w, 3) -> the model's rendering in [0, 1] (H, W, 3), clamped."""
    inp = (np.asarray(img01, np.float32)[None] - 0.5) / 0.5
    return render(model, params, inp, out_hw, batch_queries, unit_range=True, tile=tile, mlp_dtype=mlp_dtype,
                  cell_factor=cell_factor)[0]


def programs(
    model: Model,
    params,
    in_hw: tuple[int, int],
    out_hw: tuple[int, int],
    tile: int = DEFAULT_TILE,
    batch_queries: int | None = None,
    batch: int = 1,
    unit_range: bool = True,
    mlp_dtype: Dtype = None,
) -> dict[str, jax.stages.Lowered]:
    """The render's two programs (encode a tile, query a block), lowered for their shapes without
    running them: for compiling ahead of time and for their `memory_analysis()`. `program_runs`
    says how many times a render runs each."""
    p = plan(model, in_hw, out_hw, tile)
    batch_queries = default_batch_queries() if batch_queries is None else batch_queries
    spec = lambda shape, dtype=jnp.float32: jax.ShapeDtypeStruct(shape, dtype)
    window = spec((batch, p.rows.window, p.cols.window, 3))
    encode = encode_tile.lower(model, params, window, spec((2,), jnp.int32), (p.rows.crop, p.cols.crop))
    grid = jax.eval_shape(lambda q, x, s: encode_tile(model, q, x, s, (p.rows.crop, p.cols.crop)),
                          params, window, spec((2,), jnp.int32))
    lattice = jax.tree.map(lambda a: spec(a.shape, a.dtype), liif.lattice(in_hw))
    query = query_block.lower(model, params, grid, lattice, spec((4, 2)), spec((2,), jnp.int32), spec((2,), jnp.int32),
                              (p.rows.block, p.cols.block), batch_queries, unit_range, mlp_dtype)
    return {"encode_tile": encode, "query_block": query}


def program_runs(model: Model, in_hw: tuple[int, int], out_hw: tuple[int, int], tile: int = DEFAULT_TILE) -> dict[str, int]:
    """How many times `render` runs each of `programs`' programs for one image of these sizes."""
    p = plan(model, in_hw, out_hw, tile)
    n_rows, n_cols = len(p.rows.outputs), len(p.cols.outputs)
    blocks = sum(len(p.rows.blocks(i)) * len(p.cols.blocks(j)) for i in range(n_rows) for j in range(n_cols))
    return {"encode_tile": p.n_tiles, "query_block": blocks}
