"""Official train_edsr-baseline-metasr.yaml: the MetaSR baseline on the EDSR-baseline encoder, DIV2K."""

from liif_jax.configs.common import div2k_config


def get_config():
    model = {"name": "metasr", "args": {"encoder_spec": {"name": "edsr-baseline", "args": {"no_upsampling": True}}}}
    return div2k_config(model)
