"""The models, as pure functions over a params tree named after the official state dict.

`spec` checks an official model spec; `layers`, `encoders` and `swinir` are the encoders (EDSR,
RDN, RCAN, SwinIR); `liif`, `lte` and `model` are the decoders and the assembled models (LIIF,
MetaSR, LTE and the fixed-scale baselines), each an `encode` once and a `query` of any coordinates.
Nothing here reads files or knows about training.
"""

from liif_jax.models.model import LIIF, LTE, FixedScaleSR, MetaSR, Model, Params, Spec, build_model, describe

__all__ = ["LIIF", "LTE", "FixedScaleSR", "MetaSR", "Model", "Params", "Spec", "build_model", "describe"]
