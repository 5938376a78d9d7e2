"""CelebA-HQ 64 -> 128 (paper Table 4): 64 px inputs from 128 px faces, scales up to x2."""

from liif_jax.configs import celebahq_config


def get_config():
    return celebahq_config(inp_size=64, hr_size=128, sample_q=4096)
