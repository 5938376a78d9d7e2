"""The paper's fixed-scale baselines (official `liif` without `imnet_spec`), and every official
training config converting and building.

The vectors (tests/data/upsample_reference.npz) come from the official code:
experiments/reference/make_upsample_reference.py says how they were made and what they hold.
"""

import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from liif_jax.configs import official
from liif_jax.data import datasets
from liif_jax.evaluation import official_test
from liif_jax.formats import checkpoints
from liif_jax.formats.state_dict import official_state_dict, params_from_state_dict, save_official
from liif_jax.models import LIIF, FixedScaleSR, MetaSR, build_model, encoders
from liif_jax.render import render

from conftest import REPO, load_module

DATA = pathlib.Path(__file__).resolve().parent / "data"
REF = DATA / "upsample_reference.npz"
OFFICIAL_TRAIN_CONFIGS = sorted((DATA / "official_configs").glob("train-*/**/*.yaml"))
OFFICIAL_TEST_CONFIGS = sorted((DATA / "official_configs" / "test").glob("*.yaml"))
ATOL = 1e-5


@functools.cache
def arrays() -> dict[str, np.ndarray]:
    with np.load(REF) as d:
        return {k: d[k] for k in d.files}


MODELS = json.loads(str(np.load(REF)["meta"]))["models"]


@functools.cache
def load(key: str):
    """(model, params, arrays of `key`): weights recomputed as the script set them, converted."""
    make_ref = load_module(REPO / "experiments" / "reference" / "make_upsample_reference.py")
    ref = {k.split("/", 1)[1]: v for k, v in arrays().items() if k.startswith(f"{key}/")}
    model = build_model(json.loads(str(ref["spec"])))
    sd = make_ref.param_values(json.loads(str(ref["params"])), int(ref["seed"]))
    return model, params_from_state_dict(model, sd, f"{REF.name}:{key}"), ref


def nhwc(x: np.ndarray) -> jnp.ndarray:
    return jnp.asarray(x.transpose(0, 2, 3, 1))


@pytest.mark.parametrize("key", MODELS)
def test_baseline_matches_official(key):
    """Upsampling tail (conv, pixel shuffle order) and the nearest sample at every kind of query."""
    model, params, ref = load(key)
    assert isinstance(model, FixedScaleSR)
    pred = model.encode(params, nhwc(ref["inp"]))
    np.testing.assert_allclose(np.asarray(pred), nhwc(ref["pred"]), atol=ATOL, rtol=0)
    out = model.query(params, pred, jnp.asarray(ref["coord"]), jnp.asarray(ref["cell"]))
    np.testing.assert_allclose(np.asarray(out), ref["out"], atol=ATOL, rtol=0)


def test_official_checkpoint_of_a_baseline_loads(tmp_path):
    """Official names (`encoder.tail.0.2.weight`, `encoder.UPNet.4.weight`) both ways, through a .pth."""
    for key in ("edsr_x4", "rdn_x4"):
        model, params, ref = load(key)
        names = [n for n, _ in json.loads(str(ref["params"]))]
        sd = official_state_dict(model, params)
        assert [n for n in sd if not n.startswith(("encoder.sub_mean", "encoder.add_mean"))] == names
        save_official(tmp_path / f"{key}.pth", model, params)
        loaded, loaded_params = checkpoints.load_model(tmp_path / f"{key}.pth")
        assert isinstance(loaded, FixedScaleSR)
        out = loaded.apply(loaded_params, nhwc(ref["inp"]), ref["coord"], ref["cell"])
        np.testing.assert_allclose(np.asarray(out), ref["out"], atol=ATOL, rtol=0)


def test_render_of_a_baseline_is_its_upsampled_map_resampled():
    """Rendering (encode once, query pixel centres in chunks) at the model's scale returns its map;
    at another size, the nearest pixels of it."""
    model, params, ref = load("edsr_x3")
    inp = np.asarray(nhwc(ref["inp"]))
    pred = ref["pred"].transpose(0, 2, 3, 1)
    h, w = pred.shape[1:3]
    np.testing.assert_allclose(render.render(model, params, inp, (h, w), batch_queries=100), pred, atol=ATOL, rtol=0)
    half = render.render(model, params, inp, (h // 3, w // 3), batch_queries=7)
    np.testing.assert_allclose(half, pred[:, 1::3, 1::3], atol=ATOL, rtol=0)  # the centre of each 3x3 block


@pytest.mark.parametrize("path", OFFICIAL_TRAIN_CONFIGS, ids=lambda p: p.stem)
def test_every_official_training_config_converts_and_builds(path):
    c = official.from_official_yaml(path)
    model = build_model(c.model.to_dict())
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    assert jax.tree.leaves(shapes)
    for split in ("train", "val"):
        datasets.make_wrapper(c.data[split].wrapper.to_dict())
    spec = c.model.to_dict()
    if "imnet_spec" in spec["args"] or spec["name"] == "metasr":
        assert isinstance(model, (LIIF, MetaSR))
    else:
        scale = spec["args"]["encoder_spec"]["args"]["scale"]
        assert isinstance(model, FixedScaleSR) and model.encoder.upsample_scale == scale
        up = jax.eval_shape(model.encode, shapes, jax.ShapeDtypeStruct((1, 4, 5, 3), jnp.float32))
        assert up.shape == (1, 4 * scale, 5 * scale, 3)


def test_all_seventeen_official_training_configs_are_here():
    assert len(OFFICIAL_TRAIN_CONFIGS) == 17 and len(OFFICIAL_TEST_CONFIGS) == 30


def _tiny_image(path: pathlib.Path, side: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((side, side, 3), 128, np.uint8)).save(path)


@pytest.mark.parametrize("path", OFFICIAL_TEST_CONFIGS, ids=lambda p: p.stem)
def test_every_official_test_config_is_read_by_evaluate(path, tmp_path, monkeypatch):
    """With one tiny image where each official test YAML looks for its data, `evaluate --config`
    reads it: the scale its name says (test-div2k-4: x4; test-celebAHQ-32-256: x8) and its protocol."""
    import yaml

    y = yaml.safe_load(path.read_text())
    args = y["test_dataset"]["dataset"]["args"]
    parts = path.stem.split("-")
    scale = int(parts[-1]) // int(parts[-2]) if "celebAHQ" in path.stem else int(parts[-1])
    monkeypatch.chdir(tmp_path)
    if "split_file" in args:  # CelebA-HQ: the same names in both folders, listed in split.json
        pathlib.Path(args["split_file"]).parent.mkdir(parents=True)
        pathlib.Path(args["split_file"]).write_text(json.dumps({args["split_key"]: ["00000.png"]}))
    if "root_path" in args:
        _tiny_image(pathlib.Path(args["root_path"]) / "img.png", 2 * scale)
    else:
        lr_name = "00000.png" if "split_file" in args else f"imgx{scale}.png"
        _tiny_image(pathlib.Path(args["root_path_1"]) / lr_name, 2)
        _tiny_image(pathlib.Path(args["root_path_2"]) / ("00000.png" if "split_file" in args else "img.png"), 2 * scale)
    test = official_test.read_official_test_config(path)
    assert test.scale == scale and len(test.source) == 1
    assert test.protocol == (y["eval_type"].split("-")[0] if y.get("eval_type") else "plain")


@pytest.mark.parametrize(
    "spec, needle",
    [
        (
            {"name": "liif", "args": {"encoder_spec": {"name": "edsr-baseline", "args": {"no_upsampling": True}}}},
            "fixed-scale baseline",
        ),
        ({"name": "liif", "args": {"encoder_spec": {"name": "edsr-baseline", "args": {"scale": 5}}}}, "scale 5"),
        ({"name": "liif", "args": {"encoder_spec": {"name": "rdn", "args": {"scale": 8}}}}, "scale 8"),
        ({"name": "liif", "args": {"encoder_spec": {"name": "rcan", "args": {"scale": 2}}}}, "rcan"),
        (
            {
                "name": "liif",
                "args": {
                    "encoder_spec": {"name": "edsr-baseline", "args": {"scale": 2}},
                    "imnet_spec": {"name": "mlp", "args": {"out_dim": 3}},
                },
            },
            "no_upsampling: true",
        ),
        ({"name": "metasr", "args": {"encoder_spec": {"name": "edsr-baseline", "args": {}}}}, "no_upsampling: true"),
    ],
)
def test_baseline_spec_errors_are_clear(spec, needle):
    with pytest.raises(ValueError, match=needle):
        build_model(spec)


def test_pixel_shuffle_is_pytorchs():
    """PixelShuffle(2) on channel-first (1, 4, 1, 1) [a, b, c, d] is [[a, b], [c, d]]."""
    x = jnp.arange(8.0).reshape(1, 1, 1, 8)  # NHWC: 2 output channels x 2 x 2
    y = np.asarray(encoders.pixel_shuffle(x, 2))
    np.testing.assert_array_equal(y[0, :, :, 0], [[0, 1], [2, 3]])
    np.testing.assert_array_equal(y[0, :, :, 1], [[4, 5], [6, 7]])
