"""Training on a folder of one's own photographs: `python -m liif_jax.train --workdir W --photos FOLDER`,
which is `--config own_photos:FOLDER`, so `--config.KEY=VALUE` overrides apply to the recipe.

The recipe is the official one (random scale x1-x4, L1 loss, Adam, lr halved late), sized for the
machine (`recipe`): on a CPU it fine-tunes the shipped model (`--init`, a new optimizer, a low
learning rate, 32 px inputs in batches of 4) for about ten minutes, 70% of its inputs saved as JPEG
of quality 30-95 (`liif_jax.data.degradations`), so that it is above bicubic from its first
validation and learns the commonest degradation of real photographs; Real-ESRGAN's full second
order is too far from clean inputs for so short a run (experiments/results/degradations_cpu.md). On
a GPU or TPU: the paper's EDSR-baseline-LIIF from scratch with the schedule that made the shipped
model. Epochs, validation crops and logging are counted in steps, not in passes over a
folder of a few photographs. The photographs and the held-out split: `liif_jax.data.own_photos`.
"""

from __future__ import annotations

import math
import os

import ml_collections

from liif_jax import pretrained
from liif_jax.configs.common import base_config, downsampled, liif_spec
from liif_jax.data.own_photos import split

SHIPPED = "edsr-baseline-liif"  # the model shown beside the run in the final table

# The recipes: model, crops and batch, learning rate, length in epochs of `epoch_steps` steps,
# logging and validation intervals, and how much of each held-out photograph the final table uses.
RECIPES = {
    "cpu": {
        "model": liif_spec("edsr-baseline"),
        "init": f"{pretrained.PREFIX}{SHIPPED}",
        "degradation": {"name": "jpeg", "args": {"quality": (30, 95), "clean_prob": 0.3}},
        "inp_size": 32,
        "sample_q": 1024,
        "batch_size": 4,
        "lr": 3e-5,
        "epoch_steps": 100,
        "epochs": 6,
        "log_every_steps": 20,
        "eval_every_steps": 200,
        "val_crops": 64,
        "center_crop": 256,
    },
    "accelerator": {
        "model": liif_spec("edsr-baseline"),
        "init": "",
        "degradation": {},
        "inp_size": 48,
        "sample_q": 2304,
        "batch_size": 16,
        "lr": 2e-4,
        "epoch_steps": 1000,
        "epochs": 22,
        "log_every_steps": 500,
        "eval_every_steps": 2000,
        "val_crops": 128,
        "center_crop": None,
    },
}


def recipe(folder: str | os.PathLike, machine: str, num_workers: int) -> ml_collections.ConfigDict:
    """The config that trains on the photographs under `folder` on a `machine` ("cpu" or
    "accelerator") with `num_workers` grain worker processes."""
    r = RECIPES[machine]
    root = os.path.abspath(folder)
    parts = split(root)
    n_train, n_val = len(parts["train"]), len(parts["val"])

    def photos(which: str, repeat: int = 1) -> dict:
        return {"name": "own-photos", "args": {"root_path": root, "split": which, "repeat": repeat, "cache": "bin"}}

    wrapper = lambda augment: downsampled(inp_size=r["inp_size"], sample_q=r["sample_q"], augment=augment)
    epochs = r["epochs"]
    c = base_config(
        r["model"],
        photos("train", math.ceil(r["epoch_steps"] * r["batch_size"] / n_train)),
        photos("val", math.ceil(r["val_crops"] / n_val)),
        wrapper(True),
        wrapper(False),
        batch_size=r["batch_size"],
        epochs=epochs,
        milestones=(epochs // 2, 3 * epochs // 4),
        lr=r["lr"],
    )
    c.log_every_steps = r["log_every_steps"]
    c.eval_every_steps = c.checkpoint_every_steps = r["eval_every_steps"]
    c.num_workers = num_workers
    c.init = r["init"]
    c.data.train.degradation = r["degradation"]
    c.final_eval.dataset = photos("val")
    c.final_eval.scales = (2, 3, 4, 6, 12)
    c.final_eval.degrade = "jpeg:40"
    c.final_eval.compare_with = f"{pretrained.PREFIX}{SHIPPED}" if SHIPPED in pretrained.names() else ""
    if r["center_crop"]:
        c.final_eval.center_crop = r["center_crop"]
    return c


def get_config(folder: str) -> ml_collections.ConfigDict:
    """The recipe for this machine: `--photos FOLDER` loads this file with FOLDER as its argument."""
    import jax  # Here, not at the top: the sources above run in grain workers, which need no JAX.

    machine = "cpu" if jax.default_backend() == "cpu" else "accelerator"
    return recipe(folder, machine, 0 if machine == "cpu" else max(1, min(14, (os.cpu_count() or 2) - 2)))
