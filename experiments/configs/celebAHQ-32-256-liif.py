"""CelebA-HQ 32 -> 256 (paper Table 4): 32 px inputs from 256 px faces, scales up to x8."""

from liif_jax.configs import celebahq_config


def get_config():
    return celebahq_config(inp_size=32, hr_size=256, sample_q=1024)
