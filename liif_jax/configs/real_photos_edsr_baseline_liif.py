"""The shipped EDSR-baseline-LIIF fine-tuned for real photographs: Real-ESRGAN's degradations on
the photographs that made it, for a GPU (untrained: no GPU run of it has been made yet).

`python -m liif_jax.train --workdir W --config real_photos_edsr_baseline_liif [--config.photos_dir=FOLDER]`

It starts from `pretrained:edsr-baseline-liif` (`init`) with a new optimizer and trains on the 24
photographs of `photos_edsr_baseline_liif` (same split, same `photos_dir`), each input made by the
second-order degradation (blur, resize, noise, JPEG, twice; `liif_jax.data.degradations`) except a
30% share of clean bicubic inputs, which keeps its accuracy on clean images. lr 5e-5 halved at 50%
and 75% of 10000 steps. The final table has clean and JPEG-40 columns. A degraded sample costs about
5-7 ms of an idle CPU core (experiments/results/degradations_cpu.md), so a GPU that trains ~1600
samples/s (the shipped model's H200 run) needs about 8-11 grain workers (inferred); with fewer the
step rate falls with them. A short CPU fine-tune with these degradations moved the shipped model far below
bicubic (the same file): this recipe is longer, with 4x the batch, and has not been run.
"""

from liif_jax.configs import photos_edsr_baseline_liif

STEPS = 10000


def get_config():
    c = photos_edsr_baseline_liif.get_config()
    c.init = "pretrained:edsr-baseline-liif"
    c.data.train.degradation = {"name": "realesrgan", "args": {"clean_prob": 0.3}}
    epochs = STEPS // photos_edsr_baseline_liif.EPOCH_STEPS
    c.optimizer.lr = 5e-5
    c.optimizer.epochs = epochs
    c.optimizer.milestones = (epochs // 2, (3 * epochs) // 4)
    c.num_steps = STEPS
    c.eval_every_steps = STEPS // 4
    c.checkpoint_every_steps = STEPS // 8
    c.num_workers = 14
    c.final_eval.degrade = "jpeg:40"
    return c
