"""Encoders of the official LIIF code, and LTE's SwinIR (`liif_jax.models.swinir`).

LIIF, MetaSR and LTE use the feature map (`no_upsampling: true`). Without it, EDSR and RDN end with
their official upsampling tails (EDSR's pixel-shuffle `Upsampler`, RDN's `UPNet`) and output RGB
at a fixed `scale`: the paper's fixed-scale baselines. Module names mirror the official state-dict names with each numeric index joined to the name
before it (`body.3.body.0` -> `body_3/body_0`), so that converting an official checkpoint is one
mechanical rule (see `liif_jax.convert`). Inputs and outputs are NHWC.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from liif_jax.models.layers import Dtype, conv
from liif_jax.models.swinir import make_swinir


class ResBlock(nn.Module):
    """EDSR residual block: conv-relu-conv, scaled, plus identity."""

    n_feats: int
    res_scale: float
    dtype: Dtype = None

    @nn.compact
    def __call__(self, x):
        res = conv(self.n_feats, 3, self.n_feats, "body_0", self.dtype)(x)
        res = conv(self.n_feats, 3, self.n_feats, "body_2", self.dtype)(nn.relu(res))
        return res * self.res_scale + x


def residual_body(x, blocks: list[Callable[..., nn.Module]], n_feats: int, dtype: Dtype):
    """Blocks `body_i`, a last conv `body_n`, plus the input: the EDSR/RCAN body and RCAN's group."""
    res = x
    for i, block in enumerate(blocks):
        res = block(name=f"body_{i}")(res)
    return conv(n_feats, 3, n_feats, f"body_{len(blocks)}", dtype)(res) + x


def pixel_shuffle(x: jnp.ndarray, r: int) -> jnp.ndarray:
    """PyTorch `PixelShuffle(r)` on NHWC: channel c * r * r + i * r + j goes to pixel (i, j) of c."""
    b, h, w, c = x.shape
    x = x.reshape(b, h, w, c // (r * r), r, r)
    return x.transpose(0, 1, 4, 2, 5, 3).reshape(b, h * r, w * r, c // (r * r))


def _is_power_of_two(n: int) -> bool:
    return n >= 2 and n & (n - 1) == 0


class EDSR(nn.Module):
    """EDSR (Lim et al. 2017); mean shift unused as in LIIF. With `upsample_scale` it ends with the
    official tail (`tail.0` the Upsampler: conv + shuffle 2 per factor 2, or one conv + shuffle 3;
    `tail.1` a conv to RGB); without, it returns the feature map."""

    n_resblocks: int = 16
    n_feats: int = 64
    res_scale: float = 1.0
    n_colors: int = 3
    upsample_scale: int | None = None
    dtype: Dtype = None

    @property
    def out_dim(self) -> int:
        return self.n_colors if self.upsample_scale else self.n_feats

    @nn.compact
    def __call__(self, x):
        x = conv(self.n_feats, 3, self.n_colors, "head_0", self.dtype)(x)
        block = functools.partial(ResBlock, self.n_feats, self.res_scale, self.dtype)
        x = residual_body(x, [block] * self.n_resblocks, self.n_feats, self.dtype)
        if not self.upsample_scale:
            return x
        s, n = self.upsample_scale, self.n_feats
        factors = [2] * (s.bit_length() - 1) if _is_power_of_two(s) else [s]
        for k, r in enumerate(factors):
            x = pixel_shuffle(conv(n * r * r, 3, n, f"tail_0_{2 * k}", self.dtype)(x), r)
        return conv(self.n_colors, 3, n, "tail_1", self.dtype)(x)


class RDBConv(nn.Module):
    """One densely connected conv of an RDB: its output is appended to its input."""

    in_channels: int
    grow_rate: int
    dtype: Dtype = None

    @nn.compact
    def __call__(self, x):
        out = nn.relu(conv(self.grow_rate, 3, self.in_channels, "conv_0", self.dtype)(x))
        return jnp.concatenate([x, out], axis=-1)


class RDB(nn.Module):
    """Residual dense block: C dense convs, 1x1 local feature fusion, identity."""

    g0: int
    grow_rate: int
    n_layers: int
    dtype: Dtype = None

    @nn.compact
    def __call__(self, x):
        h = x
        for c in range(self.n_layers):
            h = RDBConv(self.g0 + c * self.grow_rate, self.grow_rate, self.dtype, name=f"convs_{c}")(h)
        fused = conv(self.g0, 1, self.g0 + self.n_layers * self.grow_rate, "LFF", self.dtype)(h)
        return fused + x


RDN_CONFIGS = {"A": (20, 6, 32), "B": (16, 8, 64)}  # (D blocks, C convs per block, G growth)


class RDN(nn.Module):
    """RDN (Zhang et al. 2018). With `upsample_scale` (2, 3, 4) it ends with the official `UPNet`
    (conv + shuffle r, or two conv + shuffle 2 for 4, then a conv to RGB); without, it returns
    the feature map."""

    G0: int = 64
    RDNkSize: int = 3
    RDNconfig: str = "B"
    n_colors: int = 3
    upsample_scale: int | None = None
    dtype: Dtype = None

    @property
    def out_dim(self) -> int:
        return self.n_colors if self.upsample_scale else self.G0

    @nn.compact
    def __call__(self, x):
        d, c, g = RDN_CONFIGS[self.RDNconfig]
        k = self.RDNkSize
        f1 = conv(self.G0, k, self.n_colors, "SFENet1", self.dtype)(x)
        x = conv(self.G0, k, self.G0, "SFENet2", self.dtype)(f1)
        outs = []
        for i in range(d):
            x = RDB(self.G0, g, c, self.dtype, name=f"RDBs_{i}")(x)
            outs.append(x)
        x = conv(self.G0, 1, d * self.G0, "GFF_0", self.dtype)(jnp.concatenate(outs, axis=-1))
        x = conv(self.G0, k, self.G0, "GFF_1", self.dtype)(x) + f1
        if not self.upsample_scale:
            return x
        factors = [2, 2] if self.upsample_scale == 4 else [self.upsample_scale]
        for i, r in enumerate(factors):
            x = pixel_shuffle(conv(g * r * r, k, g if i else self.G0, f"UPNet_{2 * i}", self.dtype)(x), r)
        return conv(self.n_colors, k, g, f"UPNet_{2 * len(factors)}", self.dtype)(x)


class CALayer(nn.Module):
    """Channel attention: global average pool, bottleneck, sigmoid gate."""

    channels: int
    reduction: int
    dtype: Dtype = None

    @nn.compact
    def __call__(self, x):
        y = jnp.mean(x, axis=(1, 2), keepdims=True)
        mid = self.channels // self.reduction
        y = nn.relu(conv(mid, 1, self.channels, "conv_du_0", self.dtype)(y))
        y = nn.sigmoid(conv(self.channels, 1, mid, "conv_du_2", self.dtype)(y))
        return x * y


class RCAB(nn.Module):
    """Residual channel attention block (the official forward ignores res_scale)."""

    n_feats: int
    reduction: int
    dtype: Dtype = None

    @nn.compact
    def __call__(self, x):
        res = nn.relu(conv(self.n_feats, 3, self.n_feats, "body_0", self.dtype)(x))
        res = conv(self.n_feats, 3, self.n_feats, "body_2", self.dtype)(res)
        res = CALayer(self.n_feats, self.reduction, self.dtype, name="body_3")(res)
        return res + x


class ResidualGroup(nn.Module):
    n_feats: int
    reduction: int
    n_resblocks: int
    dtype: Dtype = None

    @nn.compact
    def __call__(self, x):
        block = functools.partial(RCAB, self.n_feats, self.reduction, self.dtype)
        return residual_body(x, [block] * self.n_resblocks, self.n_feats, self.dtype)


class RCAN(nn.Module):
    """RCAN (Zhang et al. 2018) without the upsampling tail."""

    n_resgroups: int = 10
    n_resblocks: int = 20
    n_feats: int = 64
    reduction: int = 16
    n_colors: int = 3
    dtype: Dtype = None

    @property
    def out_dim(self) -> int:
        return self.n_feats

    @nn.compact
    def __call__(self, x):
        x = conv(self.n_feats, 3, self.n_colors, "head_0", self.dtype)(x)
        group = functools.partial(ResidualGroup, self.n_feats, self.reduction, self.n_resblocks, self.dtype)
        return residual_body(x, [group] * self.n_resgroups, self.n_feats, self.dtype)


def _edsr_baseline(n_resblocks=16, n_feats=64, res_scale=1, **kw) -> EDSR:
    return EDSR(n_resblocks=n_resblocks, n_feats=n_feats, res_scale=res_scale, **kw)


def _edsr(n_resblocks=32, n_feats=256, res_scale=0.1, **kw) -> EDSR:
    return EDSR(n_resblocks=n_resblocks, n_feats=n_feats, res_scale=res_scale, **kw)


def _rdn(G0=64, RDNkSize=3, RDNconfig="B", **kw) -> RDN:
    if RDNconfig not in RDN_CONFIGS:
        raise ValueError(f"RDNconfig must be one of {sorted(RDN_CONFIGS)}, got {RDNconfig!r}")
    return RDN(G0=G0, RDNkSize=RDNkSize, RDNconfig=RDNconfig, **kw)


def _rcan(n_resgroups=10, n_resblocks=20, n_feats=64, reduction=16, **kw) -> RCAN:
    return RCAN(n_resgroups=n_resgroups, n_resblocks=n_resblocks, n_feats=n_feats, reduction=reduction, **kw)


# Official registry names -> factories taking the official `args` (defaults as the official code).
ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "edsr-baseline": _edsr_baseline,
    "edsr": _edsr,
    "rdn": _rdn,
    "rcan": _rcan,
    "swinir": make_swinir,
}
# LTE's `swinir` factory ignores `no_upsampling`: it always returns the feature map.
FEATURES_ONLY = ("swinir",)

# The scales each official upsampling tail supports (EDSR: powers of two and 3; RDN: 2, 3, 4).
_TAIL_SCALES: dict[str, Callable[[int], bool]] = {
    "edsr-baseline": lambda s: s == 3 or _is_power_of_two(s),
    "edsr": lambda s: s == 3 or _is_power_of_two(s),
    "rdn": lambda s: s in (2, 3, 4),
}


def make_encoder(name: str, args: dict[str, Any] | None = None, dtype: Dtype = None) -> nn.Module:
    """Builds an encoder from an official `encoder_spec` (`{'name': ..., 'args': {...}}`): the
    feature map with `no_upsampling: true`, else RGB upsampled by `scale` (official default 2)."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; available: {', '.join(ENCODERS)}")
    args = dict(args or {})
    args.pop("rgb_range", None)  # only the unused mean shift reads it
    scale = args.pop("scale", 2)
    if not args.pop("no_upsampling", False) and name not in FEATURES_ONLY:
        if name not in _TAIL_SCALES:
            raise ValueError(f"encoder {name!r}: the upsampling tail is not implemented; set no_upsampling: true")
        if not isinstance(scale, int) or not _TAIL_SCALES[name](scale):
            raise ValueError(f"encoder {name!r}: upsampling tail scale {scale!r} is not supported by the official code")
        args["upsample_scale"] = scale
    try:
        return ENCODERS[name](dtype=dtype, **args)
    except TypeError as e:
        raise ValueError(f"encoder {name!r}: unsupported args {args}: {e}") from None
