"""LTE's train_swinir-metasr.yaml: the MetaSR baseline on the SwinIR encoder, DIV2K."""

from liif_jax.configs.common import div2k_config


def get_config():
    model = {"name": "metasr", "args": {"encoder_spec": {"name": "swinir", "args": {"no_upsampling": True}}}}
    return div2k_config(model)
