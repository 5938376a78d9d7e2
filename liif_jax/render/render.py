"""Rendering an image at any resolution, tile by tile, in bounded device memory.

The input is encoded in tiles of `tile` x `tile` pixels with a halo (see `liif_jax.render.tiling`), and
each tile's output is queried in blocks of at most `max_block` x `max_block` pixels, each block one
compiled program. By default the tile is the largest whose two programs fit a share of the device's
memory (`liif_jax.render.memory`): the whole image when it fits, bounded tiles when it does not. The output
is the whole-image rendering's (`tile=0`) whatever the tiles, and finished blocks are copied to the
host while the next computes. Encoders whose features are not local (RCAN, SwinIR) are encoded
whole, and keep their whole feature map (SwinIR's is padded to its window).

A block's queries go through the decoder in one of two ways (`decoder`):
- "xla": the MLP as XLA operations, `batch_queries` queries at a time (a loop); the default;
- "pallas": one fused kernel for all of them (`liif_jax.kernels.fused_query`: gather, MLP and ensemble on
  chip), for the LIIF models it runs, when asked for or where a measurement made it the default
  (`liif_jax.render.decoders`, which also checks its first block and falls back to "xla").
Either way an edge block computes its own pixels only (up to one partial chunk or kernel block).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from liif_jax.models import Model, liif
from liif_jax.models.coords import centre, coord_affine
from liif_jax.models.layers import Dtype
from liif_jax.render import decoders, memory, tiling

DEFAULT_BATCH_QUERIES = 30000  # the official demo's bsize: the default on accelerators
CPU_BATCH_QUERIES = 8192  # the default on a CPU, where larger steps cost host memory, not time
DECODERS = ("xla", "pallas")
MAX_BLOCK = {"xla": 512, "pallas": 2048}  # output pixels per side of one query program
MIN_TILE = 32  # the smallest tile `choose_tile` tries

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
    crop_map = lambda x: jax.lax.dynamic_slice(
        x, (0, crop_start[0] * f, crop_start[1] * f, 0), (x.shape[0], crop[0] * f, crop[1] * f, x.shape[3])
    )
    return model.latents(params, jax.tree.map(crop_map, feat))


@functools.partial(jax.jit, static_argnames=("model", "block", "batch_queries", "unit_range", "mlp_dtype", "decoder"))
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
    decoder: str = "xla",
) -> jax.Array:
    """RGB of output rows [rows[0], rows[1]) x cols [cols[0], cols[1]) (at most `block`), from the
    latents `grid` that `lattice` places in the whole image's grid: (B, N, 3) with N >= block[0] *
    block[1], whose first (rows[1] - rows[0]) * (cols[1] - cols[0]) entries are those pixels in
    row-major order; the rest are not computed.

    In [-1, 1], or mapped to [0, 1] and clamped with `unit_range`. `geometry` (see
    `output_geometry`) and the ranges are data, so one program serves every block of every output
    of this block size.
    """
    b, capacity = jax.tree.leaves(grid)[0].shape[0], block[0] * block[1]
    n = (rows[1] - rows[0]) * (cols[1] - cols[0])
    cell = geometry[3]
    coords = functools.partial(_block_coords, b, geometry, rows, cols)
    finish = lambda rgb: jnp.clip(rgb * 0.5 + 0.5, 0, 1) if unit_range else rgb
    if decoder == "pallas":
        coord = coords(jnp.arange(capacity))
        return finish(
            model.query_fused(params, grid, coord, jnp.broadcast_to(cell, coord.shape), lattice, mlp_dtype, n)
        )
    bq = min(batch_queries, capacity)

    def query(i: jax.Array) -> jax.Array:
        coord = coords(i * bq + jnp.arange(bq))
        return finish(model.query(params, grid, coord, jnp.broadcast_to(cell, coord.shape), lattice, mlp_dtype))

    def chunk(i: jax.Array, out: jax.Array) -> jax.Array:
        # A static loop (its trip count known to XLA and to `xla_tools.hlo_stats`) whose chunks past
        # the block's own pixels do nothing.
        rgb = jax.lax.cond(i * bq < n, query, lambda i: jnp.zeros((b, bq, 3), jnp.float32), i)
        return jax.lax.dynamic_update_slice(out, rgb, (0, i * bq, 0))

    n_chunks = math.ceil(capacity / bq)
    return jax.lax.fori_loop(0, n_chunks, chunk, jnp.zeros((b, n_chunks * bq, 3), jnp.float32))


def _block_coords(b: int, geometry: jax.Array, rows: jax.Array, cols: jax.Array, q: jax.Array) -> jax.Array:
    """Flat pixel indices of a block -> (B, len(q), 2) coordinates (indices past its pixels: its last)."""
    width = cols[1] - cols[0]
    first, step = geometry[1], geometry[2]
    q = jnp.minimum(q, (rows[1] - rows[0]) * width - 1)
    r, c = (rows[0] + q // width).astype(jnp.float32), (cols[0] + q % width).astype(jnp.float32)
    return jnp.broadcast_to(
        jnp.stack([centre(first[0], step[0], r), centre(first[1], step[1], c)], axis=-1), (b, len(q), 2)
    )


@functools.partial(jax.jit, static_argnames=("model", "unit_range", "mlp_dtype"))
def query_sample(
    model: Model,
    params,
    grid: jax.Array,
    lattice: liif.Lattice,
    geometry: jax.Array,
    rows: jax.Array,
    cols: jax.Array,
    index: jax.Array,
    unit_range: bool = False,
    mlp_dtype: Dtype = None,
) -> jax.Array:
    """The XLA decoder's RGB (B, len(index), 3) at some of `query_block`'s queries (flat indices into
    its block): what the fused kernel's first block is checked against, without compiling it again."""
    b = jax.tree.leaves(grid)[0].shape[0]
    coord = _block_coords(b, geometry, rows, cols, index)
    rgb = model.query(params, grid, coord, jnp.broadcast_to(geometry[3], coord.shape), lattice, mlp_dtype)
    return jnp.clip(rgb * 0.5 + 0.5, 0, 1) if unit_range else rgb


def default_batch_queries() -> int:
    return CPU_BATCH_QUERIES if jax.default_backend() == "cpu" else DEFAULT_BATCH_QUERIES


def fused_supported(model: Model) -> bool:
    """Whether the fused kernel runs this model's decoder (`liif_jax.kernels.fused_query`)."""
    return getattr(model, "fused_supported", False)


def resolve_decoder(
    model: Model,
    decoder: str | None,
    device: jax.Device | str | None = None,
    compute_capability: tuple[int, int] | None = None,
) -> str:
    """`decoder`, checked; None: `decoders.default` (the XLA decoder unless `LIIF_JAX_DECODER` or a
    measured GPU generation says otherwise) for models the kernel runs, else "xla". `device`: a
    device, or a platform name with its `compute_capability` (default: the default device)."""
    if device is None or isinstance(device, jax.Device):
        device = device or jax.devices()[0]
        platform, cc = device.platform, decoders.compute_capability(device)
    else:
        platform, cc = device, compute_capability
    if decoder is None:
        decoder = decoders.default(platform, cc) if fused_supported(model) else "xla"
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    if decoder == "pallas" and not fused_supported(model):
        raise ValueError(
            "decoder 'pallas': the fused kernel runs LIIF models whose hidden widths are multiples of 16 "
            "(not LTE, MetaSR or the fixed-scale baselines); use decoder 'xla'"
        )
    if decoder == "pallas" and platform == "gpu" and decoders.refusal(cc):
        raise ValueError(decoders.refusal(cc))
    return decoder


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


def plan(model: Model, in_hw: tuple[int, int], out_hw: tuple[int, int], tile: int, decoder: str = "xla") -> tiling.Plan:
    """The render's tiles; says in a log line when the encoder cannot be tiled."""
    if tile > 0 and tiling.local_radius(model) is None:
        log.warning(
            "%s encoder: features are not local (or not known to liif_jax.render.tiling); encoding the whole image",
            model.spec["args"]["encoder_spec"]["name"],
        )
    return tiling.plan(model, in_hw, out_hw, tile, MAX_BLOCK[decoder])


def render(
    model: Model,
    params,
    inp: np.ndarray,
    out_hw: tuple[int, int],
    batch_queries: int | None = None,
    unit_range: bool = False,
    tile: int | None = None,
    mlp_dtype: Dtype = None,
    decoder: str | None = None,
    cell_factor: float = 1.0,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Prediction at every pixel centre of an H x W grid: (B, H, W, 3) float32.

    `inp` is a batch of images normalised to [-1, 1] (B, h, w, 3). The output is in [-1, 1], or
    in [0, 1] and clamped with `unit_range`. `tile`: input pixels per tile side (0: the whole
    image at once; None: `choose_tile`; the output is the same). `batch_queries`: queries per
    step of the XLA decoder (None: `default_batch_queries()`). `mlp_dtype` (e.g. bfloat16)
    computes the MLP in it. `decoder`: "pallas" or "xla" (None: `resolve_decoder`). `cell_factor`
    multiplies every query's cell (LTE's cell clamp, see `lte_cell_factor`). `progress(done, total)`
    is called as each output block reaches the host, so that a long render can say how far it is.
    """
    h, w = out_hw
    batch_queries = default_batch_queries() if batch_queries is None else batch_queries
    if h <= 0 or w <= 0 or batch_queries <= 0 or (tile is not None and tile < 0):
        raise ValueError(f"output size {out_hw} and batch_queries {batch_queries} must be positive, tile {tile} >= 0")
    device = _device(params)
    decoder = resolve_decoder(model, decoder, device)
    inp = np.asarray(inp, np.float32)
    args = (model, params, inp, out_hw, batch_queries, unit_range, tile, mlp_dtype, cell_factor, progress)
    if decoder == "pallas" and not decoders.failed(device):
        key = (device.device_kind, model, str(mlp_dtype), str(jax.config.jax_default_matmul_precision))
        try:
            return _render(*args, "pallas", key if decoders.needs_check(key) else None)
        except decoders.KernelUnavailable as err:
            decoders.fall_back(device, str(err))
    return _render(*args, "xla", None)


def _render(
    model: Model,
    params,
    inp: np.ndarray,
    out_hw: tuple[int, int],
    batch_queries: int,
    unit_range: bool,
    tile: int | None,
    mlp_dtype: Dtype,
    cell_factor: float,
    progress: Callable[[int, int], None] | None,
    decoder: str,
    check: tuple | None,
) -> np.ndarray:
    """`render` with a resolved decoder; `check`: the key under which the kernel's first block is
    checked against the XLA decoder (`decoders`), raising `decoders.KernelUnavailable` if it fails."""
    h, w = out_hw
    if tile is None:
        tile = choose_tile(
            model, params, inp.shape[1:3], out_hw, batch_queries, inp.shape[0], unit_range, mlp_dtype, decoder
        )
    p = plan(model, inp.shape[1:3], out_hw, tile, decoder)
    geometry = jnp.asarray(output_geometry(out_hw, cell_factor))
    block = (p.rows.block, p.cols.block)
    out = np.empty((inp.shape[0], h, w, 3), np.float32)
    pending, done, total = None, 0, _n_blocks(p)
    for i, (ys, cy) in enumerate(zip(p.rows.window_starts, p.rows.crop_starts)):
        for j, (xs, cx) in enumerate(zip(p.cols.window_starts, p.cols.crop_starts)):
            window = jnp.asarray(inp[:, ys : ys + p.rows.window, xs : xs + p.cols.window])
            grid = encode_tile(
                model, params, window, jnp.array([cy - ys, cx - xs], jnp.int32), (p.rows.crop, p.cols.crop)
            )
            if pending is None:  # the encoder's activations are gone before the query program first compiles
                jax.block_until_ready(grid)
            lattice = liif.lattice(_feature_size(p, inp.shape[1:3], grid), (cy, cx))
            for rows in p.rows.blocks(i):
                for cols in p.cols.blocks(j):
                    block_args = (model, params, grid, lattice, geometry, np.array(rows, np.int32))
                    block_args += (np.array(cols, np.int32),)
                    settings = (block, batch_queries, unit_range, mlp_dtype, decoder)
                    if check is not None:
                        rgb = _checked_block(block_args, settings, check)
                        check = None
                    else:
                        rgb = query_block(*block_args, *settings)
                    if pending is not None:  # copy the previous block while this one computes
                        _copy(out, *pending)
                        done += 1
                        if progress is not None:
                            progress(done, total)
                    pending = (rows, cols, rgb)
    _copy(out, *pending)
    if progress is not None:
        progress(total, total)
    return out


def _checked_block(block_args: tuple, settings: tuple, key: tuple) -> jax.Array:
    """The fused kernel's first block, compared with the XLA decoder on `decoders.sample` of its queries."""
    model, params, grid, lattice, geometry, rows, cols = block_args
    _, _, unit_range, mlp_dtype, _ = settings
    try:
        rgb = jax.block_until_ready(query_block(*block_args, *settings))
    except Exception as err:  # noqa: BLE001 - any compile or launch error of the kernel means: not here
        if decoders.device_memory_error(err):
            raise
        raise decoders.KernelUnavailable(decoders.first_line(err)) from err
    index = decoders.sample(int((rows[1] - rows[0]) * (cols[1] - cols[0])))
    xla = query_sample(model, params, grid, lattice, geometry, rows, cols, index, unit_range, mlp_dtype)
    why = decoders.mismatch(
        np.asarray(rgb)[:, index],
        np.asarray(xla),
        decoders.tolerance(mlp_dtype, jax.config.jax_default_matmul_precision),
    )
    if why:
        raise decoders.KernelUnavailable(why)
    decoders.passed(key)
    return rgb


def _feature_size(p: tiling.Plan, in_hw: tuple[int, int], grid) -> tuple[int, int]:
    """The whole image's latent grid size: the input's, or on an axis encoded whole the map's own
    (SwinIR pads it; an upsampling encoder's map is larger, and its query reads no lattice)."""
    map_hw = jax.tree.leaves(grid)[0].shape[1:3]
    return tuple(m if axis.window == axis.crop else n for axis, n, m in zip((p.rows, p.cols), in_hw, map_hw))


def _copy(out: np.ndarray, rows: tuple[int, int], cols: tuple[int, int], rgb: jax.Array) -> None:
    (r0, r1), (c0, c1) = rows, cols
    out[:, r0:r1, c0:c1] = np.asarray(rgb)[:, : (r1 - r0) * (c1 - c0)].reshape(out.shape[0], r1 - r0, c1 - c0, 3)


def upscale(
    model: Model,
    params,
    img01: np.ndarray,
    out_hw: tuple[int, int],
    batch_queries: int | None = None,
    tile: int | None = None,
    mlp_dtype: Dtype = None,
    decoder: str | None = None,
    cell_factor: float = 1.0,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """One image in [0, 1] (h, w, 3) -> the model's rendering in [0, 1] (H, W, 3), clamped; `progress`
    as in `render`."""
    inp = (np.asarray(img01, np.float32)[None] - 0.5) / 0.5
    return render(
        model,
        params,
        inp,
        out_hw,
        batch_queries,
        unit_range=True,
        tile=tile,
        mlp_dtype=mlp_dtype,
        decoder=decoder,
        cell_factor=cell_factor,
        progress=progress,
    )[0]


def output_size(
    model: Model, in_hw: tuple[int, int], scale: float | None = None, size: tuple[int, int] | None = None
) -> tuple[int, int]:
    """The demo's output size: `size`, or `scale` times `in_hw`, at least 1 per side: int(h S) x
    int(w S) for LTE's models (LTE's demo.py), round(h S) x round(w S) for LIIF's (its demo.py)."""
    if (scale is None) == (size is None):
        raise ValueError(f"give exactly one of scale and size, got {'both' if scale is not None else 'neither'}")
    if size is not None:
        h, w = size
        if not all(isinstance(n, int | np.integer) and not isinstance(n, bool) and n > 0 for n in (h, w)):
            raise ValueError(f"size must be (height, width), two positive integers, got {size!r}")
        return int(h), int(w)
    if isinstance(scale, bool | str) or not _positive(scale):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    size_of = (lambda n: int(n * scale)) if lte_family(model) else (lambda n: round(n * scale))
    return max(1, size_of(in_hw[0])), max(1, size_of(in_hw[1]))


def _positive(x) -> bool:
    try:
        return math.isfinite(float(x)) and float(x) > 0
    except (TypeError, ValueError):
        return False


def to_uint8_official(img01: np.ndarray) -> np.ndarray:
    """As the official `ToPILImage()` on a float tensor: `mul(255).byte()` truncates."""
    return (np.asarray(img01, np.float32) * np.float32(255)).astype(np.uint8)


def upscale_image(
    model: Model,
    params,
    img01: np.ndarray,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    tile: int | None = None,
    batch_queries: int | None = None,
    decoder: str | None = None,
    scale_max: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """The image `python -m liif_jax.demo --scale S` (or `--resolution H,W`) writes, uint8 (H, W, 3),
    from an image in [0, 1] (h, w, 3): the demo and `liif_jax.Upscaler.upscale` both call this.

    `output_size` sizes it; LTE's models get LTE's cell clamp above x`scale_max` (`scale_max_for`:
    4 for them, none for LIIF's; 0 turns it off); values are truncated to uint8 as the official demo."""
    in_hw = np.shape(img01)[:2]
    out_hw = output_size(model, in_hw, scale, size)
    factor = lte_cell_factor(out_hw[0] / in_hw[0], scale_max_for(model, scale_max))
    pred = upscale(
        model, params, img01, out_hw, batch_queries, tile, decoder=decoder, cell_factor=factor, progress=progress
    )
    return to_uint8_official(pred)


@functools.partial(jax.jit, static_argnames=("model",))
def encode_image(model: Model, params, inp: jax.Array):
    """The latents of whole images in [-1, 1] (B, h, w, 3), for `query_points`."""
    return model.encode(params, inp)


@functools.partial(jax.jit, static_argnames=("model",))
def query_points(model: Model, params, grid, coord: jax.Array, cell: jax.Array) -> jax.Array:
    """RGB in [0, 1] (Q, 3), clamped, at coordinates (Q, 2) of the first image of `encode_image`'s
    latents `grid`, each with the cell (2,): as `render` at its pixel centres (the whole grid's
    lattice is the one `render` places its tiles in)."""
    rgb = model.query(params, grid, coord[None], jnp.broadcast_to(cell, coord.shape)[None])[0]
    return jnp.clip(rgb * 0.5 + 0.5, 0, 1)


# ---------------------------------------------------------------------------------------------
# The programs, their memory, and the tile size by memory
# ---------------------------------------------------------------------------------------------


def programs(
    model: Model,
    params,
    in_hw: tuple[int, int],
    out_hw: tuple[int, int],
    tile: int = 0,
    batch_queries: int | None = None,
    batch: int = 1,
    unit_range: bool = True,
    mlp_dtype: Dtype = None,
    decoder: str | None = None,
) -> dict[str, jax.stages.Lowered]:
    """The render's two programs (encode a tile, query a block), lowered for their shapes without
    running them: for compiling ahead of time and for their `memory_analysis()`. They are lowered
    for the device that `params` are on, with that device's default `decoder` (a compile-only
    device compiles for its target: lower inside `liif_jax.aot.lowering`, which names it for
    Pallas). `program_runs` says how many times a render runs each."""
    device = _device(params)
    decoder = resolve_decoder(model, decoder, device)
    p = plan(model, in_hw, out_hw, tile, decoder)
    batch_queries = default_batch_queries() if batch_queries is None else batch_queries
    spec = lambda shape, dtype=jnp.float32: jax.ShapeDtypeStruct(shape, dtype)
    window = spec((batch, p.rows.window, p.cols.window, 3))
    encode = encode_tile.lower(model, params, window, spec((2,), jnp.int32), (p.rows.crop, p.cols.crop))
    grid = jax.eval_shape(
        lambda q, x, s: encode_tile(model, q, x, s, (p.rows.crop, p.cols.crop)), params, window, spec((2,), jnp.int32)
    )
    lattice = jax.tree.map(lambda a: spec(a.shape, a.dtype), liif.lattice(in_hw))
    query = query_block.lower(
        model,
        params,
        grid,
        lattice,
        spec((4, 2)),
        spec((2,), jnp.int32),
        spec((2,), jnp.int32),
        (p.rows.block, p.cols.block),
        batch_queries,
        unit_range,
        mlp_dtype,
        decoder,
    )
    return {"encode_tile": encode, "query_block": query}


def program_runs(
    model: Model, in_hw: tuple[int, int], out_hw: tuple[int, int], tile: int = 0, decoder: str = "xla"
) -> dict[str, int]:
    """How many times `render` runs each of `programs`' programs for one image of these sizes."""
    p = plan(model, in_hw, out_hw, tile, decoder)
    return {"encode_tile": p.n_tiles, "query_block": _n_blocks(p)}


def _n_blocks(p: tiling.Plan) -> int:
    n_rows, n_cols = len(p.rows.outputs), len(p.cols.outputs)
    return sum(len(p.rows.blocks(i)) * len(p.cols.blocks(j)) for i in range(n_rows) for j in range(n_cols))


def _device(params) -> jax.Device:
    """The device `params` are on (or placed on, for shapes with a sharding); the default one otherwise."""
    sharding = getattr(jax.tree.leaves(params)[0], "sharding", None)
    return min(sharding.device_set, key=lambda d: d.id) if sharding is not None else jax.devices()[0]


def footprint(
    model: Model,
    params,
    in_hw: tuple[int, int],
    out_hw: tuple[int, int],
    tile: int,
    batch_queries: int | None = None,
    batch: int = 1,
    unit_range: bool = True,
    mlp_dtype: Dtype = None,
    decoder: str | None = None,
    stop_above: int | None = None,
) -> int | None:
    """Bytes a render with these settings needs at once on its device, from its compiled programs'
    `memory_analysis()`: the larger of encoding a tile (while the previous tile's latents are
    held) and querying a block (while the previous block's output is copied out); on a CPU also
    the input and output images, which live in the same memory. None: the compiler refused a
    program for lack of device memory. Raises `decoders.KernelUnavailable` when it refused the fused
    kernel for another reason (shared memory per block, an unsupported GPU). With `stop_above`, an encoder that needs more than that is
    reported without compiling the query program."""
    device = _device(params)
    decoder = resolve_decoder(model, decoder, device)
    host = 4 * 3 * batch * (in_hw[0] * in_hw[1] + out_hw[0] * out_hw[1]) if device.platform == "cpu" else 0
    try:
        lowered = programs(model, params, in_hw, out_hw, tile, batch_queries, batch, unit_range, mlp_dtype, decoder)
        encode = lowered["encode_tile"].compile()
        several = program_runs(model, in_hw, out_hw, tile, decoder)
        latents = encode.memory_analysis().output_size_in_bytes if several["encode_tile"] > 1 else 0
        need = host + memory.program_bytes(encode) + latents
        if stop_above is not None and need > stop_above:
            return need
        query = lowered["query_block"].compile()
    except Exception as err:  # noqa: BLE001 - sorted below: device memory, the kernel, or a bug
        if decoders.device_memory_error(err):
            return None
        if decoder == "pallas":
            raise decoders.KernelUnavailable(decoders.first_line(err)) from err
        raise
    return max(need, host + memory.program_bytes(query) + query.memory_analysis().output_size_in_bytes)


def choose_tile(
    model: Model,
    params,
    in_hw: tuple[int, int],
    out_hw: tuple[int, int],
    batch_queries: int | None = None,
    batch: int = 1,
    unit_range: bool = True,
    mlp_dtype: Dtype = None,
    decoder: str | None = None,
    budget: int | None = None,
) -> int:
    """The largest tile whose render fits `budget` bytes (`footprint`; default:
    `memory.render_budget()` of the params' device): 0, the whole image, whenever it fits. Tries
    the whole image, then tiles scaled down by the square root of the excess until one fits (a
    compile each; the programs of the one that fits are the render's, compiled once)."""
    if tiling.local_radius(model) is None:
        return 0
    budget = memory.render_budget(_device(params)) if budget is None else budget
    tile, side = 0, max(in_hw)
    while True:
        need = footprint(
            model, params, in_hw, out_hw, tile, batch_queries, batch, unit_range, mlp_dtype, decoder, budget
        )
        if need is not None and need <= budget:
            return tile
        if side <= MIN_TILE:
            log.warning(
                "render: tiles of %d px need %s, more than the %.2f GB budget (liif_jax.render.memory); rendering "
                "with them",
                MIN_TILE,
                "more than the device has" if need is None else f"{need / 1e9:.2f} GB",
                budget / 1e9,
            )
            return MIN_TILE
        ratio = 0.25 if need is None else budget / need  # refused by the compiler: at least 4x too big
        side = max(MIN_TILE, min(side - 16, int(0.9 * side * math.sqrt(ratio)) // 16 * 16))
        tile = side
