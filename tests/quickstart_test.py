"""The newcomer's path: the quick start names its model, ends with this run and the shipped model
against bicubic on the held-out photographs, and says where the run is."""

import importlib

import jax
import numpy as np
from PIL import Image

from liif_jax.configs.common import base_config, liif_spec
from liif_jax.formats import checkpoints
from liif_jax.models import build_model, describe
from liif_jax.training import final_eval

SHIPPED = "pretrained:edsr-baseline-liif"  # liif_jax/pretrained/edsr-baseline-liif


def test_describe_names_the_architecture_from_the_spec():
    quick = importlib.import_module("liif_jax.configs.quickstart").get_config()
    assert describe(build_model(quick.model.to_dict())) == "EDSR-baseline 4x32, MLP 128x2"
    assert describe(build_model(liif_spec("edsr-baseline", hidden_list=(256, 128), cell_decode=False))) == (
        "EDSR-baseline 16x64, MLP 256-128, no cell"
    )
    assert describe(build_model(liif_spec("rdn"))) == "RDN-B G0=64, MLP 256x4"


def test_the_shipped_model_loads_and_the_quickstart_compares_with_it():
    model, params = checkpoints.load_model(SHIPPED)
    assert describe(model) == "EDSR-baseline 16x64, MLP 256x4"
    assert sum(x.size for x in jax.tree.leaves(params)) == 1_567_299
    quick = importlib.import_module("liif_jax.configs.quickstart").get_config()
    assert quick.final_eval.compare_with == SHIPPED
    assert (
        quick.data.train.wrapper.args.inp_size == 32
        and "32 px" in importlib.import_module("liif_jax.configs.quickstart").__doc__
    )


def test_training_ends_with_both_models_against_bicubic_and_the_workdir(tmp_path, capsys):
    """`final_evaluation`, which `train_and_evaluate` calls after the last step."""
    tiny = lambda feats, width: liif_spec("edsr-baseline", {"n_resblocks": 1, "n_feats": feats}, hidden_list=(width,))
    for k, name in enumerate(("b.png", "a.png")):
        (tmp_path / "held").mkdir(exist_ok=True)
        Image.fromarray(np.random.default_rng(k).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
            tmp_path / "held" / name
        )
    c = base_config(tiny(8, 16), {"name": "samples", "args": {"split": "train"}}, None)
    c.final_eval.dataset = {"name": "image-folder", "args": {"root_path": str(tmp_path / "held")}}
    c.final_eval.scales = (3,)
    c.final_eval.compare_with = SHIPPED
    model = build_model(tiny(8, 16))
    workdir = tmp_path / "quick"
    workdir.mkdir()
    params = jax.tree.map(
        lambda s: np.zeros(s.shape, s.dtype), jax.eval_shape(model.init, jax.random.key(0))
    )  # no compile
    final_eval.final_evaluation(c, model, params, workdir)
    out = capsys.readouterr().out
    assert "held-out evaluation (div2k protocol, 2 images: a.png, b.png; PSNR in dB):" in out
    assert (
        "| scale | bicubic (dB) | quick (EDSR-baseline 1x8, MLP 16x1) (dB) | gain | pretrained:edsr-baseline-liif (EDSR-baseline 16x64, MLP 256x4) (dB) | gain |"
        in out
    )
    [row] = [line for line in out.splitlines() if line.startswith("| x3 |")]
    assert len(row.split("|")) == 8 and np.isfinite(float(row.split("|")[2]))
    assert (
        f"the run is in {workdir}" in out
        and f"  {final_eval.python_command()} -m liif_jax.demo --model {workdir}" in out
    )
    assert "bicubic at" not in out  # no verdict without the run's progress
    assert (workdir / "final_eval.json").is_file()
