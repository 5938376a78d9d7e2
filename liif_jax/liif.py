"""The LIIF decoder: pure functions over a params pytree, written for one query and vmapped.

What the official `LIIF.query_rgb` computes for a query point x with cell c, on a latent grid of
h x w codes:

    for each of the 4 nearest latents z* (local ensemble; 1 without it):
        pred* = MLP([unfold3x3(feat)[z*], (x - v*) * (h, w), c * (h, w)])
    out = sum of pred* weighted by the area of the diagonally opposite rectangle

The first MLP layer is linear, and the feature part of its input depends on the latent only, so
`latent_grid` applies it once per latent as a 3x3 (unfold) or 1x1 convolution: the same sums,
without the 9x unfolded tensor and without repeating that product for every query and neighbour.
Queries then gather a row of that grid and add the coordinate and cell terms.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from liif_jax.coords import coord_seq
from liif_jax.layers import Dtype, dense

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


def nearest_index(c: jax.Array, size: int) -> jax.Array:
    """`grid_sample(mode='nearest', align_corners=False)` cell index of coordinate c in [-1, 1].

    Round half to even, as PyTorch's nearbyint; callers clamp c inside (-1, 1).
    """
    return jnp.round((c + 1) * np.float32(size / 2) - np.float32(0.5)).astype(jnp.int32)


def neighbour_shifts(local_ensemble: bool) -> tuple[list[tuple[int, int]], float]:
    if local_ensemble:
        return [(-1, -1), (-1, 1), (1, -1), (1, 1)], ENSEMBLE_EPS
    return [(0, 0)], 0.0


def first_layer_split(w0: jax.Array, feat_dim: int, feat_unfold: bool) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Splits the first MLP kernel (in, out) into its feature, coordinate and cell parts.

    The feature part comes back as an HWIO conv kernel (3x3 for unfold, channel-major as
    `F.unfold`; 1x1 otherwise).
    """
    n_feat_in = feat_dim * 9 if feat_unfold else feat_dim
    wf = w0[:n_feat_in]
    if feat_unfold:
        wf = wf.reshape(feat_dim, 3, 3, -1).transpose(1, 2, 0, 3)
    else:
        wf = wf.reshape(1, 1, feat_dim, -1)
    return wf, w0[n_feat_in : n_feat_in + 2], w0[n_feat_in + 2 :]


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


def query_point(
    grid: jax.Array,
    coord: jax.Array,
    cell: jax.Array,
    w_coord: jax.Array,
    w_cell: jax.Array | None,
    b0: jax.Array,
    mlp_rest,
    local_ensemble: bool,
) -> jax.Array:
    """RGB at one query `coord` (2,) with `cell` (2,), from a latent grid (h, w, hidden).

    `mlp_rest` maps first-layer pre-activations (n, hidden) to outputs (n, out).
    """
    h, w = grid.shape[:2]
    seq_h, seq_w = jnp.asarray(coord_seq(h)), jnp.asarray(coord_seq(w))
    scale = jnp.array([h, w], jnp.float32)
    shifts, eps = neighbour_shifts(local_ensemble)
    pre, rels = [], []
    for vx, vy in shifts:
        shift = jnp.array([np.float32(vx / h + eps), np.float32(vy / w + eps)], jnp.float32)
        c = jnp.clip(coord + shift, np.float32(-CLAMP), np.float32(CLAMP))
        iy, ix = nearest_index(c[0], h), nearest_index(c[1], w)
        rel = (coord - jnp.stack([seq_h[iy], seq_w[ix]])) * scale
        p = grid[iy, ix] + rel @ w_coord + b0
        if w_cell is not None:
            p = p + (cell * scale) @ w_cell
        pre.append(p)
        rels.append(rel)
    preds = mlp_rest(jnp.stack(pre))  # (n_neighbours, out): the MLP, batched over neighbours
    areas = jnp.stack([jnp.abs(r[0] * r[1]) + AREA_EPS for r in rels])
    # Each neighbour is weighted by the area opposite to it: reversing (0,1,2,3) swaps 0<->3, 1<->2.
    weights = areas[::-1] / jnp.sum(areas) if local_ensemble else areas / jnp.sum(areas)
    return jnp.sum(preds * weights[:, None], axis=0)


def query_batch(grid, coord, cell, w_coord, w_cell, b0, mlp_rest, local_ensemble):
    """`query_point` vmapped over queries (Q) and batch (B): grid (B,h,w,D), coord/cell (B,Q,2)."""
    one = lambda g, x, c: query_point(g, x, c, w_coord, w_cell, b0, mlp_rest, local_ensemble)
    over_queries = jax.vmap(one, in_axes=(None, 0, 0))
    return jax.vmap(over_queries, in_axes=(0, 0, 0))(grid, coord, cell)
