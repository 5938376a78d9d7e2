"""The LTE decoder (Lee and Jin, CVPR 2022): pure functions over a block of queries.

What LTE's `LTE.query_rgb` (`models/lte.py`) computes for a query point x with cell c, on a
feature grid of h x w latents (coefficients `coef` and frequencies `freq`, 3x3 convs of the
encoder's features) and the input image:

    for each of the 4 nearest latents z* (the local ensemble, always on):
        d = (x - v*) * (h, w)                      v*: the latent's centre
        phase = W_phase (c * (h, w))               a linear layer without bias
        f_k = freq[2k] d_row + freq[2k+1] d_col + phase_k
        pred* = MLP(coef * [cos(pi f), sin(pi f)])
    out = sum of pred* weighted by the area of the diagonally opposite rectangle
          + bilinear(input, x), border-padded

The latent centre v* is looked up on the input's own pixel grid (LTE's `feat_coord` is made for
the input's size), the rest on the feature grid: the two differ only when the encoder padded its
input (SwinIR, to a multiple of its window), and then LTE's code mixes them as written here.
Queries address latents by their index in the whole image's grid (`liif.Lattice`), as LIIF's.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from liif_jax.models import liif
from liif_jax.models.coords import centre
from liif_jax.models.layers import Dtype

PI = np.float32(np.pi)


def fourier_grid(
    w_coef: jax.Array, b_coef: jax.Array, w_freq: jax.Array, b_freq: jax.Array, feat: jax.Array, dtype: Dtype = None
) -> jax.Array:
    """`coef` and `freq` (3x3 convs, HWIO kernels) of every latent as one conv: (B, h, w, 2 * hidden)."""
    w = jnp.concatenate([w_coef, w_freq], axis=-1)
    b = jnp.concatenate([b_coef, b_freq])
    return liif.latent_grid(w, feat, dtype) + b


def bilinear_border(image: jax.Array, coord: jax.Array, lat: liif.Lattice) -> jax.Array:
    """`grid_sample(image, coord, 'bilinear', padding_mode='border', align_corners=False)` at
    (B, Q, 2) coordinates: image (B, gh, gw, 3) is the window of the h x w input that `lat` places."""
    pos = coord * lat.half + (lat.half - np.float32(0.5))  # pixel units, as torch's CPU kernel unnormalizes
    pos = jnp.clip(pos, 0, lat.size - 1)  # border padding clips the coordinate
    lo = jnp.floor(pos)
    frac = pos - lo
    lo = lo.astype(jnp.int32)
    hi = jnp.minimum(lo + 1, lat.size.astype(jnp.int32) - 1)  # past the border only with weight 0
    corner = lambda r, c: liif.gather_rows(image, jnp.stack([r[..., 0], c[..., 1]], -1) - lat.origin)
    fy, fx = frac[..., :1], frac[..., 1:]
    return (
        corner(lo, lo) * ((1 - fx) * (1 - fy))
        + corner(lo, hi) * (fx * (1 - fy))
        + corner(hi, lo) * ((1 - fx) * fy)
        + corner(hi, hi) * (fx * fy)
    )


def query(
    grid: jax.Array,
    image: jax.Array,
    coord: jax.Array,
    cell: jax.Array,
    lat: liif.Lattice,
    lat_in: liif.Lattice,
    w_phase: jax.Array,
    mlp: Callable[[jax.Array], jax.Array],
) -> jax.Array:
    """RGB (B, Q, out) at queries `coord` (B, Q, 2) with cells (B, Q, 2).

    `grid` (B, gh, gw, 2 * hidden): `fourier_grid` on the window of the feature grid that `lat`
    places; `image` the input on the window that `lat_in` places (the same lattice unless the
    encoder padded). `w_phase` (2, hidden / 2); `mlp` maps (..., hidden) to (..., out).
    """
    hidden = grid.shape[-1] // 2
    inputs, areas = [], []
    for sign in liif.neighbour_signs(True):
        c = coord + jnp.stack([lat.shift[sign[0], 0], lat.shift[sign[1], 1]])
        c = jnp.clip(c, np.float32(-liif.CLAMP), np.float32(liif.CLAMP))
        index = liif.nearest_index(c, lat.half)
        index_in = index if lat_in is lat else liif.nearest_index(c, lat_in.half)
        rel = (coord - centre(lat_in.first, lat_in.step, index_in.astype(jnp.float32))) * lat.size
        latent = liif.gather_rows(grid, index - lat.origin)
        coef, freq = latent[..., :hidden], latent[..., hidden:]
        f = freq[..., 0::2] * rel[..., :1] + freq[..., 1::2] * rel[..., 1:]
        f = f + (cell * lat.size) @ w_phase
        inputs.append(coef * jnp.concatenate([jnp.cos(PI * f), jnp.sin(PI * f)], axis=-1))
        areas.append(jnp.abs(rel[..., 0] * rel[..., 1]) + liif.AREA_EPS)
    preds = mlp(jnp.stack(inputs))  # (4, B, Q, out): one stream of rows through the MLP
    areas = jnp.stack(areas)
    weights = areas[::-1] / jnp.sum(areas, axis=0)  # each neighbour weighted by the area opposite it
    return jnp.sum(preds * weights[..., None], axis=0) + bilinear_border(image, coord, lat_in)
