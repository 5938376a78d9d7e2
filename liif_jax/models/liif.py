"""The LIIF decoder: pure functions over a params pytree, written for a block of queries.

What the official `LIIF.query_rgb` computes for a query point x with cell c, on a latent grid of
h x w codes:

    for each of the 4 nearest latents z* (local ensemble; 1 without it):
        pred* = MLP([unfold3x3(feat)[z*], (x - v*) * (h, w), c * (h, w)])
    out = sum of pred* weighted by the area of the diagonally opposite rectangle

The first MLP layer is linear, and the feature part of its input depends on the latent only, so
`latent_grid` applies it once per latent as a 3x3 (unfold) or 1x1 convolution: the same sums,
without the 9x unfolded tensor and without repeating that product for every query and neighbour.
Queries then gather a row of that grid and add the coordinate and cell terms as elementwise
multiply-adds (`neighbours` says which rows and terms); the 4 neighbours of every query go through
the rest of the MLP as one stack of rows (`query`), or through one fused kernel that keeps their
activations in a small scratch per program (`query_fused`, `liif_jax.kernels.fused_query`).

Queries address latents by their index in the whole image's grid (a `Lattice`), so that a window
of latents (a tile of a large image) answers them exactly as the whole grid would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from liif_jax.kernels import fused_query
from liif_jax.models.coords import centre, coord_affine
from liif_jax.models.layers import Dtype, dense

Params = Any

# Constants of the official code.
ENSEMBLE_EPS = 1e-6
CLAMP = 1 - 1e-6
AREA_EPS = 1e-9


class MLP(nn.Module):
    """The official `mlp` (Linear-ReLU ... Linear); layer names as in its state dict."""

    in_dim: int
    out_dim: int
    hidden_list: Sequence[int]
    dtype: Dtype = None

    @nn.compact
    def __call__(self, x, first_layer_done: bool = False):
        """`first_layer_done`: x is already the first layer's output (pre-activation)."""
        dims = [*self.hidden_list, self.out_dim]
        fan_in = self.in_dim
        for i, d in enumerate(dims):
            if not (i == 0 and first_layer_done):
                x = dense(d, fan_in, f"layers_{2 * i}", self.dtype)(x)
            if i < len(dims) - 1:
                x = nn.relu(x)
            fan_in = d
        return x


class Lattice(NamedTuple):
    """The whole image's h x w latent grid and where a window of it starts, as float32 constants
    computed on the host the way the official code computes them (arrays of shape (2,): rows, cols).

    Whole-image latent (i, j) sits at (i - origin[0], j - origin[1]) of the window.
    """

    origin: Any  # int32: the window's first latent in the whole grid
    size: Any  # (h, w)
    half: Any  # (h / 2, w / 2)
    first: Any  # centre of latent 0
    step: Any  # spacing of latent centres
    inv: Any  # (1 / h, 1 / w)
    shift: Any  # (2, 2): the local ensemble's offsets -1/h + eps (row 0) and 1/h + eps (row 1)


def lattice(hw: tuple[int, int], origin: tuple[int, int] = (0, 0)) -> Lattice:
    """`Lattice` of an h x w latent grid, for a window starting at `origin`."""
    (h, w), f32 = hw, lambda x: np.asarray(x, np.float32)
    (fh, sh), (fw, sw) = coord_affine(h), coord_affine(w)
    eps = ENSEMBLE_EPS
    return Lattice(
        np.asarray(origin, np.int32),
        f32([h, w]),
        f32([h / 2, w / 2]),
        f32([fh, fw]),
        f32([sh, sw]),
        f32([1 / h, 1 / w]),
        f32([[-1 / h + eps, -1 / w + eps], [1 / h + eps, 1 / w + eps]]),
    )


def nearest_index(c: jax.Array, half: jax.Array) -> jax.Array:
    """`grid_sample(mode='nearest', align_corners=False)` cell index of coordinates c in [-1, 1]
    on a grid of `2 * half` cells.

    Round half to even, as PyTorch's nearbyint; callers clamp c inside (-1, 1).
    """
    return jnp.round((c + 1) * half - np.float32(0.5)).astype(jnp.int32)


def neighbour_signs(local_ensemble: bool) -> list[tuple[int, int] | None]:
    """Rows of `Lattice.shift` for the (row, col) offsets of each neighbour; None: no offset."""
    return [(0, 0), (0, 1), (1, 0), (1, 1)] if local_ensemble else [None]


def first_layer_split(w0: jax.Array, feat_dim: int, feat_unfold: bool) -> tuple[jax.Array, jax.Array]:
    """Splits the first MLP kernel (in, out) into its feature part and the rest (`w_terms`: rows
    for the relative coordinate, then the relative cell).

    The feature part comes back as an HWIO conv kernel (3x3 for unfold, channel-major as
    `F.unfold`; 1x1 otherwise).
    """
    n_feat_in = feat_dim * 9 if feat_unfold else feat_dim
    wf = w0[:n_feat_in]
    if feat_unfold:
        wf = wf.reshape(feat_dim, 3, 3, -1).transpose(1, 2, 0, 3)
    else:
        wf = wf.reshape(1, 1, feat_dim, -1)
    return wf, w0[n_feat_in:]


def latent_grid(w_feat: jax.Array, feat: jax.Array, dtype: Dtype = None) -> jax.Array:
    """First MLP layer's feature term at every latent: (B, h, w, C) -> (B, h, w, hidden)."""
    pad = w_feat.shape[0] // 2
    if dtype is not None:
        feat, w_feat = feat.astype(dtype), w_feat.astype(dtype)
    return jax.lax.conv_general_dilated(
        feat,
        w_feat,
        window_strides=(1, 1),
        padding=((pad, pad), (pad, pad)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        preferred_element_type=jnp.float32,
    )


class Neighbours(NamedTuple):
    """What each query reads from the latent grid: per neighbour of the local ensemble (n = 4, or
    1 without it), the latent, the first layer's other inputs and the ensemble weight."""

    index: jax.Array  # (n, B, Q, 2) int32: the latent's (row, col) in the window
    terms: jax.Array  # (n, B, Q, E) float32: relative coordinate (2), then relative cell (2) with cell decoding
    weights: jax.Array  # (n, B, Q) float32: the area-weighted ensemble's weights (1 without it)


def neighbours(coord: jax.Array, cell: jax.Array, lat: Lattice, local_ensemble: bool, cell_decode: bool) -> Neighbours:
    """`Neighbours` of queries at `coord` (B, Q, 2) with cells (B, Q, 2) on the grid `lat` describes."""
    index, terms, areas = [], [], []
    for sign in neighbour_signs(local_ensemble):
        c = coord if sign is None else coord + jnp.stack([lat.shift[sign[0], 0], lat.shift[sign[1], 1]])
        i = nearest_index(jnp.clip(c, np.float32(-CLAMP), np.float32(CLAMP)), lat.half)
        rel = (coord - centre(lat.first, lat.step, i.astype(jnp.float32))) * lat.size
        index.append(i - lat.origin)
        terms.append(jnp.concatenate([rel, cell * lat.size], axis=-1) if cell_decode else rel)
        areas.append(jnp.abs(rel[..., 0] * rel[..., 1]) + AREA_EPS)
    areas = jnp.stack(areas)
    # Each neighbour is weighted by the area opposite to it: reversing (0,1,2,3) swaps 0<->3, 1<->2.
    weights = (areas[::-1] if local_ensemble else areas) / jnp.sum(areas, axis=0)
    return Neighbours(jnp.stack(index), jnp.stack(terms), weights)


def flat_rows(grid: jax.Array, index: jax.Array) -> jax.Array:
    """Rows of `grid` (B, gh, gw, D) seen as a (B * gh * gw, D) table, at window indices (..., B, Q, 2)."""
    b, gh, gw, _ = grid.shape
    return (jnp.arange(b, dtype=jnp.int32)[:, None] * gh + index[..., 0]) * gw + index[..., 1]


def gather_rows(grid: jax.Array, local: jax.Array) -> jax.Array:
    """grid (B, gh, gw, D) at window indices local (..., B, Q, 2) -> (..., B, Q, D), as one flat gather."""
    return grid.reshape(-1, grid.shape[-1]).at[flat_rows(grid, local)].get(mode="promise_in_bounds")


def first_layer(rows: jax.Array, terms: jax.Array, w_terms: jax.Array, b0: jax.Array) -> jax.Array:
    """First-layer pre-activations: the latent's row + b0 + terms @ w_terms, as multiply-adds
    in the order `fused_query` computes them."""
    pre = rows + b0
    for e in range(terms.shape[-1]):
        pre = pre + terms[..., e : e + 1] * w_terms[e]
    return pre


def query(
    grid: jax.Array,
    coord: jax.Array,
    cell: jax.Array,
    lat: Lattice,
    w_terms: jax.Array,
    b0: jax.Array,
    mlp_rest,
    local_ensemble: bool,
) -> jax.Array:
    """RGB (B, Q, out) at queries `coord` (B, Q, 2) with cells (B, Q, 2) from a window `grid`
    (B, gh, gw, hidden) of the latent grid that `lat` describes.

    `w_terms`: the first MLP kernel's rows for the relative coordinate (2) and, with cell decoding,
    the relative cell (2). `mlp_rest` maps first-layer pre-activations (..., hidden) to outputs (..., out).
    """
    nb = neighbours(coord, cell, lat, local_ensemble, cell_decode=w_terms.shape[0] == 4)
    preds = mlp_rest(
        first_layer(gather_rows(grid, nb.index), nb.terms, w_terms, b0)
    )  # (n, B, Q, out): one stream of rows through the MLP
    return jnp.sum(preds * nb.weights[..., None], axis=0)


def query_fused(
    grid: jax.Array,
    coord: jax.Array,
    cell: jax.Array,
    lat: Lattice,
    w_terms: jax.Array,
    b0: jax.Array,
    layers,
    local_ensemble: bool,
    n_valid: jax.Array | None = None,
    compute_dtype: Dtype = None,
) -> jax.Array:
    """`query` by `fused_query.ensemble_mlp`: `layers` are the MLP's (kernel, bias) after the
    first. `n_valid`: only the first n_valid queries of each image are computed (the rest of the
    output is undefined)."""
    nb = neighbours(coord, cell, lat, local_ensemble, cell_decode=w_terms.shape[0] == 4)
    n, b, q = nb.weights.shape
    # Query-major (Q, B) order, so that the first n_valid queries of every image come first.
    index = flat_rows(grid, nb.index).transpose(0, 2, 1).reshape(n, q * b)
    terms = nb.terms.transpose(0, 3, 2, 1).reshape(n, -1, q * b)
    weights = nb.weights.transpose(0, 2, 1).reshape(n, q * b)
    out = fused_query.ensemble_mlp(
        grid.reshape(-1, grid.shape[-1]),
        index,
        terms,
        weights,
        w_terms,
        b0,
        layers,
        None if n_valid is None else n_valid * b,
        compute_dtype,
    )
    return out.reshape(-1, q, b).transpose(2, 1, 0)
