"""DIV2K as TFDS users have it: the `div2k_tfds_edsr_baseline_liif` config, by name and data_dir,
trains on a prepared TFDS set (here the committed `tiny_div2k_like`, laid out like `div2k/bicubic_x4`)."""

import json

import numpy as np

from liif_jax import configs
from liif_jax.configs.common import liif_spec
from liif_jax.data import datasets, pipeline
from liif_jax.training import trainer

from conftest import TFDS_DIR


def test_the_tfds_div2k_config_trains_with_the_official_schedule(tmp_path):
    c = configs.load("div2k-tfds-edsr-baseline-liif")
    assert c.tfds_name == "div2k/bicubic_x4" and c.data.train.dataset.args.repeat == 20
    assert (c.data.val.dataset.args.first_k, c.data.val.dataset.args.repeat) == (10, 160)
    configs.apply_overrides(
        c,
        [
            ("tfds_name", "tiny_div2k_like"),
            ("tfds_data_dir", str(TFDS_DIR)),
            ("data.train.batch_size", "4"),
            ("data.val.batch_size", "4"),
            ("data.train.wrapper.args.inp_size", "16"),
            ("data.train.wrapper.args.sample_q", "64"),
            ("data.val.wrapper.args.inp_size", "16"),
            ("data.val.wrapper.args.sample_q", "64"),
            ("data.val.dataset.args.repeat", "2"),
            ("num_steps", "3"),
            ("num_workers", "0"),
        ],
    )
    c.model = liif_spec("edsr-baseline", {"n_resblocks": 1, "n_feats": 8}, hidden_list=(16,))
    train = datasets.make_source(c.data.train.dataset.to_dict())
    assert len(train) == 3 * 20 and pipeline.steps_per_epoch(len(train), 4) == 15  # 3 images x repeat 20
    metrics = trainer.train_and_evaluate(c, tmp_path / "run")
    assert np.isfinite(metrics["loss"]) and np.isfinite(metrics["val_psnr"])
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["data"]["train"]["dataset"]["args"]["name"] == "tiny_div2k_like"
