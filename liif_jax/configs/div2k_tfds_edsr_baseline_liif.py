"""The paper's EDSR-baseline-LIIF on DIV2K as TFDS users have it: the catalog's `div2k` builder.

Prepare it once, in ArrayRecord form (TensorFlow is needed for this step only; reading needs none):
`tfds build div2k/bicubic_x4 --file_format=array_record --data_dir=DIR` (any `div2k/*` config:
its `hr` images are the same, and only `hr` is read; DIV2K's own site must be reachable). Then
`python -m liif_jax.train --workdir W --config div2k_tfds_edsr_baseline_liif --config.tfds_data_dir=DIR`
(`--config.tfds_name=div2k/bicubic_x2` for another prepared config). The official schedule as on
folders (`edsr_baseline_liif`): the 800 `train` images 20 times per epoch, validation on the first
10 `validation` images x 160 random crops; a folder of the same images in the same order gives
the same batches (docs/training.md).
"""

from ml_collections import config_dict

from liif_jax.configs.common import base_config, liif_spec

DEFAULT_DATA_DIR = "~/tensorflow_datasets"


def get_config():
    name = config_dict.FieldReference("div2k/bicubic_x4")
    data_dir = config_dict.FieldReference(DEFAULT_DATA_DIR)

    def div2k(split: str, **kw) -> dict:
        return {"name": "tfds", "args": {"name": name, "data_dir": data_dir, "split": split, **kw}}

    c = base_config(liif_spec("edsr-baseline"), div2k("train", repeat=20), div2k("validation", first_k=10, repeat=160))
    c.tfds_name = name
    c.tfds_data_dir = data_dir
    return c
