"""Quick start: a small LIIF on the photographs shipped inside scikit-image, minutes on a CPU.

Six photographs train, two (chelsea, coffee) are held out for validation. The encoder and MLP are
smaller than the paper's so that a laptop CPU shows learning in a few minutes; the recipe
(random scale x1-x4, 48 px inputs, L1, Adam) is the official one.
"""

from liif_jax.configs import base_config, downsampled, liif_spec


def get_config():
    model = liif_spec("edsr-baseline", {"n_resblocks": 4, "n_feats": 32}, hidden_list=(128, 128))
    train = {"name": "samples", "args": {"split": "train"}}
    val = {"name": "samples", "args": {"split": "val", "repeat": 16}}  # 2 photos x 16 random crops
    c = base_config(model, train, val, train_wrapper=downsampled(inp_size=32, sample_q=1024),
                    val_wrapper=downsampled(inp_size=32, sample_q=1024, augment=False), batch_size=8,
                    epochs=400, milestones=(250,), lr=4e-4)  # 1 step = 1 epoch here
    c.num_steps = 300
    c.log_every_steps = 25
    c.eval_every_steps = 100
    c.checkpoint_every_steps = 100
    c.num_workers = 0
    return c
