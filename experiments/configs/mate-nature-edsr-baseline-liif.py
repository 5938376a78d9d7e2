"""EDSR-baseline-LIIF on the twelve mate-nature photographs (the real photos available offline).

Nine train, the last three by name (TwoWings, Wood, YellowFlower) are held out for validation
and the final table (splits/mate-nature.json). Meant for ~20 minutes on one GPU: set
`--config.num_steps` to what the GPU does in that time. The photos come from Debian's
mate-backgrounds (`/usr/share/backgrounds/mate/nature`) or `../shared/data/mate-nature`.
"""

import pathlib

from liif_jax.configs import base_config, downsampled, liif_spec

_SPLIT = str(pathlib.Path(__file__).resolve().parent / "splits" / "mate-nature.json")
_DEBIAN = pathlib.Path("/usr/share/backgrounds/mate/nature")
_ROOT = str(_DEBIAN if _DEBIAN.is_dir() else pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "mate-nature")


def get_config():
    folder = lambda split, **kw: {"name": "image-folder",
                                  "args": {"root_path": _ROOT, "split_file": _SPLIT, "split_key": split, **kw}}
    c = base_config(liif_spec("edsr-baseline"), folder("train", repeat=200, cache="in_memory"),
                    folder("test", repeat=100, cache="in_memory"), val_wrapper=downsampled(augment=False),
                    epochs=240, milestones=(120, 180))  # 113 steps per epoch: about 27k steps
    c.eval_every_steps = 2000
    c.checkpoint_every_steps = 2000
    c.log_every_steps = 200
    c.num_workers = 12
    c.final_eval.dataset = folder("test")
    c.final_eval.scales = (2, 3, 4, 6, 12, 18, 24, 30)
    return c
