"""Official train_edsr-baseline-liif.yaml: EDSR-baseline encoder, LIIF decoder, DIV2K, 1000 epochs."""

from liif_jax.configs.common import div2k_config, liif_spec


def get_config():
    return div2k_config(liif_spec("edsr-baseline"))
