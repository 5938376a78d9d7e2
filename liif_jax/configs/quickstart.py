"""Quick start: a small LIIF on the photographs shipped inside scikit-image, minutes on a CPU.

Six photographs train, two (chelsea, coffee) are held out for validation and the final table,
where the shipped EDSR-baseline-LIIF (`pretrained:edsr-baseline-liif`, in liif_jax/pretrained/,
trained on a GPU) is shown beside this run. The encoder (4 blocks x 32 features) and MLP
(128 x 2) are smaller than the paper's, and the inputs are 32 px crops with 1024 sampled pixels
in batches of 8 (the paper: 48 px, 2304, 16), so that a laptop CPU shows learning in a few
minutes; the recipe is otherwise the official one (random scale x1-x4, L1, Adam).
"""

from liif_jax.configs.common import base_config, downsampled, liif_spec


def get_config():
    model = liif_spec("edsr-baseline", {"n_resblocks": 4, "n_feats": 32}, hidden_list=(128, 128))
    train = {"name": "samples", "args": {"split": "train", "repeat": 100}}  # an epoch: 600 crops, 75 steps
    val = {"name": "samples", "args": {"split": "val"}}
    val_crops = {"name": "samples", "args": {"split": "val", "repeat": 16}}  # 2 photos x 16 random crops
    c = base_config(
        model,
        train,
        val_crops,
        train_wrapper=downsampled(inp_size=32, sample_q=1024),
        val_wrapper=downsampled(inp_size=32, sample_q=1024, augment=False),
        batch_size=8,
        epochs=14,
        milestones=(9,),
        lr=4e-4,
    )  # lr halved after step 675
    c.num_steps = 1000  # ~5 minutes on 2 CPU cores; reaches bicubic on the held-out photos
    c.log_every_steps = 50
    c.eval_every_steps = 250
    c.checkpoint_every_steps = 250
    c.num_workers = 0
    # At the end: LIIF vs bicubic on the held-out photographs, with the paper's DIV2K protocol.
    c.final_eval.dataset = val
    c.final_eval.scales = (2, 3, 4, 6, 12)
    c.final_eval.compare_with = "pretrained:edsr-baseline-liif"  # a model name or path; '' to skip
    return c
