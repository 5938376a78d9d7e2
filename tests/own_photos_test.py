"""`python -m liif_jax.train --workdir W --photos FOLDER`: one's own photographs, one command.

The photographs here are scikit-image's (inside the installed package), copied into a folder
with a sub-folder, as a user's would be.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import skimage.data
from PIL import Image

from liif_jax.configs import own_photos as own_photos_config
from liif_jax.data import datasets, own_photos, pipeline
from liif_jax.data.imaging import ImageError
from liif_jax.training import final_eval

SK = pathlib.Path(os.path.dirname(skimage.data.__file__))


@pytest.fixture
def folder(tmp_path) -> pathlib.Path:
    """Five photographs, two in a sub-folder, and what a photo folder also holds."""
    root = tmp_path / "my photos"
    (root / "2024").mkdir(parents=True)
    for name in ("chelsea.png", "coffee.png", "rocket.jpg"):
        shutil.copy(SK / name, root / name)
    for name in ("astronaut.png", "motorcycle_left.png"):
        shutil.copy(SK / name, root / "2024" / name)
    (root / "notes.txt").write_text("not a photograph")
    (root / ".thumbnails").mkdir()
    shutil.copy(SK / "ihc.png", root / ".thumbnails" / "ihc.png")
    return root


def test_every_photograph_under_the_folder_and_a_spread_held_out_few(folder, tmp_path):
    files = [f.relative_to(folder).as_posix() for f in own_photos.list_photos(folder)]
    assert files == ["2024/astronaut.png", "2024/motorcycle_left.png", "chelsea.png", "coffee.png", "rocket.jpg"]
    parts = own_photos.split(folder)
    assert [f.name for f in parts["val"]] == ["chelsea.png"] and len(parts["train"]) == 4
    assert own_photos.held_out(2) == [1] and own_photos.held_out(6) == [3] and own_photos.held_out(10) == [2, 7]
    assert own_photos.held_out(1000) == [100, 300, 500, 700, 900]  # at most 5, one per stretch of names
    (tmp_path / "one").mkdir()
    shutil.copy(SK / "coffee.png", tmp_path / "one" / "coffee.png")
    with pytest.raises(ImageError, match="holds 1 image file.*at least 2, since one is held out"):
        own_photos.list_photos(tmp_path / "one")
    with pytest.raises(ImageError, match="is not a folder"):
        own_photos.list_photos(tmp_path / "nowhere")


def test_recipe_counts_epochs_validation_and_logging_in_steps(folder, tmp_path):
    cpu = own_photos_config.recipe(folder, "cpu", num_workers=0)
    assert cpu.num_steps is None and cpu.log_every_steps == 20 and cpu.eval_every_steps == 200
    assert cpu.init == "pretrained:edsr-baseline-liif" and cpu.data.train.degradation.name == "jpeg"
    train = datasets.make_source(datasets.with_cache_dir(cpu.data.train.dataset.to_dict(), tmp_path / "cache"))
    val = datasets.make_source(datasets.with_cache_dir(cpu.data.val.dataset.to_dict(), tmp_path / "cache"))
    steps_per_epoch = pipeline.steps_per_epoch(len(train), cpu.data.train.batch_size)
    assert steps_per_epoch == 100 and cpu.optimizer.epochs * steps_per_epoch == 600  # whatever the photo count
    assert len(val) >= 64 and {val.describe(i) for i in range(len(val))} == {str(folder / "chelsea.png")}
    assert cpu.final_eval.dataset.args.split == "val" and cpu.final_eval.center_crop == 256
    gpu = own_photos_config.recipe(folder, "accelerator", num_workers=14)
    assert gpu.model.args.encoder_spec.args.to_dict() == {"no_upsampling": True}  # the paper's EDSR-baseline
    assert gpu.data.train.batch_size == 16 and gpu.num_workers == 14 and "center_crop" not in gpu.final_eval
    assert gpu.init == "" and not gpu.data.train.degradation


def test_large_photographs_are_shrunk_to_div2k_size_once_into_the_cache(tmp_path):
    root = tmp_path / "big"
    root.mkdir()
    for k in range(2):
        Image.fromarray(np.full((300, 3000, 3), 40 * k, np.uint8)).save(root / f"{k}.png")
    src = own_photos.own_photos(str(root), "train", max_side=2040, cache_dir=str(tmp_path / "cache"))
    assert src[0].shape == (204, 2040, 3) and isinstance(src[0], np.memmap)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["0.png.max2040.npy"]


SMALL = [  # the recipe's model (the shipped one, fine-tuned) on smaller crops, briefly
    "--config.data.val.batch_size=8",
    "--config.data.train.wrapper.args.inp_size=16",
    "--config.data.train.wrapper.args.sample_q=64",
    "--config.data.val.wrapper.args.inp_size=16",
    "--config.data.val.wrapper.args.sample_q=64",
    "--config.log_every_steps=2",
    "--config.eval_every_steps=3",
    "--config.checkpoint_every_steps=3",
    "--config.final_eval.scales=(2, 4)",
    "--config.final_eval.compare_with=",
    "--config.final_eval.center_crop=96",
]


def test_one_command_trains_tells_where_it_stands_and_resumes(folder, tmp_path):
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))  # the second run reuses
    # the first one's compiled programs (jax_cache): a quarter of the CPU time
    workdir = tmp_path / "runs" / "mine"
    cmd = [sys.executable, "-m", "liif_jax.train", "--workdir", str(workdir), "--photos", str(folder), *SMALL]
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax_cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    first = subprocess.run(cmd + ["--config.num_steps=6"], env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    out = first.stdout
    assert f"4 photographs under {folder} train; 1 held out for validation and the final table: chelsea.png" in out
    [cache_line] = [line for line in out.splitlines() if line.startswith("image cache ")]
    assert cache_line.startswith(f"image cache {workdir / 'cache'}/my photos-") and "5 decoded image(s)" in cache_line
    assert "starting from pretrained:edsr-baseline-liif with a new optimizer" in out
    assert "step 1/6 compiled and ran in " in out and "step 2/6" in out
    first_val = re.search(r"step 3/6  val_psnr ([\d.]+) dB \(bicubic ([\d.]+) dB on the same crops\)", out)
    assert float(first_val[1]) > float(first_val[2])  # above bicubic from its first validation
    assert "| x2 |" in out and "| x4 |" in out and "The run is above bicubic at every scale" in out
    assert "held-out evaluation on jpeg:40 inputs" in out  # trained with degradations: degraded columns too
    assert f"  {final_eval.python_command()} -m liif_jax.demo --model {workdir}" in out  # the interpreter that ran it
    after = sorted(
        p.relative_to(tmp_path).as_posix()
        for p in tmp_path.rglob("*")
        if not p.is_relative_to(workdir) and not p.is_relative_to(tmp_path / "jax_cache")
    )
    assert after == sorted(before + ["runs"])  # nothing beside the photographs: the cache is in the workdir

    again = subprocess.run(cmd + ["--config.num_steps=8"], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed from {workdir / 'checkpoints' / '6'}" in again.stdout and "step 8/8" in again.stdout
    assert "decoding" not in again.stdout and "image cache" in again.stdout  # reused, not decoded again
