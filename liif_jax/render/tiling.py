"""Cutting a render into tiles that give exactly the whole image's output.

A feature of a convolutional encoder at input pixel p depends only on the input within its
receptive-field radius R of p (a chain of k x k convolutions, each padded by k // 2, adds k // 2
per convolution). So the features of a window of the input are the whole image's features
everywhere at least R pixels from the window's edges, and everywhere up to an edge that is the
image's own border (there the window's zero padding is the image's). Rendering one tile of the
output then needs:

* the latents its queries read: the nearest latent of each query shifted by the local ensemble's
  offsets (one latent beyond the tile's own on each side), plus one latent of margin for the
  rounding of those offsets on the device;
* one more latent on each side for the 3x3 unfold (LIIF's latent grid is a 3x3 conv of the
  features; MetaSR reads a 3x3 patch): the "crop" of latents kept per tile;
* R input pixels on each side of the crop: the encoder's input window.

Windows and crops have one static size per render (a window at the image's border is moved
inside the image rather than padded), so each program compiles once per tile size, whatever the
image size. Everything here is per axis: a tile is one row segment times one column segment.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from liif_jax.models import encoders, liif
from liif_jax.models.coords import coord_affine

CROP_MULTIPLE = 8  # crops rounded up to a multiple of this, so their size does not vary with the image's


def encoder_radius(encoder: nn.Module) -> int | None:
    """Receptive-field radius in input pixels of the encoder's features; None if they are not
    local (RCAN's channel attention pools the whole image) or the encoder is not known here."""
    if type(encoder) is encoders.EDSR:  # head, 2 convs per residual block, the body's last conv
        return 1 + 2 * encoder.n_resblocks + 1
    if type(encoder) is encoders.RDN:  # SFENet1, SFENet2, D blocks of C 3x3 convs (1x1 fusions), GFF_1
        d, c, _ = encoders.RDN_CONFIGS[encoder.RDNconfig]
        return 3 * (encoder.RDNkSize // 2) + d * c
    return None


@functools.cache  # models hash by identity
def local_radius(model) -> int | None:
    """`encoder_radius` of the model's encoder, and None as well if its features are not the
    input's size (an upsampling tail)."""
    radius = encoder_radius(model.encoder)
    x = jax.ShapeDtypeStruct((1, 8, 8, 3), jnp.float32)
    out = jax.eval_shape(model.encoder.init_with_output, jax.random.key(0), x)[0]
    return radius if out.shape[1:3] == x.shape[1:3] else None


def query_offsets(model, n: int, n_out: int) -> list[float]:
    """Offsets (in [-1, 1] coordinates, one axis of n latents and n_out output pixels) that a query
    adds to its coordinate before taking the nearest latent."""
    if hasattr(model, "local_ensemble"):  # LIIF
        return [-1 / n + liif.ENSEMBLE_EPS, 1 / n + liif.ENSEMBLE_EPS] if model.local_ensemble else [0.0]
    return [-1 / n_out + liif.ENSEMBLE_EPS]  # MetaSR: the top-left corner of the query's cell


@dataclasses.dataclass(frozen=True)
class Axis:
    """One axis of a tiled render: static sizes, then one entry per segment (tile row or column)."""

    window: int  # input pixels encoded per tile
    crop: int  # latents kept per tile
    block: int  # output pixels per query block
    window_starts: tuple[int, ...]  # first input pixel of each tile's window
    crop_starts: tuple[int, ...]  # first latent of each tile's crop, in whole-image latents
    outputs: tuple[tuple[int, int], ...]  # output pixels [start, end) each tile renders

    def blocks(self, i: int) -> list[tuple[int, int]]:
        """Output ranges [start, end) of tile i's query blocks (each at most `block` pixels)."""
        start, end = self.outputs[i]
        return [(s, min(s + self.block, end)) for s in range(start, end, self.block)]


def plan_axis(n: int, n_out: int, tile: int, radius: int, offsets: list[float], max_block: int) -> Axis:
    """Segments of one axis: `tile` input pixels each (0: one segment, the whole axis)."""
    tile = n if tile <= 0 or tile >= n else tile
    k = math.ceil(n / tile)
    bounds = [round(i * tile * n_out / n) for i in range(k)] + [n_out]
    first, step = coord_affine(n_out)
    outputs, needs = [], []
    for start, end in zip(bounds, bounds[1:]):
        if end <= start:
            continue
        x = (first + step * np.arange(start, end, dtype=np.float32)).astype(np.float64)
        c = np.clip(x[:, None] + np.asarray(offsets)[None], -liif.CLAMP, liif.CLAMP)
        idx = np.clip(np.round((c + 1) * n / 2 - 0.5), 0, n - 1)
        # One latent of margin for the device's rounding, one for the 3x3 unfold / patch.
        needs.append((max(0, int(idx.min()) - 2), min(n, int(idx.max()) + 3)))
        outputs.append((start, end))
    crop = min(n, -(-max(b - a for a, b in needs) // CROP_MULTIPLE) * CROP_MULTIPLE)
    window = min(n, crop + 2 * radius)
    if window == n and k > 1:  # every window would be the whole axis: encode it once
        return plan_axis(n, n_out, 0, radius, offsets, max_block)
    crop_starts = [min(a, n - crop) for a, _ in needs]
    window_starts = [min(max(c - radius, 0), n - window) for c in crop_starts]
    block = min(max_block, max(e - s for s, e in outputs))
    return Axis(window, crop, block, tuple(window_starts), tuple(crop_starts), tuple(outputs))


@dataclasses.dataclass(frozen=True)
class Plan:
    rows: Axis
    cols: Axis

    @property
    def n_tiles(self) -> int:
        return len(self.rows.outputs) * len(self.cols.outputs)


def plan(model, in_hw: tuple[int, int], out_hw: tuple[int, int], tile: int, max_block: int) -> Plan:
    """Tiles of `tile` x `tile` input pixels (0: the whole image) rendering `out_hw` from `in_hw`.

    Encoders whose radius is unknown (`encoder_radius` None) get one tile, the whole image.
    """
    radius = local_radius(model)
    if radius is None:  # one tile, every latent kept: the query reads the encoder's whole output
        return Plan(*(Axis(n, n, min(max_block, n_out), (0,), (0,), ((0, n_out),)) for n, n_out in zip(in_hw, out_hw)))
    axes = [
        plan_axis(n, n_out, tile, radius, query_offsets(model, n, n_out), max_block) for n, n_out in zip(in_hw, out_hw)
    ]
    return Plan(*axes)
