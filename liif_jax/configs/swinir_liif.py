"""LTE's train_swinir-liif.yaml: SwinIR encoder, LIIF decoder (MLP 256x4), DIV2K. (The YAML names its
model `swinir`, which LTE's own code cannot build; it means this LIIF.)"""

from liif_jax.configs.common import div2k_config, liif_spec


def get_config():
    return div2k_config(liif_spec("swinir"))
