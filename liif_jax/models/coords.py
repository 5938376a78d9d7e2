"""Pixel-centre coordinates and cells, computed exactly as the official `make_coord`.

The official code builds coordinates in float32 as `v0 + r + (2r) * arange(n)`; we keep that
arithmetic so that nearest-latent lookups at pixel boundaries pick the same latent.
"""

from __future__ import annotations

import jax
import numpy as np


def coord_affine(n: int, v0: float = -1.0, v1: float = 1.0) -> tuple[np.float32, np.float32]:
    """(first, step) in float32 such that pixel i's centre is `first + step * i`, as the official code."""
    r = (v1 - v0) / (2 * n)
    return np.float32(v0 + r), np.float32(2 * r)


def centre(first, step, i):
    """`first + step * i` on the device, rounded after the product and after the sum as the official
    code rounds them. Without the barrier XLA fuses the two into one multiply-add, whose single
    rounding can move a centre by an ulp: enough to turn a query exactly on a latent centre
    (relative coordinate 0, so two ensemble areas of 0) into one beside it, which swings the
    local ensemble's weights (e.g. every third pixel of an x3 rendering)."""
    return first + jax.lax.optimization_barrier(step * i)


def coord_seq(n: int, v0: float = -1.0, v1: float = 1.0) -> np.ndarray:
    """Centres of `n` equal cells covering [v0, v1], float32, as the official code rounds them."""
    first, step = coord_affine(n, v0, v1)
    return first + step * np.arange(n, dtype=np.float32)


def make_coord(shape: tuple[int, ...], flatten: bool = True) -> np.ndarray:
    """Grid of pixel centres in [-1, 1]; last axis is (row, col). (H*W, 2) if `flatten`."""
    seqs = [coord_seq(n) for n in shape]
    grid = np.stack(np.meshgrid(*seqs, indexing="ij"), axis=-1).astype(np.float32)
    return grid.reshape(-1, len(shape)) if flatten else grid


def make_cell(shape: tuple[int, int], n: int) -> np.ndarray:
    """Cells (2/H, 2/W) of a queried H x W grid, repeated for `n` queries, float32."""
    h, w = shape
    cell = np.ones((n, 2), dtype=np.float32)
    cell[:, 0] *= np.float32(2 / h)
    cell[:, 1] *= np.float32(2 / w)
    return cell
