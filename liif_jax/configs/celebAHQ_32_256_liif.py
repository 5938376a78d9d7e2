"""CelebA-HQ 32 -> 256 (paper Table 4): the official train_celebAHQ-32-256_liif.yaml."""

from liif_jax.configs.common import celebahq_config


def get_config():
    return celebahq_config(lr_size=32, hr_size=256)
