"""The Python API (`liif_jax.load`, `Upscaler`, `Latents`, `liif_jax.train`): the README's example
runs, `upscale` writes the demo's pixels, `encode`/`query` gives the render's values at pixel
centres, and a mistake is one clear ValueError."""

import json
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

import liif_jax
from liif_jax import cli_checks, demo
from liif_jax.configs.common import liif_spec, lte_spec
from liif_jax.formats.checkpoints import save_model
from liif_jax.models import build_model
from liif_jax.models.coords import make_coord
from liif_jax.render import render

from conftest import REPO

TINY_SPECS = {
    "liif": liif_spec("edsr-baseline", {"n_resblocks": 1, "n_feats": 8}, hidden_list=(16,)),
    "lte": lte_spec("edsr-baseline", {"n_resblocks": 1, "n_feats": 8}, hidden_dim=16, hidden_list=(16,)),
}


def tiny_upscaler(name: str) -> liif_jax.Upscaler:
    """Random weights of the right shapes, without compiling an initialiser."""
    model = build_model(TINY_SPECS[name])
    rng = np.random.default_rng(0)
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    return liif_jax.Upscaler(model, jax.tree.map(lambda s: rng.normal(0, 0.2, s.shape).astype(s.dtype), shapes))


@pytest.fixture(scope="module")
def photo():
    return np.random.default_rng(1).integers(0, 256, (6, 7, 3), dtype=np.uint8)


def readme_example() -> str:
    """The first ```python block of README.md: the example a newcomer copies."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    found = re.search(r"^```python\n(.*?)^```", text, re.S | re.M)
    assert found, "README.md has no ```python block"
    return found.group(1)


def test_the_readme_example_runs():
    """With the shipped model on chelsea at a third of its size (100 x 151)."""
    code = readme_example()
    assert "liif_jax.load(" in code, "README's first python block is no longer the API example"
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    big, exact, rgb = namespace["big"], namespace["exact"], namespace["rgb"]
    assert namespace["photo"].shape == (100, 151, 3)
    # The demo's --scale rule for LIIF's models: round(h S) x round(w S); 151 x 3.5 = 528.5 rounds to even.
    assert big.shape == (*cli_checks.scaled_size((100, 151), 3.5), 3) == (350, 528, 3)
    assert big.dtype == exact.dtype == np.uint8 and exact.shape == (300, 450, 3)
    assert rgb.shape == (2, 3) and rgb.dtype == np.float32 and np.isfinite(rgb).all()
    assert rgb.min() >= 0 and rgb.max() <= 1


@pytest.mark.parametrize(
    "name, flag, value",
    [
        ("liif", "--scale", "2.5"),  # round(6 x 2.5) = 15, round(7 x 2.5) = 18 (17.5 to even)
        ("liif", "--resolution", "9,13"),
        ("lte", "--scale", "4.7"),  # LTE: int(7 x 4.7) = 32, not 33; its cell clamped above x4
    ],
)
def test_upscale_is_the_demo_png_pixel_for_pixel(tmp_path, photo, name, flag, value):
    up = tiny_upscaler(name)
    save_model(tmp_path / "ckpt", TINY_SPECS[name], up.params)
    Image.fromarray(photo).save(tmp_path / "in.png")
    out = tmp_path / "out.png"
    argv = ["--input", str(tmp_path / "in.png"), "--model", str(tmp_path / "ckpt"), flag, value, "--output", str(out)]
    assert demo.main(argv) == 0
    want = np.asarray(Image.open(out))

    loaded = liif_jax.load(tmp_path / "ckpt")
    kwargs = {"scale": float(value)} if flag == "--scale" else {"size": tuple(map(int, value.split(",")))}
    got = loaded.upscale(photo, **kwargs)
    assert got.dtype == np.uint8 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(loaded.upscale(photo / np.float32(255), **kwargs), want)  # float in [0, 1]
    np.testing.assert_array_equal(loaded.upscale(photo, tile=0, **kwargs), want)  # the whole image at once
    if name == "lte":
        assert want.shape == (28, 32, 3)


@pytest.mark.parametrize("name, size", [("liif", (13, 17)), ("lte", (40, 45))])  # LTE: above x4, clamped
def test_query_at_pixel_centres_is_the_rendering(photo, name, size):
    up = tiny_upscaler(name)
    latents = up.encode(photo)
    coords = make_coord(size, flatten=False)  # (H, W, 2): (y, x) of every pixel centre
    got = latents.query(coords, cell=(2 / size[0], 2 / size[1]))
    assert got.shape == (*size, 3) and got.dtype == np.float32
    img01 = photo / np.float32(255)
    factor = render.lte_cell_factor(size[0] / photo.shape[0], render.scale_max_for(up.model))
    want = render.upscale(up.model, up.params, img01, size, tile=0, cell_factor=factor)  # the float path
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    shipped = up.upscale(photo, size=size) / 255  # and the uint8 image, before its rounding down
    assert np.all((got - shipped >= -1e-5) & (got - shipped < 1 / 255 + 1e-5))
    # Any shape of coordinates; the default cell is the input pixel's (x1).
    one = latents.query([0.0, 0.0])
    assert one.shape == (3,)
    x1 = render.upscale(up.model, up.params, img01, photo.shape[:2], tile=0)
    np.testing.assert_allclose(latents.query(make_coord(photo.shape[:2], flatten=False)), x1, atol=1e-5, rtol=0)


def test_load_names_the_model_and_the_shipped_one_loads():
    up = liif_jax.load("pretrained:edsr-baseline-liif")
    assert up.name == "EDSR-baseline 16x64, MLP 256x4" and repr(up) == "Upscaler(EDSR-baseline 16x64, MLP 256x4)"
    with pytest.raises(FileNotFoundError):
        liif_jax.load("/no/such/model")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda up, img: up.upscale(img), "give exactly one of scale and size, got neither"),
        (lambda up, img: up.upscale(img, scale=2, size=(8, 8)), "give exactly one of scale and size, got both"),
        (lambda up, img: up.upscale(img, scale=0), "scale must be a positive number, got 0"),
        (lambda up, img: up.upscale(img, scale=-1.5), "scale must be a positive number, got -1.5"),
        (lambda up, img: up.upscale(img, scale=float("nan")), "scale must be a positive number, got nan"),
        (lambda up, img: up.upscale(img, size=(8, 0)), r"size must be \(height, width\), two positive integers"),
        (lambda up, img: up.upscale(img, size=(8.5, 9)), r"size must be \(height, width\), two positive integers"),
        (lambda up, img: up.upscale(img, scale=2, tile=-1), "tile must be 0 .* or a positive integer, got -1"),
        (lambda up, img: up.upscale(img[..., 0], scale=2), r"image must be H x W x 3 \(RGB\), got shape \(6, 7\)"),
        (lambda up, img: up.upscale(np.dstack([img, img[..., :1]]), scale=2), r"got shape \(6, 7, 4\)"),
        (lambda up, img: up.upscale(img.astype(np.int64), scale=2), "image must be uint8 or float in .*int64"),
        (lambda up, img: up.upscale(img.astype(np.float32), scale=2), r"float image must hold values in \[0, 1\]"),
        (lambda up, img: up.encode(np.full((4, 4, 3), np.nan)), r"\[0, 1\], got .* and NaN or Inf"),
        (lambda up, img: up.encode(img).query([0.0, 0.0, 0.0]), r"coords must be .* \(\.\.\., 2\); got shape \(3,\)"),
        (lambda up, img: up.encode(img).query([[0.0, 1.5]]), r"coords must be \(y, x\) in \[-1, 1\]"),
        (lambda up, img: up.encode(img).query([[0.0, 0.0]], cell=(0.1,)), "cell must be .* two positive numbers"),
        (lambda up, img: up.encode(img).query([[0.0, 0.0]], cell=(0.1, -1)), "cell must be .* two positive numbers"),
    ],
)
def test_bad_inputs_are_one_clear_value_error(photo, call, message):
    with pytest.raises(ValueError, match=message) as err:
        call(tiny_upscaler("liif"), photo)
    assert "\n" not in str(err.value)


def test_train_runs_a_tiny_quickstart_and_returns_its_metrics(tmp_path):
    """The quick start with the tiny model and data of experiments/tiny_quickstart.sh, 4 steps."""
    overrides = {
        "model.args.encoder_spec.args.n_resblocks": 1,
        "model.args.encoder_spec.args.n_feats": 8,
        "model.args.imnet_spec.args.hidden_list": [16],  # a list for a tuple field: made a tuple
        "init": "",  # random weights, not the quick start's shipped model
        "data.train.batch_size": 8,
        "data.val.batch_size": 8,
        "data.train.wrapper.args.inp_size": 16,
        "data.train.wrapper.args.sample_q": 64,
        "data.val.wrapper.args.inp_size": 16,
        "data.val.wrapper.args.sample_q": 64,
        "final_eval.scales": (),
        "num_steps": 4,
        "log_every_steps": 2,
        "eval_every_steps": 4,
        "checkpoint_every_steps": 4,
    }
    metrics = liif_jax.train(tmp_path / "run", overrides=overrides)
    assert {"loss", "val_psnr"} <= set(metrics) and all(np.isfinite(v) for v in metrics.values())
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["num_steps"] == 4 and saved["model"]["args"]["imnet_spec"]["args"]["hidden_list"] == [16]
    assert liif_jax.load(tmp_path / "run").name == "EDSR-baseline 1x8, MLP 16x1"


def test_train_refuses_an_unknown_key_or_a_wrong_type_before_training(tmp_path):
    with pytest.raises(
        ValueError, match=r"overrides\['num_step'\]: config has no key 'num_step' \(did you mean 'num_steps'\?\)"
    ):
        liif_jax.train(tmp_path / "run", overrides={"num_step": 3})
    with pytest.raises(ValueError, match=r"overrides\['num_steps'\] = 'ten'"):
        liif_jax.train(tmp_path / "run", overrides={"num_steps": "ten"})
    assert not (tmp_path / "run").exists()


def test_an_older_python_gets_one_line_saying_what_to_do():
    """As if on Python 3.11: `import liif_jax` (so every CLI) stops first, with one line."""
    code = "import sys; sys.version_info = (3, 11, 7, 'final', 0); import liif_jax"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr == (
        f"liif_jax needs Python 3.12 or newer; this is Python 3.11 ({sys.executable}). "
        "Get one with pyenv, uv (uv venv -p 3.12) or your OS packages.\n"
    )
