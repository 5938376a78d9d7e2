"""LTE's train_edsr-baseline-lte.yaml: EDSR-baseline encoder, LTE decoder (hidden 256, MLP 256x3), DIV2K."""

from liif_jax.configs.common import div2k_config, lte_spec


def get_config():
    return div2k_config(lte_spec("edsr-baseline"))
