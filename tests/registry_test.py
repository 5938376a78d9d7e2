"""The shipped configs and model by name: `--config edsr_baseline_liif`, `pretrained:edsr-baseline-liif`.

tests/package_test.py checks the same names in an installed wheel.
"""

import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
import skimage.data
from PIL import Image

from liif_jax import configs, convert, demo, evaluate, pretrained
from liif_jax.formats import checkpoints
from liif_jax.formats.pth import load_pth
from liif_jax.models import describe

from conftest import REPO


def test_the_names_are_the_modules_of_liif_jax_configs_and_the_folders_of_liif_jax_pretrained():
    assert configs.names() == sorted(
        p.stem for p in (REPO / "liif_jax" / "configs").glob("*.py") if p.stem not in ("__init__", "common", "official")
    )
    assert {"quickstart", "edsr_baseline_liif", "rdn_liif", "photos_edsr_baseline_liif", "own_photos"} <= set(
        configs.names()
    )
    assert pretrained.names() == ["edsr-baseline-liif"]


def test_config_is_a_name_a_path_or_an_official_yaml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rdn = configs.load("rdn_liif")
    assert rdn.model.args.encoder_spec.name == "rdn"
    assert configs.load("rdn-liif") == rdn  # the official file names' hyphens
    (tmp_path / "own.py").write_text(
        "from liif_jax.configs import get\n\ndef get_config(arg='rdn_liif'):\n    return get(arg)\n"
    )
    assert configs.load("own.py") == rdn
    assert configs.load("own.py:edsr_baseline_liif").model.args.encoder_spec.name == "edsr-baseline"
    with pytest.raises(
        ValueError, match=r"no config named 'rdn-lif' \(did you mean 'rdn_liif'\?\); the shipped configs are"
    ):
        configs.load("rdn-lif")
    with pytest.raises(ValueError, match="mine/x.py: no such file"):
        configs.load("mine/x.py")


def test_overrides_are_checked_against_the_keys_and_types_of_the_config():
    c = configs.load("quickstart")
    configs.apply_overrides(
        c,
        [
            ("num_steps", "3"),
            ("optimizer.milestones", "(1, 2)"),
            ("data.train.batch_size", "4"),
            ("final_eval.compare_with", "none"),
        ],
    )
    assert (c.num_steps, c.optimizer.milestones, c.data.train.batch_size, c.final_eval.compare_with) == (
        3,
        (1, 2),
        4,
        "none",
    )
    with pytest.raises(ValueError, match=r"config.optimizer has no key 'lrr' \(did you mean 'lr'\?\); it has: "):
        configs.apply_overrides(c, [("optimizer.lrr", "1")])
    with pytest.raises(ValueError, match=r"--config.num_steps=many: not a Python literal"):
        configs.apply_overrides(c, [("num_steps", "many")])
    with pytest.raises(ValueError, match=r"--config.num_steps=\(1,\): "):
        configs.apply_overrides(c, [("num_steps", "(1,)")])


def test_an_unknown_config_name_is_a_one_line_error(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "liif_jax.train", "--workdir", str(tmp_path), "--config", "rdn-lif"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.startswith("error: no config named 'rdn-lif'")
    assert len(out.stderr.strip().splitlines()) == 1


def test_the_shipped_model_loads_by_name():
    model, params = checkpoints.load_model("pretrained:edsr-baseline-liif")
    assert describe(model) == "EDSR-baseline 16x64, MLP 256x4"
    assert sum(x.size for x in jax.tree.leaves(params)) == 1_567_299
    assert checkpoints.resolve("pretrained:edsr-baseline-liif") == (
        REPO / "liif_jax" / "pretrained" / "edsr-baseline-liif",
        0,
    )


def test_an_unknown_shipped_model_is_named_with_the_ones_there_are(tmp_path, capsys):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "in.png")
    flags = ["--input", str(tmp_path / "in.png"), "--scale", "2", "--output", str(tmp_path / "out.png")]
    assert demo.main([*flags, "--model", "pretrained:edsr"]) == 1
    assert (
        capsys.readouterr().err
        == "error: pretrained:edsr: no such shipped model (shipped: pretrained:edsr-baseline-liif)\n"
    )
    assert pretrained.model_path("runs/pretrained:x") == "runs/pretrained:x"  # a path, not a name


def test_evaluate_and_convert_take_the_shipped_model_by_name(tmp_path, capsys):
    photo = np.asarray(Image.open(pathlib.Path(skimage.data.__file__).parent / "chelsea.png").convert("RGB"))
    (tmp_path / "hr").mkdir()
    Image.fromarray(photo[100:148, 150:198]).save(tmp_path / "hr" / "cat.png")
    assert (
        evaluate.main(["--model", "pretrained:edsr-baseline-liif", "--hr-dir", str(tmp_path / "hr"), "--scale", "2"])
        == 0
    )
    assert "| x2 |" in capsys.readouterr().out
    assert convert.main(["pretrained:edsr-baseline-liif", str(tmp_path / "shipped.pth")]) == 0
    assert load_pth(tmp_path / "shipped.pth")["model"]["name"] == "liif"
