"""LTE's train_rdn-lte.yaml: RDN encoder (config B, G0 64), LTE decoder (hidden 256, MLP 256x3), DIV2K."""

from liif_jax.configs.common import div2k_config, lte_spec


def get_config():
    return div2k_config(lte_spec("rdn"))
