"""Quick start: fine-tunes the shipped model on the photographs inside scikit-image, minutes on a CPU.

Six photographs train, two (chelsea, coffee) are held out for validation and the final table. The
run starts from the shipped EDSR-baseline-LIIF (`pretrained:edsr-baseline-liif`, in
liif_jax/pretrained/, trained on a GPU) with a new optimizer and a low learning rate, so that it is
above bicubic from its first step; a model trained from scratch on a CPU stays below bicubic for
far longer than a quick start. The final table shows the starting model beside the trained one:
what this run's own training changed. Inputs are 32 px crops with 1024 sampled pixels in batches
of 8 (the paper: 48 px, 2304, 16); the recipe is otherwise the official one (random scale x1-x4,
L1, Adam).
"""

from liif_jax.configs.common import base_config, downsampled, liif_spec

SHIPPED = "pretrained:edsr-baseline-liif"


def get_config():
    train = {"name": "samples", "args": {"split": "train", "repeat": 100}}  # an epoch: 600 crops, 75 steps
    val = {"name": "samples", "args": {"split": "val"}}
    val_crops = {"name": "samples", "args": {"split": "val", "repeat": 16}}  # 2 photos x 16 random crops
    c = base_config(
        liif_spec("edsr-baseline", {"n_resblocks": 16, "n_feats": 64}),  # the shipped model's architecture
        train,
        val_crops,
        train_wrapper=downsampled(inp_size=32, sample_q=1024),
        val_wrapper=downsampled(inp_size=32, sample_q=1024, augment=False),
        batch_size=8,  # one example per chip on an 8-chip TPU runtime (the notebook)
        epochs=2,
        milestones=(1,),
        lr=2e-5,
    )
    c.init = SHIPPED
    c.num_steps = 150  # ~3 minutes of training on 2 CPU cores, then the final table
    c.log_every_steps = 15
    c.eval_every_steps = 75
    c.checkpoint_every_steps = 75
    c.num_workers = 0
    # At the end: this run and the model it started from against bicubic on the held-out photographs.
    c.final_eval.dataset = val
    c.final_eval.scales = (2, 3, 4, 6, 12)
    c.final_eval.compare_with = SHIPPED
    return c
