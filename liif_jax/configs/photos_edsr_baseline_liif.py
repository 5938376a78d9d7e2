"""EDSR-baseline-LIIF on 24 photographs: the run that made `liif_jax/pretrained/edsr-baseline-liif`.

Training: 15 photographs of Debian's `lomiri-wallpapers-16.04` (14) and `lomiri-wallpapers-20.04`
(Kleiber), shrunk to a long side of at most 2040 px (DIV2K's size) as the run's copies were, plus
the 9 `train` photographs of `mate-backgrounds`' nature set (splits/mate-nature.json). Validation
and the final table: the 3 held-out mate-nature `test` photographs. The official recipe otherwise
(random scale x1-x4, 48 px inputs, 2304 pixels, batch 16, Adam, L1), lr 2e-4 halved at 50% and 75%
of 22000 steps (about 4 minutes on one H200; `--config.num_steps` and `--config.num_workers` to fit
another machine).

The photographs are looked up by name under `photos_dir` (default `/usr/share/backgrounds`, where
`apt-get install lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 mate-backgrounds` puts them), in
any sub-folders: `--config.photos_dir=FOLDER` for copies elsewhere.
"""

import pathlib

from ml_collections import config_dict

from liif_jax.configs.common import base_config, downsampled, liif_spec

SPLIT = str(pathlib.Path(__file__).resolve().parent / "splits" / "photos.json")
MISSING_HELP = (
    "Install Debian's lomiri-wallpapers-16.04, lomiri-wallpapers-20.04 and mate-backgrounds "
    "(they go to /usr/share/backgrounds), or copy the photographs into one folder and pass --config.photos_dir=FOLDER."
)
STEPS, EPOCH_STEPS = 22000, 1000


def get_config():
    photos_dir = config_dict.FieldReference("/usr/share/backgrounds")

    def photos(split, **kw):
        return {
            "name": "named-photos",
            "args": {
                "root_path": photos_dir,
                "split_file": SPLIT,
                "split_key": split,
                "shrink": {"lomiri": 2040},
                "missing_help": MISSING_HELP,
                **kw,
            },
        }

    epochs = STEPS // EPOCH_STEPS
    c = base_config(
        liif_spec("edsr-baseline"),
        photos("train", repeat=EPOCH_STEPS * 16 // 24),
        photos("test", repeat=32),
        val_wrapper=downsampled(augment=False),
        lr=2e-4,
        epochs=epochs,
        milestones=(epochs // 2, (3 * epochs) // 4),
    )
    c.photos_dir = photos_dir
    c.num_steps = STEPS
    c.eval_every_steps = STEPS // 4
    c.checkpoint_every_steps = STEPS // 8
    c.log_every_steps = 500
    c.num_workers = 14
    c.final_eval.dataset = photos("test")
    c.final_eval.scales = (2, 3, 4, 6, 12, 30)
    return c
