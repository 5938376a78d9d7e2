"""Official train_rdn-liif.yaml: RDN encoder (config B, G0 64), LIIF decoder, DIV2K."""

from liif_jax.configs.common import div2k_config, liif_spec


def get_config():
    return div2k_config(liif_spec("rdn"))
