"""The SwinIR encoder as LTE's `models/swinir.py` builds it (`upsampler='none'`), NHWC.

Classical SwinIR (Liang et al. 2021): a 3x3 conv, residual Swin transformer blocks (RSTB: Swin
blocks alternating plain and shifted window attention, then a 3x3 conv, plus the RSTB's input), a
LayerNorm, a 3x3 conv plus the first conv's output, and a 3x3 conv to 64 channels with LeakyReLU
(slope 0.01). The input is reflect-padded at the bottom and right to a multiple of the window, and
the features keep that padded size, as in LTE's code. LTE's `swinir` factory takes no arguments
(180 channels, 6 RSTBs of 6 blocks, 6 heads, window 8, MLP ratio 2, drop path 0.1); the same
names of SwinIR's constructor are accepted here, for compact models.

Module names mirror LTE's state-dict names (`layers.0.residual_group.blocks.1.attn.qkv.weight` ->
`layers_0/residual_group/blocks_1/attn/qkv/kernel`). Its buffers (`relative_position_index`,
`attn_mask`) are computed from the configuration (`buffers`), not stored as params.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from liif_jax.models.layers import Dtype, conv

NUM_FEAT = 64  # LTE's SwinIR: conv_before_upsample's output channels, fixed in its constructor
MASK_VALUE = -100.0  # SwinIR's attention mask between regions that a shifted window joins
LN_EPS = 1e-5  # torch.nn.LayerNorm's default


def _trunc_normal_init(std: float):
    return jax.nn.initializers.truncated_normal(std, lower=-2.0 / std, upper=2.0 / std)


def _dense(features: int, name: str, dtype: Dtype, use_bias: bool = True) -> nn.Dense:
    """SwinIR's Linear layers: trunc_normal(std 0.02) weights, zero bias (its `_init_weights`)."""
    return nn.Dense(
        features,
        use_bias=use_bias,
        kernel_init=_trunc_normal_init(0.02),
        bias_init=nn.initializers.zeros,
        dtype=dtype,
        name=name,
    )


def _layer_norm(name: str, dtype: Dtype) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=LN_EPS, use_fast_variance=False, dtype=dtype, name=name)


def relative_position_index(window: int) -> np.ndarray:
    """(window**2, window**2) int64: SwinIR's index into the relative position bias table."""
    coords = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="ij")).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + (window - 1)
    return (rel[..., 0] * (2 * window - 1) + rel[..., 1]).astype(np.int64)


def window_partition(x: jax.Array, window: int) -> jax.Array:
    """(B, H, W, C) -> (B * H/w * W/w, w * w, C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // window, window, w // window, window, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def window_reverse(windows: jax.Array, window: int, h: int, w: int) -> jax.Array:
    c = windows.shape[-1]
    x = windows.reshape(-1, h // window, w // window, window, window, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def attention_mask(hw: tuple[int, int], window: int, shift: int) -> np.ndarray:
    """(nW, w*w, w*w) float32: 0 within a region of the shifted image, -100 across regions."""
    img = np.zeros((1, *hw, 1), np.float32)
    cnt = 0
    slices = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for hs in slices:
        for ws in slices:
            img[:, hs, ws, :] = cnt
            cnt += 1
    h, w = hw
    win = img.reshape(1, h // window, window, w // window, window, 1).transpose(0, 1, 3, 2, 4, 5)
    win = win.reshape(-1, window * window)
    diff = win[:, None, :] - win[:, :, None]
    return np.where(diff != 0, MASK_VALUE, 0.0).astype(np.float32)


def block_window(img_size: int, window: int, shift: int) -> tuple[int, int]:
    """(window, shift) of a Swin block: SwinIR shrinks the window to the resolution it was built
    for (`img_size`) when that is not larger, and then does not shift."""
    if img_size <= window:
        return img_size, 0
    return window, shift


class WindowAttention(nn.Module):
    window: int
    num_heads: int
    dtype: Dtype = None

    @nn.compact
    def __call__(self, x: jax.Array, mask: np.ndarray | None) -> jax.Array:
        """x (B_, N, C) of windows; mask (nW, N, N) or None."""
        b_, n, c = x.shape
        heads, head_dim = self.num_heads, c // self.num_heads
        table = self.param(
            "relative_position_bias_table", _trunc_normal_init(0.02), ((2 * self.window - 1) ** 2, heads), jnp.float32
        )
        qkv = _dense(3 * c, "qkv", self.dtype)(x).reshape(b_, n, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = q * (head_dim**-0.5)
        attn = q @ k.swapaxes(-2, -1)  # (B_, heads, N, N)
        bias = table[relative_position_index(self.window).reshape(-1)].reshape(n, n, heads).transpose(2, 0, 1)
        attn = attn + bias[None]
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.reshape(b_ // nw, nw, heads, n, n) + jnp.asarray(mask)[None, :, None]
            attn = attn.reshape(-1, heads, n, n)
        attn = jax.nn.softmax(attn.astype(jnp.float32), axis=-1).astype(v.dtype)
        x = (attn @ v).transpose(0, 2, 1, 3).reshape(b_, n, c)
        return _dense(c, "proj", self.dtype)(x)


class Mlp(nn.Module):
    """fc1, exact GELU, fc2 (SwinIR's dropout is 0)."""

    hidden: int
    dtype: Dtype = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = nn.gelu(_dense(self.hidden, "fc1", self.dtype)(x), approximate=False)
        return _dense(x.shape[-1], "fc2", self.dtype)(y)


def drop_path(module: nn.Module, y: jax.Array, rate: float, train: bool) -> jax.Array:
    """timm's DropPath (stochastic depth): in training, a sample's whole branch is zeroed with
    probability `rate` and kept scaled by 1 / (1 - rate) otherwise; the identity in evaluation."""
    if not train or rate == 0.0:
        return y
    keep = 1.0 - rate
    u = jax.random.uniform(module.make_rng("drop_path"), (y.shape[0],) + (1,) * (y.ndim - 1), y.dtype)
    return y / keep * jnp.floor(keep + u)


class SwinBlock(nn.Module):
    """A Swin transformer block: (shifted) window attention and an MLP, each pre-normed, residual,
    and behind stochastic depth in training."""

    num_heads: int
    img_size: int
    window: int
    shift: int
    mlp_ratio: float
    drop_path: float
    dtype: Dtype = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """x (B, H, W, C), H and W multiples of the window."""
        _, h, w, c = x.shape
        window, shift = block_window(self.img_size, self.window, self.shift)
        y = _layer_norm("norm1", self.dtype)(x)
        if shift:
            y = jnp.roll(y, (-shift, -shift), axis=(1, 2))
        mask = attention_mask((h, w), window, shift) if shift else None
        y = WindowAttention(window, self.num_heads, self.dtype, name="attn")(window_partition(y, window), mask)
        y = window_reverse(y, window, h, w)
        if shift:
            y = jnp.roll(y, (shift, shift), axis=(1, 2))
        x = x + drop_path(self, y, self.drop_path, train)
        y = Mlp(int(c * self.mlp_ratio), self.dtype, name="mlp")(_layer_norm("norm2", self.dtype)(x))
        return x + drop_path(self, y, self.drop_path, train)


class BasicLayer(nn.Module):
    depth: int
    num_heads: int
    img_size: int
    window: int
    mlp_ratio: float
    drop_path: Sequence[float]
    dtype: Dtype = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        for i in range(self.depth):
            shift = 0 if i % 2 == 0 else self.window // 2
            x = SwinBlock(
                self.num_heads,
                self.img_size,
                self.window,
                shift,
                self.mlp_ratio,
                self.drop_path[i],
                self.dtype,
                name=f"blocks_{i}",
            )(x, train)
        return x


class RSTB(nn.Module):
    """Residual Swin transformer block: Swin blocks, a 3x3 conv, plus the input."""

    depth: int
    num_heads: int
    img_size: int
    window: int
    mlp_ratio: float
    drop_path: Sequence[float]
    dtype: Dtype = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        c = x.shape[-1]
        y = BasicLayer(
            self.depth,
            self.num_heads,
            self.img_size,
            self.window,
            self.mlp_ratio,
            self.drop_path,
            self.dtype,
            name="residual_group",
        )(x, train)
        return conv(c, 3, c, "conv", self.dtype)(y) + x


class PatchEmbed(nn.Module):
    """SwinIR's patch embedding at patch size 1: a LayerNorm over channels (`patch_norm`)."""

    dtype: Dtype = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return _layer_norm("norm", self.dtype)(x)


def reflect_pad(x: jax.Array, window: int) -> jax.Array:
    """SwinIR's `check_image_size`: reflect padding (no edge repeat) at the bottom and right to a
    multiple of the window; like torch, refuses a pad as large as the image."""
    _, h, w, _ = x.shape
    ph, pw = (-h) % window, (-w) % window
    if ph >= h or pw >= w:
        raise ValueError(f"SwinIR: a {h}x{w} input is too small to reflect-pad to a multiple of its window {window}")
    return jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="reflect")


class SwinIR(nn.Module):
    """LTE's SwinIR with `upsampler='none'`: features (B, H', W', 64) of a (B, H, W, 3) input,
    H' and W' the input's size padded to multiples of the window."""

    img_size: int = 48
    embed_dim: int = 180
    depths: Sequence[int] = (6, 6, 6, 6, 6, 6)
    num_heads: Sequence[int] = (6, 6, 6, 6, 6, 6)
    window_size: int = 8
    mlp_ratio: float = 2.0
    drop_path_rate: float = 0.1
    dtype: Dtype = None

    @property
    def out_dim(self) -> int:
        return NUM_FEAT

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = reflect_pad(x, self.window_size)
        d = self.embed_dim
        x = conv(d, 3, 3, "conv_first", self.dtype)(x)
        rates = [float(r) for r in np.linspace(0, self.drop_path_rate, sum(self.depths), dtype=np.float32)]
        y = PatchEmbed(self.dtype, name="patch_embed")(x)
        start = 0
        for i, (depth, heads) in enumerate(zip(self.depths, self.num_heads)):
            y = RSTB(
                depth,
                heads,
                self.img_size,
                self.window_size,
                self.mlp_ratio,
                rates[start : start + depth],
                self.dtype,
                name=f"layers_{i}",
            )(y, train)
            start += depth
        y = _layer_norm("norm", self.dtype)(y)
        x = conv(d, 3, d, "conv_after_body", self.dtype)(y) + x
        return nn.leaky_relu(conv(NUM_FEAT, 3, d, "conv_before_upsample_0", self.dtype)(x), 0.01)


def buffers(encoder: SwinIR, prefix: str = "encoder.") -> dict[str, np.ndarray]:
    """The buffers LTE's SwinIR keeps in its state dict, as it computes them: each block's
    `relative_position_index`, and each shifted block's `attn_mask` for an `img_size` input."""
    out = {}
    for i, depth in enumerate(encoder.depths):
        for j in range(depth):
            window, shift = block_window(
                encoder.img_size, encoder.window_size, 0 if j % 2 == 0 else encoder.window_size // 2
            )
            name = f"{prefix}layers.{i}.residual_group.blocks.{j}."
            if shift:
                out[name + "attn_mask"] = attention_mask((encoder.img_size, encoder.img_size), window, shift)
            out[name + "attn.relative_position_index"] = relative_position_index(window)
    return out


def make_swinir(
    img_size: int = 48,
    embed_dim: int = 180,
    depths: Sequence[int] = (6,) * 6,
    num_heads: Sequence[int] = (6,) * 6,
    window_size: int = 8,
    mlp_ratio: float = 2.0,
    drop_path_rate: float = 0.1,
    dtype: Dtype = None,
) -> SwinIR:
    """LTE's `swinir` (its defaults), with SwinIR's constructor arguments for compact models."""
    if len(depths) != len(num_heads) or not depths:
        raise ValueError(
            f"swinir: depths {list(depths)} and num_heads {list(num_heads)} must be non-empty lists of one length"
        )
    if any(embed_dim % h for h in num_heads):
        raise ValueError(f"swinir: embed_dim {embed_dim} must be a multiple of every num_heads {list(num_heads)}")
    return SwinIR(
        img_size,
        embed_dim,
        tuple(depths),
        tuple(num_heads),
        window_size,
        float(mlp_ratio),
        float(drop_path_rate),
        dtype,
    )
