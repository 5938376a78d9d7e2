"""LTE's train_swinir-lte.yaml: SwinIR encoder (180 channels, 6 x 6 blocks, window 8), LTE decoder,
DIV2K; batch 32, Adam 2e-4 halved at epochs 500, 800, 900 and 950 of 1000."""

from liif_jax.configs.common import div2k_config, lte_spec


def get_config():
    return div2k_config(lte_spec("swinir"), batch_size=32, lr=2e-4, milestones=(500, 800, 900, 950))
