"""Ablation of the paper, Table 3: LIIF with a 2-layer [256, 256] MLP (-d); otherwise edsr-baseline-liif."""

from liif_jax.configs.common import div2k_config, liif_spec


def get_config():
    return div2k_config(liif_spec("edsr-baseline", hidden_list=(256, 256)))
