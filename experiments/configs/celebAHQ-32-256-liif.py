"""CelebA-HQ 32 -> 256 (paper Table 4): 32 px inputs from 256 px faces, scales up to x8.

Expects the faces at `load/celebAHQ/256` with the official split file `load/celebAHQ/split.json`. 200 epochs, lr 1e-4 divided by 10 at epoch 100.
"""

from liif_jax.configs import base_config, downsampled, liif_spec


def get_config():
    root = "load/celebAHQ/256"
    split = {"split_file": "load/celebAHQ/split.json"}
    train = {"name": "image-folder", "args": {"root_path": root, **split, "split_key": "train", "repeat": 1, "cache": "bin"}}
    val = {"name": "image-folder", "args": {"root_path": root, **split, "split_key": "val", "first_k": 100, "repeat": 1, "cache": True}}
    wrapper = dict(inp_size=32, scale_min=1.0, scale_max=8.0, sample_q=1024)
    c = base_config(liif_spec("edsr-baseline"), train, val, downsampled(**wrapper), downsampled(**wrapper, augment=False),
                    epochs=200, milestones=(100,), gamma=0.1)
    return c
