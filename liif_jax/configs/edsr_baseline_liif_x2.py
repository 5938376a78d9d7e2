"""Ablation of the paper, Table 3: trained at the fixed scale x2 only (scale_min = scale_max = 2)."""

from liif_jax.configs.common import div2k_config, downsampled, liif_spec


def get_config():
    return div2k_config(
        liif_spec("edsr-baseline"),
        train_wrapper=downsampled(scale_min=2, scale_max=2),
        val_wrapper=downsampled(scale_min=2, scale_max=2, augment=False),
    )
