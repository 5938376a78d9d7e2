"""The shipped configs and model by name: `--config edsr-baseline-liif`, `pretrained:edsr-baseline-liif`.

In a clone the names point into `experiments/`; tests/package_test.py checks the same names in an
installed wheel.
"""

import pathlib
import subprocess
import sys
import warnings

import jax
import numpy as np
import pytest
import skimage.data
from PIL import Image

from conftest import REPO
from liif_jax import checkpoints, convert, demo, evaluate, shipped
from liif_jax.pth import load_pth
from liif_jax.models import describe

with warnings.catch_warnings():  # defining --config, ml_collections loads its default with load_module()
    warnings.simplefilter("ignore", DeprecationWarning)
    from liif_jax import train


def test_in_a_clone_the_names_are_the_files_of_experiments():
    assert shipped.configs_dir() == REPO / "experiments" / "configs"
    assert shipped.config_names() == sorted(p.stem for p in (REPO / "experiments" / "configs").glob("*.py"))
    assert {"quickstart", "edsr-baseline-liif", "rdn-liif", "photos-edsr-baseline-liif"} <= set(shipped.config_names())
    assert shipped.pretrained_names() == ["edsr-baseline-liif"]


def test_config_is_a_name_a_path_or_an_official_yaml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert train.config_file_argument("rdn-liif") == str(REPO / "experiments" / "configs" / "rdn-liif.py")
    assert train.config_file_argument("my/own.py") == "my/own.py"
    assert train.config_file_argument("my/own.py:arg") == "my/own.py:arg"
    assert train.config_file_argument("train_rdn-liif.yaml").endswith("liif_jax/configs.py:train_rdn-liif.yaml")
    (tmp_path / "mine").write_text("")  # an existing file is a path, whatever it is called
    assert train.config_file_argument("mine") == "mine"
    with pytest.raises(ValueError, match=r"no config named 'rdn-lif'; the shipped configs are .*rdn-liif"):
        train.config_file_argument("rdn-lif")
    argv = ["train", "--config", "quickstart", "--config=edsr-baseline-liif", "--config.num_steps=3"]
    assert train.resolve_config_flag(argv) == [
        "train", "--config", str(shipped.config_path("quickstart")),
        f"--config={shipped.config_path('edsr-baseline-liif')}", "--config.num_steps=3"]


def test_an_unknown_config_name_is_a_one_line_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "liif_jax.train", "--workdir", str(tmp_path), "--config", "rdn-lif"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.startswith("error: --config: no config named 'rdn-lif'; the shipped configs are celebAHQ-32-256-liif")
    assert len(out.stderr.strip().splitlines()) == 1


def test_the_shipped_model_loads_by_name():
    model, params = checkpoints.load_model("pretrained:edsr-baseline-liif")
    assert describe(model) == "EDSR-baseline 16x64, MLP 256x4"
    assert sum(x.size for x in jax.tree.leaves(params)) == 1_567_299
    assert checkpoints.resolve("pretrained:edsr-baseline-liif") == (REPO / "experiments" / "pretrained" / "edsr-baseline-liif", 0)


def test_an_unknown_shipped_model_is_named_with_the_ones_there_are(tmp_path, capsys):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "in.png")
    flags = ["--input", str(tmp_path / "in.png"), "--scale", "2", "--output", str(tmp_path / "out.png")]
    assert demo.main([*flags, "--model", "pretrained:edsr"]) == 1
    assert capsys.readouterr().err == "error: pretrained:edsr: no such shipped model (shipped: pretrained:edsr-baseline-liif)\n"
    assert shipped.model_path("runs/pretrained:x") == "runs/pretrained:x"  # a path, not a name


def test_evaluate_and_convert_take_the_shipped_model_by_name(tmp_path, capsys):
    photo = np.asarray(Image.open(pathlib.Path(skimage.data.__file__).parent / "chelsea.png").convert("RGB"))
    (tmp_path / "hr").mkdir()
    Image.fromarray(photo[100:148, 150:198]).save(tmp_path / "hr" / "cat.png")
    assert evaluate.main(["--model", "pretrained:edsr-baseline-liif", "--hr-dir", str(tmp_path / "hr"), "--scale", "2"]) == 0
    assert "| x2 |" in capsys.readouterr().out
    assert convert.main(["pretrained:edsr-baseline-liif", str(tmp_path / "shipped.pth")]) == 0
    assert load_pth(tmp_path / "shipped.pth")["model"]["name"] == "liif"
