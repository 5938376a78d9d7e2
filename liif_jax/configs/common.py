"""Building blocks of the shipped configs in this package (configs as data).

Sequences are tuples, so that they can be overridden on the command line
(`--config.optimizer.milestones='(100, 200)'`). Field names follow the official YAML configs
(`model`, `data.train.dataset/wrapper/batch_size`, `optimizer`), so an official config translates
line by line, and `liif_jax.configs.official` does it for a YAML file.
"""

from __future__ import annotations

from typing import Any

import ml_collections
from ml_collections import config_dict


def liif_spec(
    encoder: str = "edsr-baseline",
    encoder_args: dict[str, Any] | None = None,
    hidden_list=(256, 256, 256, 256),
    feat_unfold: bool = True,
    local_ensemble: bool = True,
    cell_decode: bool = True,
) -> dict[str, Any]:
    """An official LIIF model spec."""
    return {
        "name": "liif",
        "args": {
            "encoder_spec": {"name": encoder, "args": {"no_upsampling": True, **(encoder_args or {})}},
            "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": tuple(hidden_list)}},
            "feat_unfold": feat_unfold,
            "local_ensemble": local_ensemble,
            "cell_decode": cell_decode,
        },
    }


def lte_spec(
    encoder: str = "edsr-baseline",
    encoder_args: dict[str, Any] | None = None,
    hidden_dim: int = 256,
    hidden_list=(256, 256, 256),
) -> dict[str, Any]:
    """An LTE model spec, as LTE's training configs write it."""
    return {
        "name": "lte",
        "args": {
            "encoder_spec": {"name": encoder, "args": {"no_upsampling": True, **(encoder_args or {})}},
            "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": tuple(hidden_list)}},
            "hidden_dim": hidden_dim,
        },
    }


def downsampled(
    inp_size: int = 48, scale_min: float = 1.0, scale_max: float = 4.0, augment: bool = True, sample_q: int = 2304
) -> dict[str, Any]:
    return {
        "name": "sr-implicit-downsampled",
        "args": {
            "inp_size": inp_size,
            "scale_min": scale_min,
            "scale_max": scale_max,
            "augment": augment,
            "sample_q": sample_q,
        },
    }


def base_config(
    model: dict[str, Any],
    train_dataset: dict[str, Any],
    val_dataset: dict[str, Any] | None,
    train_wrapper: dict[str, Any] | None = None,
    val_wrapper: dict[str, Any] | None = None,
    batch_size: int = 16,
    epochs: int = 1000,
    milestones=(200, 400, 600, 800),
    gamma: float = 0.5,
    lr: float = 1e-4,
) -> ml_collections.ConfigDict:
    """The official DIV2K recipe by default: Adam 1e-4 halved at 200/400/600/800 of 1000 epochs."""
    c = ml_collections.ConfigDict()
    c.model = model
    c.data = ml_collections.ConfigDict()
    c.data.train = {"dataset": train_dataset, "wrapper": train_wrapper or downsampled(), "batch_size": batch_size}
    # Real-world degradations of the training inputs (liif_jax.data.degradations); {} = bicubic only.
    c.data.train.degradation = {}
    if val_dataset is not None:
        c.data.val = {
            "dataset": val_dataset,
            "wrapper": val_wrapper or downsampled(augment=False),
            "batch_size": batch_size,
        }
    c.optimizer = {"name": "adam", "lr": lr, "epochs": epochs, "milestones": tuple(milestones), "gamma": gamma}
    # Steps. num_steps None = optimizer.epochs epochs (epoch length is known once the data is).
    c.num_steps = config_dict.placeholder(int)
    c.log_every_steps = 100
    # None = once per epoch (the official epoch_val: 1; a checkpoint each epoch, as `epoch-last`).
    c.eval_every_steps = config_dict.placeholder(int)
    c.checkpoint_every_steps = config_dict.placeholder(int)
    c.keep_checkpoints = 3
    c.seed = 0
    # A model to start from (`pretrained:NAME`, a workdir, a checkpoint, an official or LTE .pth):
    # its params with a new optimizer, as `--init`; '' for a random initialisation.
    c.init = ""
    c.num_workers = 8  # grain worker processes for the host-side pipeline (0 = in-process)
    c.compute_dtype = "float32"  # or "bfloat16": bf16 compute, float32 params and optimizer
    # After training: LIIF vs bicubic on `dataset` at `scales` (none: skipped) under `protocol`.
    c.final_eval = {"dataset": {}, "scales": (), "protocol": "div2k"}
    # A run trained with degradations is also evaluated on inputs degraded so (`--degrade`; '' = jpeg:40).
    c.final_eval.degrade = ""
    return c


def div2k_config(model: dict[str, Any], root: str = "load/div2k", **kw) -> ml_collections.ConfigDict:
    """Official DIV2K setup: train HR x20 per epoch (1000 steps), validate on 10 valid images x160.

    Training images are decoded once into memory-mapped .npy files (`cache: bin`, ~3 GB) that the
    grain workers share, under the run's workdir; set `cache_dir` to share them between runs.
    """
    train = {"name": "image-folder", "args": {"root_path": f"{root}/DIV2K_train_HR", "repeat": 20, "cache": "bin"}}
    val = {
        "name": "image-folder",
        "args": {"root_path": f"{root}/DIV2K_valid_HR", "first_k": 10, "repeat": 160, "cache": True},
    }
    return base_config(model, train, val, **kw)


def celebahq_config(lr_size: int, hr_size: int) -> ml_collections.ConfigDict:
    """CelebA-HQ (paper Table 4), as the official `train_celebAHQ-<lr>-<hr>_liif.yaml`.

    Faces pre-resized to `load/celebAHQ/<lr_size>` and `load/celebAHQ/<hr_size>` (same file
    names), split by the official `split.json`. Training inputs are the whole lr_size faces with
    targets resized to lr_size..hr_size pixels (`sr-implicit-uniform-varied`); validation is the
    fixed x(hr/lr) pair on the first 100 validation faces. 200 epochs, lr / 10 at epoch 100.
    """

    def faces(split: str, **kw) -> dict[str, Any]:
        return {
            "name": "paired-image-folders",
            "args": {
                "root_path_1": f"load/celebAHQ/{lr_size}",
                "root_path_2": f"load/celebAHQ/{hr_size}",
                "split_file": "load/celebAHQ/split.json",
                "split_key": split,
                "cache": "bin",
                **kw,
            },
        }

    train_wrapper = {
        "name": "sr-implicit-uniform-varied",
        "args": {"size_min": lr_size, "size_max": hr_size, "sample_q": 1024, "augment": True},
    }
    val_wrapper = {"name": "sr-implicit-paired", "args": {"sample_q": 1024}}
    return base_config(
        liif_spec("edsr-baseline"),
        faces("train"),
        faces("val", first_k=100),
        train_wrapper,
        val_wrapper,
        epochs=200,
        milestones=(100,),
        gamma=0.1,
    )
