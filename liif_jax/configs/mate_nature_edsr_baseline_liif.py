"""EDSR-baseline-LIIF on the twelve mate-nature photographs (real photos available offline).

Nine train, the last three by name (TwoWings, Wood, YellowFlower) are held out for validation
and the final table (splits/mate-nature.json). Meant for ~20 minutes on one GPU: set
`--config.num_steps` to what the GPU does in that time. The photos are looked up by name under
`photos_dir` (default `/usr/share/backgrounds/mate/nature`, where `apt-get install mate-backgrounds`
puts them): `--config.photos_dir=FOLDER` for copies elsewhere.
"""

import pathlib

from ml_collections import config_dict

from liif_jax.configs.common import base_config, downsampled, liif_spec

SPLIT = str(pathlib.Path(__file__).resolve().parent / "splits" / "mate-nature.json")
MISSING_HELP = (
    "Install Debian's mate-backgrounds (it puts them in /usr/share/backgrounds/mate/nature), "
    "or copy the twelve photographs into one folder and pass --config.photos_dir=FOLDER."
)


def get_config():
    photos_dir = config_dict.FieldReference("/usr/share/backgrounds/mate/nature")

    def photos(split, **kw):
        return {
            "name": "named-photos",
            "args": {
                "root_path": photos_dir,
                "split_file": SPLIT,
                "split_key": split,
                "missing_help": MISSING_HELP,
                **kw,
            },
        }

    c = base_config(
        liif_spec("edsr-baseline"),
        photos("train", repeat=200),
        photos("test", repeat=100),
        val_wrapper=downsampled(augment=False),
        epochs=240,
        milestones=(120, 180),
    )  # 113 steps per epoch
    c.photos_dir = photos_dir
    c.eval_every_steps = 2000
    c.checkpoint_every_steps = 2000
    c.log_every_steps = 200
    c.num_workers = 12
    c.final_eval.dataset = photos("test")
    c.final_eval.scales = (2, 3, 4, 6, 12, 18, 24, 30)
    return c
