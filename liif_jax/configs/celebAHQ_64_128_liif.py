"""CelebA-HQ 64 -> 128 (paper Table 4): the official train_celebAHQ-64-128_liif.yaml."""

from liif_jax.configs.common import celebahq_config


def get_config():
    return celebahq_config(lr_size=64, hr_size=128)
