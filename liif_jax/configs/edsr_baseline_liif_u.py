"""Ablation of the paper, Table 3: LIIF with no feature unfolding (-u); otherwise edsr-baseline-liif."""

from liif_jax.configs.common import div2k_config, liif_spec


def get_config():
    return div2k_config(liif_spec("edsr-baseline", feat_unfold=False))
