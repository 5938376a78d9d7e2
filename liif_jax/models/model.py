"""Models built from official model specs: `{'name': 'liif' | 'metasr' | 'lte', 'args': {...}}`.

A model is a frozen description plus pure functions of `params` (a nested dict with `encoder`,
`imnet` and, for LTE, `coef`, `freq` and `phase`). `encode` (`features`, then `latents`) runs the encoder once per image or tile; `query`
decodes any number of coordinates from its result, so rendering can query in blocks.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from liif_jax.kernels import fused_query
from liif_jax.models import liif, lte
from liif_jax.models.coords import centre
from liif_jax.models.encoders import make_encoder
from liif_jax.models.layers import Dtype, conv, dense

Params = Any
Spec = dict[str, Any]

LIIF_FLAGS = ("feat_unfold", "local_ensemble", "cell_decode")


def init_params(encoder: nn.Module, imnet: liif.MLP, rng: jax.Array, inp_size: int) -> Params:
    """{'encoder', 'imnet'} params with PyTorch's default initialisation."""
    k_enc, k_mlp = jax.random.split(rng)
    enc = encoder.init(k_enc, jnp.zeros((1, inp_size, inp_size, 3), jnp.float32))["params"]
    mlp = imnet.init(k_mlp, jnp.zeros((1, imnet.in_dim), jnp.float32))["params"]
    return {"encoder": enc, "imnet": mlp}


class EncodeQuery:
    """What every model shares: `encode` = `latents` of the encoder's `features`, then `query`
    any coordinates of it. `latents` is the feature map itself unless a model says otherwise
    (LIIF applies its first MLP layer there)."""

    encoder: nn.Module

    def features(self, params: Params, inp: jax.Array, rng: jax.Array | None = None) -> jax.Array:
        """Encoder output (B, h, w, C) of images in [-1, 1] (B, h, w, 3); an upsampling encoder's
        map is larger (the fixed-scale baselines), SwinIR's padded to its window.

        `rng` runs the encoder in training mode: SwinIR's stochastic depth draws from it (the
        other encoders have nothing random and ignore it)."""
        variables = {"params": params["encoder"]}
        if rng is not None and getattr(self.encoder, "drop_path_rate", 0):
            out = self.encoder.apply(variables, inp, train=True, rngs={"drop_path": rng})
        else:
            out = self.encoder.apply(variables, inp)
        return out.astype(jnp.float32)

    def latents(self, params: Params, feat: jax.Array) -> jax.Array:
        return feat

    def encode(self, params: Params, inp: jax.Array, rng: jax.Array | None = None) -> jax.Array:
        return self.latents(params, self.features(params, inp, rng))

    def apply(
        self, params: Params, inp: jax.Array, coord: jax.Array, cell: jax.Array, rng: jax.Array | None = None
    ) -> jax.Array:
        """Queries of one forward pass; `rng`: training mode (see `features`)."""
        return self.query(params, self.encode(params, inp, rng), coord, cell)


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: a static jit argument
class LIIF(EncodeQuery):
    """LIIF with feature unfolding, local ensemble and cell decoding each switchable."""

    spec: Spec
    encoder: nn.Module
    imnet: liif.MLP
    feat_unfold: bool = True
    local_ensemble: bool = True
    cell_decode: bool = True
    dtype: Dtype = None

    def init(self, rng: jax.Array, inp_size: int = 48) -> Params:
        return init_params(self.encoder, self.imnet, rng, inp_size)

    def latents(self, params: Params, feat: jax.Array) -> jax.Array:
        """Latent grid: the first MLP layer's feature term at every latent (B, h, w, hidden)."""
        w_feat, _ = liif.first_layer_split(params["imnet"]["layers_0"]["kernel"], feat.shape[-1], self.feat_unfold)
        return liif.latent_grid(w_feat, feat, self.dtype)

    def query(
        self,
        params: Params,
        grid: jax.Array,
        coord: jax.Array,
        cell: jax.Array,
        lattice: liif.Lattice | None = None,
        mlp_dtype: Dtype = None,
    ) -> jax.Array:
        """RGB in [-1, 1] (B, Q, 3) at coordinates (B, Q, 2) with cells (B, Q, 2).

        `grid` is the whole latent grid, or the window of it that `lattice` places; `mlp_dtype`
        overrides the MLP's compute dtype (bf16 rendering).
        """
        first = params["imnet"]["layers_0"]
        imnet = self.imnet if mlp_dtype is None else self.imnet.clone(dtype=mlp_dtype)
        mlp_rest = functools.partial(imnet.apply, {"params": params["imnet"]}, first_layer_done=True)
        lat = liif.lattice(grid.shape[1:3]) if lattice is None else lattice
        out = liif.query(grid, coord, cell, lat, self._w_terms(params), first["bias"], mlp_rest, self.local_ensemble)
        return out.astype(jnp.float32)

    def query_fused(
        self,
        params: Params,
        grid: jax.Array,
        coord: jax.Array,
        cell: jax.Array,
        lattice: liif.Lattice | None = None,
        mlp_dtype: Dtype = None,
        n_valid: jax.Array | None = None,
    ) -> jax.Array:
        """`query` by the fused kernel (`liif_jax.kernels.fused_query`; `fused_supported`). `n_valid`: only
        the first n_valid queries of each image are computed, the rest of the output is undefined."""
        mlp = params["imnet"]
        layers = [
            (mlp[f"layers_{2 * i}"]["kernel"], mlp[f"layers_{2 * i}"]["bias"])
            for i in range(1, len(self.imnet.hidden_list) + 1)
        ]
        lat = liif.lattice(grid.shape[1:3]) if lattice is None else lattice
        return liif.query_fused(
            grid,
            coord,
            cell,
            lat,
            self._w_terms(params),
            mlp["layers_0"]["bias"],
            layers,
            self.local_ensemble,
            n_valid,
            mlp_dtype or self.dtype,
        )

    @property
    def fused_supported(self) -> bool:
        """Whether `query_fused` runs this MLP (hidden widths multiples of 16)."""
        return fused_query.supports(self.imnet.hidden_list, len(liif.neighbour_signs(self.local_ensemble)))

    def _w_terms(self, params: Params) -> jax.Array:
        """The first MLP kernel's rows for the relative coordinate and cell (`liif.query`)."""
        return liif.first_layer_split(params["imnet"]["layers_0"]["kernel"], self.encoder.out_dim, self.feat_unfold)[1]


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: a static jit argument
class MetaSR(EncodeQuery):
    """The MetaSR baseline of the LIIF paper: an MLP predicts per-query 3x3 filter weights."""

    spec: Spec
    encoder: nn.Module
    imnet: liif.MLP
    dtype: Dtype = None

    def init(self, rng: jax.Array, inp_size: int = 48) -> Params:
        return init_params(self.encoder, self.imnet, rng, inp_size)

    def query(
        self,
        params: Params,
        feat: jax.Array,
        coord: jax.Array,
        cell: jax.Array,
        lattice: liif.Lattice | None = None,
        mlp_dtype: Dtype = None,
    ) -> jax.Array:
        """As `LIIF.query`: `feat` is the whole feature map or the window of it that `lattice` places."""
        imnet = self.imnet if mlp_dtype is None else self.imnet.clone(dtype=mlp_dtype)
        imnet = functools.partial(imnet.apply, {"params": params["imnet"]})
        lat = liif.lattice(feat.shape[1:3]) if lattice is None else lattice
        one = lambda f, x, c: metasr_point(f, x, c, lat, imnet)
        return jax.vmap(jax.vmap(one, in_axes=(None, 0, 0)))(feat, coord, cell).astype(jnp.float32)


def metasr_point(feat: jax.Array, coord: jax.Array, cell: jax.Array, lat: liif.Lattice, imnet) -> jax.Array:
    """Official `MetaSR.query_rgb` for one query: feat (h, w, C), a window of the grid `lat`
    describes -> RGB (3,)."""
    c = feat.shape[-1]
    half = lat.half
    corner = coord - cell / 2  # the query cell's top-left corner
    q = jnp.clip(corner + liif.ENSEMBLE_EPS, -liif.CLAMP, liif.CLAMP)
    index = liif.nearest_index(q, half)
    # Latent coordinates shifted to their cells' top-left corners, as the official code does.
    rel = (corner - (centre(lat.first, lat.step, index.astype(jnp.float32)) - lat.inv)) * half
    inp = jnp.stack([rel[0], rel[1], cell[0] * half[0]])
    weights = imnet(inp).reshape(c * 9, 3)
    padded = jnp.pad(feat, ((1, 1), (1, 1), (0, 0)))
    local = index - lat.origin
    patch = jax.lax.dynamic_slice(padded, (local[0], local[1], 0), (3, 3, c))  # F.unfold's 3x3 window
    q_feat = patch.transpose(2, 0, 1).reshape(c * 9)  # channel-major, as F.unfold
    return q_feat @ weights


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: a static jit argument
class FixedScaleSR(EncodeQuery):
    """The paper's fixed-scale baselines: the official `liif` model without `imnet_spec`.

    The encoder ends with its upsampling tail, so `encode` returns the upsampled RGB map
    (B, h * s, w * s, 3) and `query` reads the pixel nearest each coordinate, as the official
    `grid_sample(mode='nearest', align_corners=False)` (zero outside the map). Cells are unused.
    """

    spec: Spec
    encoder: nn.Module
    dtype: Dtype = None

    def init(self, rng: jax.Array, inp_size: int = 48) -> Params:
        return {"encoder": self.encoder.init(rng, jnp.zeros((1, inp_size, inp_size, 3), jnp.float32))["params"]}

    def query(
        self,
        params: Params,
        upsampled: jax.Array,
        coord: jax.Array,
        cell: jax.Array,
        lattice: liif.Lattice | None = None,
        mlp_dtype: Dtype = None,
    ) -> jax.Array:
        """The nearest pixel of the whole upsampled map (never tiled: see `tiling.plan`)."""
        del params, cell, lattice, mlp_dtype
        h, w = upsampled.shape[1:3]
        iy = liif.nearest_index(coord[..., 0], np.float32(h / 2))
        ix = liif.nearest_index(coord[..., 1], np.float32(w / 2))
        inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
        pick = jax.vmap(lambda img, y, x: img[y, x])(upsampled, jnp.clip(iy, 0, h - 1), jnp.clip(ix, 0, w - 1))
        return jnp.where(inside[..., None], pick, 0.0)


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: a static jit argument
class LTE(EncodeQuery):
    """LTE (Local Texture Estimator), as LTE's `models/lte.py`: a Fourier basis per latent
    (coefficients and frequencies, 3x3 convs of the features; a phase from the cell) decoded by an
    MLP with the local ensemble, plus the bilinear sample of the input (see `liif_jax.models.lte`).

    `features` are (encoder features, input image): the query adds the input's bilinear sample,
    so both travel together through tiling and rendering."""

    spec: Spec
    encoder: nn.Module
    imnet: liif.MLP
    hidden_dim: int = 256
    dtype: Dtype = None
    local_ensemble: ClassVar[bool] = True  # always on in LTE (what `tiling` asks of a model)

    def init(self, rng: jax.Array, inp_size: int = 48) -> Params:
        k_enc, k_coef, k_freq, k_phase, k_mlp = jax.random.split(rng, 5)
        enc = self.encoder.init(k_enc, jnp.zeros((1, inp_size, inp_size, 3), jnp.float32))["params"]
        c, d = self.encoder.out_dim, self.hidden_dim
        fmap = jnp.zeros((1, 3, 3, c), jnp.float32)
        return {
            "encoder": enc,
            "coef": conv(d, 3, c, "coef").init(k_coef, fmap)["params"],
            "freq": conv(d, 3, c, "freq").init(k_freq, fmap)["params"],
            "phase": dense(d // 2, 2, "phase", use_bias=False).init(k_phase, jnp.zeros((1, 2)))["params"],
            "imnet": self.imnet.init(k_mlp, jnp.zeros((1, d), jnp.float32))["params"],
        }

    def features(self, params: Params, inp: jax.Array, rng: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """(encoder features (B, h', w', C), input (B, h, w, 3))."""
        return super().features(params, inp, rng), inp.astype(jnp.float32)

    def latents(self, params: Params, feat: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        """(coefficients and frequencies (B, h', w', 2 * hidden), input): `lte.fourier_grid`."""
        feat, image = feat
        coef, freq = params["coef"], params["freq"]
        return lte.fourier_grid(coef["kernel"], coef["bias"], freq["kernel"], freq["bias"], feat, self.dtype), image

    def query(
        self,
        params: Params,
        grid: tuple[jax.Array, jax.Array],
        coord: jax.Array,
        cell: jax.Array,
        lattice: liif.Lattice | None = None,
        mlp_dtype: Dtype = None,
    ) -> jax.Array:
        """As `LIIF.query`. The input's own lattice is the feature lattice unless the encoder padded
        the input (SwinIR): then the map is whole (never tiled) and the input lattice is its own."""
        fourier, image = grid
        lat = liif.lattice(fourier.shape[1:3]) if lattice is None else lattice
        lat_in = lat if image.shape[1:3] == fourier.shape[1:3] else liif.lattice(image.shape[1:3])
        imnet = self.imnet if mlp_dtype is None else self.imnet.clone(dtype=mlp_dtype)
        mlp = functools.partial(imnet.apply, {"params": params["imnet"]})
        out = lte.query(fourier, image, coord, cell, lat, lat_in, params["phase"]["kernel"], mlp)
        return out.astype(jnp.float32)


Model = LIIF | MetaSR | FixedScaleSR | LTE  # every model: encode once, query any coordinates


def build_model(spec: Spec, dtype: Dtype = None) -> Model:
    """Model from an official spec dict. `dtype` is the compute dtype (e.g. bfloat16)."""
    spec = copy.deepcopy(spec)
    name, args = spec.get("name"), dict(spec.get("args", {}))
    enc_spec = args.pop("encoder_spec", None)
    if enc_spec is None:
        raise ValueError(f"model spec {spec!r} has no args.encoder_spec")
    encoder = make_encoder(enc_spec["name"], enc_spec.get("args"), dtype)
    upsamples = bool(getattr(encoder, "upsample_scale", None))
    if name == "liif" and args.get("imnet_spec") is None:
        if not upsamples:
            raise ValueError(
                "liif without imnet_spec is the fixed-scale baseline: its encoder needs its "
                "upsampling tail (remove no_upsampling: true), or give an imnet_spec"
            )
        unknown = set(args) - {"imnet_spec", *LIIF_FLAGS}  # the flags are accepted and unused, as officially
        if unknown:
            raise ValueError(f"liif: unknown args {sorted(unknown)}")
        return FixedScaleSR(spec, encoder, dtype)
    if upsamples:
        raise ValueError(
            f"{name}: the encoder must output its feature map; set no_upsampling: true in encoder_spec.args"
        )
    if name == "liif":
        imnet_spec = args.pop("imnet_spec")
        flags = {k: bool(args.pop(k, True)) for k in LIIF_FLAGS}
        if args:
            raise ValueError(f"liif: unknown args {sorted(args)}")
        if imnet_spec.get("name", "mlp") != "mlp":
            raise ValueError(f"liif: only the 'mlp' imnet is supported, got {imnet_spec.get('name')!r}")
        in_dim = encoder.out_dim * (9 if flags["feat_unfold"] else 1) + 2 + (2 if flags["cell_decode"] else 0)
        im_args = imnet_spec.get("args", {})
        imnet = liif.MLP(in_dim, im_args.get("out_dim", 3), tuple(im_args.get("hidden_list", [256] * 4)), dtype)
        return LIIF(spec, encoder, imnet, dtype=dtype, **flags)
    if name == "metasr":
        if args:
            raise ValueError(f"metasr: unknown args {sorted(args)}")
        imnet = liif.MLP(3, encoder.out_dim * 9 * 3, (256,), dtype)
        return MetaSR(spec, encoder, imnet, dtype)
    if name == "lte":
        imnet_spec = args.pop("imnet_spec", None)
        hidden_dim = args.pop("hidden_dim", 256)
        if args:
            raise ValueError(f"lte: unknown args {sorted(args)}")
        if imnet_spec is None or imnet_spec.get("name", "mlp") != "mlp":
            raise ValueError("lte: needs an 'mlp' imnet_spec (LTE's MLP, in_dim = hidden_dim)")
        if hidden_dim % 2:
            raise ValueError(f"lte: hidden_dim must be even (cos and sin halves), got {hidden_dim}")
        im_args = imnet_spec.get("args", {})
        imnet = liif.MLP(hidden_dim, im_args.get("out_dim", 3), tuple(im_args.get("hidden_list", [256] * 4)), dtype)
        return LTE(spec, encoder, imnet, hidden_dim, dtype)
    raise ValueError(f"unknown model {name!r}; available: liif, metasr, lte")


_ENCODER_NAMES = {"edsr-baseline": "EDSR-baseline", "edsr": "EDSR", "rdn": "RDN", "rcan": "RCAN", "swinir": "SwinIR"}


def describe(model: Model) -> str:
    """The architecture in a few words, from the built model: 'EDSR-baseline 4x32, MLP 128x2'
    (residual blocks x features; hidden width x layers), with MetaSR and LIIF's switched-off parts."""
    enc, name = model.encoder, model.spec["args"]["encoder_spec"]["name"]
    text = _ENCODER_NAMES.get(name, name)
    if name in ("edsr-baseline", "edsr"):
        text += f" {enc.n_resblocks}x{enc.n_feats}"
    elif name == "rdn":
        text += f"-{enc.RDNconfig} G0={enc.G0}"
    elif name == "swinir":
        text += f" {enc.embed_dim}x{'-'.join(map(str, enc.depths))}"
    if isinstance(model, MetaSR):
        return f"MetaSR, {text}"
    if isinstance(model, FixedScaleSR):
        return f"{text}, fixed x{enc.upsample_scale} upsampling"
    hidden = list(model.imnet.hidden_list)
    mlp = f"MLP {hidden[0]}x{len(hidden)}" if len(set(hidden)) == 1 else "MLP " + "-".join(map(str, hidden))
    if isinstance(model, LTE):
        return f"LTE, {text}, hidden {model.hidden_dim}, {mlp}"
    off = [
        f"no {part}"
        for part, on in (("unfold", model.feat_unfold), ("ensemble", model.local_ensemble), ("cell", model.cell_decode))
        if not on
    ]
    return ", ".join([text, mlp, *off])
