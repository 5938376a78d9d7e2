"""Evaluation reproduces the official test path (LR making, cropping, prediction, PSNR) end to end."""

import collections
import io
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from liif_jax import evaluate
from liif_jax.data import imaging, sources
from liif_jax.data.imaging import ImageError, resize_bicubic, to_float01
from liif_jax.evaluation import evaluator, metrics, official_test, report
from liif_jax.formats.checkpoints import save_model
from liif_jax.formats.pth import save_pth
from liif_jax.models import build_model, describe

import reference
from conftest import TFDS_DIR

TINY_SPEC = {
    "name": "liif",
    "args": {
        "encoder_spec": {"name": "edsr-baseline", "args": {"n_resblocks": 1, "n_feats": 8, "no_upsampling": True}},
        "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [16, 16]}},
    },
}
ROOT = pathlib.Path(__file__).resolve().parents[1]


def chw_u8(x: np.ndarray) -> np.ndarray:
    return np.round(x.transpose(1, 2, 0) * 255).astype(np.uint8)


def write_png(path: pathlib.Path, img: np.ndarray) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


@pytest.fixture(scope="module")
def div2k_x3():
    return reference.load("eval_div2k_x3")


@pytest.fixture(scope="module")
def benchmark_x4():
    return reference.load("eval_benchmark_x4")


@pytest.fixture(scope="module")
def tiny():
    model = build_model(TINY_SPEC)
    return model, model.init(jax.random.key(0))


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory, tiny):
    return save_model(tmp_path_factory.mktemp("tiny") / "ckpt", TINY_SPEC, tiny[1])


@pytest.fixture
def benchmark_dirs(tmp_path, benchmark_x4):
    """The official benchmark layout: HR/baby.png and LR_bicubic/X4/babyx4.png."""
    arrs = benchmark_x4[2]
    write_png(tmp_path / "HR" / "baby.png", arrs["hr_u8"])
    write_png(tmp_path / "LR_bicubic" / "X4" / "babyx4.png", chw_u8(arrs["lr"]))
    return tmp_path / "LR_bicubic" / "X4", tmp_path / "HR"


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = evaluate.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


# --- the official reference -------------------------------------------------------------------


def test_div2k_x3_reproduces_official_lr_prediction_and_psnr(div2k_x3):
    model, params, arrs = div2k_x3
    lr, hr = imaging.downsample(arrs["hr_u8"], 3)
    np.testing.assert_array_equal(lr, chw_u8(arrs["lr"]))
    out = evaluator.evaluate_one(model, params, arrs["hr_u8"], None, 3, "div2k")
    np.testing.assert_array_equal(out.lr, lr)
    np.testing.assert_array_equal(out.hr, arrs["hr_u8"])
    np.testing.assert_allclose(out.pred, arrs["pred"].transpose(1, 2, 0), atol=1e-4, rtol=0)
    assert out.psnr == pytest.approx(float(arrs["psnr"]), abs=1e-3)
    assert metrics.psnr(out.pred, to_float01(out.hr)) == pytest.approx(float(arrs["psnr_plain"]), abs=1e-3)
    bicubic = report.bicubic_upsample(lr, (96, 120))
    assert out.bicubic_psnr == pytest.approx(metrics.psnr(bicubic, to_float01(hr), "div2k", 3))


def test_benchmark_x4_paired_by_name_crops_top_left(benchmark_x4, benchmark_dirs):
    model, params, arrs = benchmark_x4
    source = sources.PairedImageFolders(*benchmark_dirs)
    out = evaluator.evaluate_one(model, params, source[0]["hr"], source[0]["lr"], 4, "benchmark")
    assert out.pred.shape == (88, 100, 3)
    np.testing.assert_array_equal(out.hr, arrs["hr_u8"][:88])
    np.testing.assert_allclose(out.pred, arrs["pred"].transpose(1, 2, 0), atol=1e-4, rtol=0)
    [result] = evaluator.evaluate(model, params, source, [4], "benchmark", names=["baby.png"], progress=False)
    assert result.name == "baby.png" and result.scale == 4
    assert result.psnr == pytest.approx(float(arrs["psnr"]), abs=1e-3)


def test_cli_on_official_pth_paired_benchmark(tmp_path, capsys, benchmark_x4, benchmark_dirs):
    _, _, arrs = benchmark_x4
    spec = reference.manifest()["eval_benchmark_x4"]["model_spec"]
    pth = tmp_path / "model.pth"
    sd = collections.OrderedDict(reference.state_dict(arrs))
    save_pth(pth, {"model": {"name": spec["name"], "args": spec["args"], "sd": sd}, "epoch": 1})
    lr_dir, hr_dir = benchmark_dirs
    out_json = tmp_path / "res.json"
    rc, out, err = run_cli(
        capsys,
        "--model",
        pth,
        "--hr-dir",
        hr_dir,
        "--lr-dir",
        lr_dir,
        "--scale",
        "4",
        "--protocol",
        "benchmark",
        "--json",
        out_json,
    )
    assert rc == 0, err
    res = json.loads(out_json.read_text())
    assert res["mean_psnr"] == pytest.approx(float(arrs["psnr"]), abs=1e-3)
    [image] = res["images"]
    assert image["name"] == "baby.png" and image["scale"] == 4
    bicubic = report.bicubic_upsample(chw_u8(arrs["lr"]), (88, 100))
    expected_bicubic = metrics.psnr(bicubic, to_float01(arrs["hr_u8"][:88]), "benchmark", 4)
    assert image["bicubic_psnr"] == pytest.approx(expected_bicubic, abs=1e-9)
    assert "[1/1] baby.png x4" in out and "| x4 |" in out


def test_cli_module_on_a_training_workdir(tmp_path, div2k_x3):
    """`python -m liif_jax.evaluate --model WORKDIR` finds WORKDIR/checkpoints/<latest step>."""
    _, params, arrs = div2k_x3
    spec = reference.manifest()["eval_div2k_x3"]["model_spec"]
    save_model(tmp_path / "work" / "checkpoints", spec, params, step=7)
    write_png(tmp_path / "hr" / "0801.png", arrs["hr_u8"])
    out_json = tmp_path / "res.json"
    argv = [
        "--model",
        tmp_path / "work",
        "--hr-dir",
        tmp_path / "hr",
        "--scale",
        "3",
        "--protocol",
        "div2k",
        "--json",
        out_json,
    ]
    env = {**os.environ, "JAX_DEFAULT_MATMUL_PRECISION": "highest"}
    proc = subprocess.run(
        [sys.executable, "-m", "liif_jax.evaluate", *map(str, argv)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out_json.read_text())
    assert res["mean_psnr"] == pytest.approx(float(arrs["psnr"]), abs=1e-3)
    assert res["images"][0]["name"] == "0801.png"


# --- the downsampled path at any scale ----------------------------------------------------------


@pytest.mark.parametrize(
    ("hw", "scale", "lr_hw", "crop_hw"),
    [((97, 121), 2.5, (38, 48), (95, 120)), ((33, 34), 1.1, (30, 30), (33, 33)), ((90, 100), 4, (22, 25), (88, 100))],
)
def test_downsample_sizes_as_official(hw, scale, lr_hw, crop_hw):
    """floor(H / s + 1e-9) (33 / 1.1 is 29.999... in floating point) and a top-left crop to round(h_lr * s)."""
    hr = np.random.default_rng(0).integers(0, 256, (*hw, 3), dtype=np.uint8)
    lr, crop = imaging.downsample(hr, scale)
    assert lr.shape[:2] == lr_hw and crop.shape[:2] == crop_hw
    np.testing.assert_array_equal(crop, hr[: crop_hw[0], : crop_hw[1]])
    np.testing.assert_array_equal(lr, resize_bicubic(crop, lr_hw))


def test_multi_scale_cli_writes_json_crops_and_plot(tmp_path, capsys, tiny, tiny_ckpt, div2k_x3):
    hr = div2k_x3[2]["hr_u8"]
    write_png(tmp_path / "hr" / "a.png", hr)
    write_png(tmp_path / "hr" / "b.png", hr[:60, :75])
    out_json, shots = tmp_path / "out" / "res.json", tmp_path / "shots"
    rc, out, err = run_cli(
        capsys,
        "--model",
        tiny_ckpt,
        "--hr-dir",
        tmp_path / "hr",
        "--scale",
        "2,3",
        "--protocol",
        "div2k",
        "--json",
        out_json,
        "--save-images",
        shots,
    )
    assert rc == 0, err
    res = json.loads(out_json.read_text())
    assert set(res) == {"mean_psnr", "scales", "images"}
    assert list(res["scales"]) == ["2", "3"]
    assert set(res["scales"]["2"]) >= {"psnr", "bicubic_psnr", "n_images"} and res["scales"]["3"]["n_images"] == 2
    assert res["mean_psnr"] == res["scales"]["2"]["psnr"]
    assert [(i["name"], i["scale"]) for i in res["images"]] == [("a.png", 2), ("a.png", 3), ("b.png", 2), ("b.png", 3)]
    assert res["scales"]["3"]["psnr"] == pytest.approx(np.mean([i["psnr"] for i in res["images"] if i["scale"] == 3]))
    assert sorted(p.name for p in shots.iterdir()) == [
        "a_x2.png",
        "a_x3.png",
        "b_x2.png",
        "b_x3.png",
        "psnr_vs_scale.png",
    ]
    assert Image.open(shots / "b_x3.png").size == (3 * 75 + 2 * report.PANEL_GAP, 60 + report.LABEL_HEIGHT)
    assert "[2/2] b.png x3" in out and "running mean x3" in out and "| x2 |" in out and "| x3 |" in out
    label = f"{pathlib.Path(tiny_ckpt).name} ({describe(tiny[0])})"  # the table names the model
    assert (
        [line for line in out.splitlines() if line.startswith("| scale |")][0].split("|")[2].strip().startswith(label)
    )
    # The library call gives the same numbers, whatever the query chunk size.
    model, params = tiny
    again = evaluator.evaluate(model, params, [hr, hr[:60, :75]], [2, 3], "div2k", batch_queries=777, progress=False)
    assert [r.psnr for r in again] == pytest.approx([i["psnr"] for i in res["images"]], abs=1e-4)
    assert [r.name for r in again] == ["image0", "image0", "image1", "image1"]


def test_non_integer_scale_needs_the_plain_protocol(tiny, div2k_x3):
    model, params = tiny
    hr = div2k_x3[2]["hr_u8"][:50, :50]
    with pytest.raises(ValueError, match="--protocol plain"):
        evaluator.evaluate(model, params, [hr], [2.5], "div2k", progress=False)
    [result] = evaluator.evaluate(model, params, [hr], [2.5], "plain", progress=False)
    assert result.scale == 2.5 and np.isfinite(result.psnr)


# --- TFDS ------------------------------------------------------------------------------------


def test_tfds_paired_set(tmp_path, capsys, tiny, tiny_ckpt):
    out_json = tmp_path / "res.json"
    rc, out, err = run_cli(
        capsys,
        "--model",
        tiny_ckpt,
        "--tfds",
        "tiny_div2k_like",
        "--tfds-data-dir",
        TFDS_DIR,
        "--split",
        "validation",
        "--tfds-lr-key",
        "lr",
        "--scale",
        "4",
        "--protocol",
        "benchmark",
        "--json",
        out_json,
    )
    assert rc == 0, err
    res = json.loads(out_json.read_text())
    assert [i["name"] for i in res["images"]] == ["tiny_div2k_like[validation][0]", "tiny_div2k_like[validation][1]"]
    source = sources.TfdsSource("tiny_div2k_like", TFDS_DIR, "validation", lr_key="lr")
    model, params = tiny
    for i, image in enumerate(res["images"]):
        expected = evaluator.evaluate_one(model, params, source[i]["hr"], source[i]["lr"], 4, "benchmark")
        assert image["psnr"] == pytest.approx(expected.psnr, abs=1e-4)
        assert image["bicubic_psnr"] == pytest.approx(expected.bicubic_psnr, abs=1e-9)


# --- bad input -------------------------------------------------------------------------------


def assert_clean_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 1
    assert err.startswith("error: ") and "Traceback" not in err
    for needle in needles:
        assert needle in err, err


@pytest.mark.parametrize("text", ["abc", "0", "2,,3", "", "-2", "nan", "4x"])
def test_bad_scale_text(tmp_path, capsys, text):
    write_png(tmp_path / "hr" / "a.png", np.zeros((40, 40, 3), np.uint8))
    rc, _, err = run_cli(
        capsys, "--model", tmp_path / "none", "--hr-dir", tmp_path / "hr", "--scale", text, "--protocol", "plain"
    )
    assert_clean_error(rc, err, "--scale", repr(text))


def test_lr_dir_with_several_scales(tmp_path, capsys):
    rc, _, err = run_cli(
        capsys,
        "--model",
        tmp_path / "none",
        "--hr-dir",
        tmp_path,
        "--lr-dir",
        tmp_path,
        "--scale",
        "2,4",
        "--protocol",
        "div2k",
    )
    assert_clean_error(rc, err, "--lr-dir", "--scale 2,4")


def test_hr_folder_without_images(tmp_path, capsys, tiny_ckpt):
    (tmp_path / "hr").mkdir()
    (tmp_path / "hr" / "notes.txt").write_text("no images here")
    rc, _, err = run_cli(
        capsys, "--model", tiny_ckpt, "--hr-dir", tmp_path / "hr", "--scale", "4", "--protocol", "div2k"
    )
    assert_clean_error(rc, err, str(tmp_path / "hr"))


def test_unpaired_names(tmp_path, capsys, tiny_ckpt):
    img = np.zeros((40, 40, 3), np.uint8)
    write_png(tmp_path / "hr" / "0801.png", img)
    write_png(tmp_path / "lr" / "0802x4.png", img[:10, :10])
    rc, _, err = run_cli(
        capsys,
        "--model",
        tiny_ckpt,
        "--hr-dir",
        tmp_path / "hr",
        "--lr-dir",
        tmp_path / "lr",
        "--scale",
        "4",
        "--protocol",
        "div2k",
    )
    assert_clean_error(rc, err, "0802x4.png")


def test_lr_size_not_fitting_the_scale(tmp_path, capsys, tiny_ckpt):
    hr = write_png(tmp_path / "hr" / "a.png", np.zeros((100, 100, 3), np.uint8))
    lr = write_png(tmp_path / "lr" / "ax4.png", np.zeros((30, 30, 3), np.uint8))
    rc, _, err = run_cli(
        capsys,
        "--model",
        tiny_ckpt,
        "--hr-dir",
        tmp_path / "hr",
        "--lr-dir",
        tmp_path / "lr",
        "--scale",
        "4",
        "--protocol",
        "plain",
    )
    assert_clean_error(rc, err, str(hr), str(lr), "30x30", "100x100", "scale 4")


def test_image_smaller_than_the_shave_border(tmp_path, capsys, tiny_ckpt):
    small = write_png(tmp_path / "hr" / "small.png", np.zeros((20, 40, 3), np.uint8))
    rc, _, err = run_cli(
        capsys, "--model", tiny_ckpt, "--hr-dir", tmp_path / "hr", "--scale", "4", "--protocol", "div2k"
    )
    assert_clean_error(rc, err, str(small), "too small")


def test_library_rejects_paired_images_at_several_scales_and_float_images(tiny):
    model, params = tiny
    pair = {"hr": np.zeros((40, 40, 3), np.uint8), "lr": np.zeros((10, 10, 3), np.uint8)}
    with pytest.raises(ValueError, match="one scale"):
        evaluator.evaluate(model, params, [pair], [2, 4], "plain", progress=False)
    with pytest.raises(ImageError, match="image0: expected a uint8"):
        evaluator.evaluate(model, params, [np.zeros((40, 40, 3), np.float32)], [2], "plain", progress=False)


def test_celebahq_split_of_paired_folders(tmp_path, capsys, tiny_ckpt):
    """The official CelebA-HQ test: the `val` faces of split.json, given 8 px LR, x4, all pixels."""
    rng = np.random.default_rng(0)
    for name in ("00000.jpg", "00001.jpg", "00002.jpg"):
        write_png(tmp_path / "32" / name, rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
        write_png(tmp_path / "256" / name, rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["00000.jpg"], "val": ["00002.jpg", "00001.jpg"]}))
    out_json = tmp_path / "r.json"
    common = (
        "--model",
        tiny_ckpt,
        "--hr-dir",
        tmp_path / "256",
        "--lr-dir",
        tmp_path / "32",
        "--scale",
        "4",
        "--protocol",
        "plain",
    )
    rc, _, err = run_cli(capsys, *common, "--split-file", split, "--split-key", "val", "--json", out_json)
    assert rc == 0, err
    assert [r["name"] for r in json.loads(out_json.read_text())["images"]] == ["00002.jpg", "00001.jpg"]
    rc, _, err = run_cli(capsys, *common, "--split-file", split)
    assert_clean_error(rc, err, "--split-key")


# --- official test configs (configs/test/*.yaml) ------------------------------------------------

NORM = "data_norm:\n  inp: {sub: [0.5], div: [0.5]}\n  gt: {sub: [0.5], div: [0.5]}\n"


def test_official_div2k_test_config_reproduces_the_official_psnr(tmp_path, capsys, div2k_x3, monkeypatch):
    """`--config test-div2k-3.yaml` as the official file reads (relative paths, from the working dir)."""
    _, params, arrs = div2k_x3
    save_model(tmp_path / "model", reference.manifest()["eval_div2k_x3"]["model_spec"], params)
    write_png(tmp_path / "load" / "div2k" / "DIV2K_valid_HR" / "0801.png", arrs["hr_u8"])
    (tmp_path / "test-div2k-3.yaml").write_text(
        "test_dataset:\n  dataset:\n    name: image-folder\n    args:\n      root_path: ./load/div2k/DIV2K_valid_HR\n"
        "  wrapper:\n    name: sr-implicit-downsampled\n    args:\n      scale_min: 3\n  batch_size: 1\n"
        "eval_type: div2k-3\neval_bsize: 30000\n\n" + NORM
    )
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_cli(capsys, "--model", "model", "--config", "test-div2k-3.yaml", "--json", "r.json")
    assert rc == 0, err
    [image] = json.loads((tmp_path / "r.json").read_text())["images"]
    assert image["name"] == "0801.png" and image["scale"] == 3
    assert image["psnr"] == pytest.approx(float(arrs["psnr"]), abs=1e-3)
    assert "under protocol 'div2k'" in out


def test_official_benchmark_test_config_pairs_the_given_lr(tmp_path, capsys, benchmark_x4, benchmark_dirs):
    _, params, arrs = benchmark_x4
    save_model(tmp_path / "model", reference.manifest()["eval_benchmark_x4"]["model_spec"], params)
    lr_dir, hr_dir = benchmark_dirs
    config = tmp_path / "test-set5-4.yaml"
    config.write_text(
        f"test_dataset:\n  dataset:\n    name: paired-image-folders\n    args:\n      root_path_1: {lr_dir}\n"
        f"      root_path_2: {hr_dir}\n  wrapper:\n    name: sr-implicit-paired\n    args: {{}}\n  batch_size: 1\n"
        "eval_type: benchmark-4\neval_bsize: 30000\n" + NORM
    )
    rc, _, err = run_cli(capsys, "--model", tmp_path / "model", "--config", config, "--json", tmp_path / "r.json")
    assert rc == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["mean_psnr"] == pytest.approx(float(arrs["psnr"]), abs=1e-3)


def test_official_celebahq_test_config_infers_the_scale_and_measures_all_pixels(tmp_path, tiny):
    """No eval_type (the CelebA-HQ tests): every pixel, RGB; the scale is the pair's size ratio."""
    rng = np.random.default_rng(0)
    for name in ("00000.jpg", "00001.jpg"):
        write_png(tmp_path / "32" / name, rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
        write_png(tmp_path / "256" / name, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    (tmp_path / "split.json").write_text(json.dumps({"train": ["00000.jpg"], "val": ["00001.jpg"]}))
    config = tmp_path / "test-celebAHQ-32-256.yaml"
    config.write_text(
        f"test_dataset:\n  dataset:\n    name: paired-image-folders\n    args:\n      root_path_1: {tmp_path / '32'}\n"
        f"      root_path_2: {tmp_path / '256'}\n      split_file: {tmp_path / 'split.json'}\n      split_key: val\n"
        "      cache: bin\n  wrapper:\n    name: sr-implicit-paired\n    args: {}\n  batch_size: 1\n" + NORM
    )
    test = official_test.read_official_test_config(config)
    assert (test.scale, test.protocol, test.names, test.batch_queries) == (8, "plain", ["00001.jpg"], 30000)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "256",
        "32",
        "split.json",
        "test-celebAHQ-32-256.yaml",
    ]  # no cache


@pytest.mark.parametrize(
    "body, needle",
    [
        ("test_dataset: {}\n", "not an official test config"),
        (
            "test_dataset:\n  dataset: {name: image-folder, args: {root_path: x}}\n  wrapper: {name: sr-implicit-downsampled, "
            "args: {inp_size: 48, scale_min: 2}}\n" + NORM,
            "whole images",
        ),
        (
            "test_dataset:\n  dataset: {name: image-folder, args: {root_path: x}}\n  wrapper: {name: sr-implicit-downsampled, "
            "args: {scale_min: 2}}\n",
            "data_norm",
        ),
        (
            "test_dataset:\n  dataset: {name: image-folder, args: {root_path: x}}\n  wrapper: {name: sr-implicit-downsampled, "
            "args: {scale_min: 2}}\neval_type: urban-2\n" + NORM,
            "eval_type",
        ),
    ],
)
def test_bad_official_test_config_names_the_file(tmp_path, capsys, body, needle):
    config = tmp_path / "bad.yaml"
    config.write_text(body)
    rc, _, err = run_cli(capsys, "--model", tmp_path / "none", "--config", config)
    assert_clean_error(rc, err, str(config), needle)


def test_config_excludes_scale_and_protocol(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "--model", tmp_path / "none", "--config", tmp_path / "c.yaml", "--scale", "4")
    assert_clean_error(rc, err, "--scale", "--config")


def test_center_crop_evaluates_the_middle_of_each_image(tmp_path, capsys, tiny_ckpt, tiny):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    write_png(tmp_path / "hr" / "a.png", img)
    rc, _, err = run_cli(
        capsys,
        "--model",
        tiny_ckpt,
        "--hr-dir",
        tmp_path / "hr",
        "--scale",
        "2",
        "--protocol",
        "plain",
        "--center-crop",
        "20",
        "--json",
        tmp_path / "r.json",
    )
    assert rc == 0, err
    [result] = evaluator.evaluate(*tiny, [img[15:35, 25:45]], [2], "plain", progress=False)
    assert json.loads((tmp_path / "r.json").read_text())["mean_psnr"] == pytest.approx(result.psnr, abs=1e-9)
    assert imaging.center_crop(img, 100).shape == img.shape  # smaller images are kept whole
    rc, _, err = run_cli(
        capsys,
        "--model",
        tiny_ckpt,
        "--hr-dir",
        tmp_path / "hr",
        "--lr-dir",
        tmp_path / "hr",
        "--scale",
        "2",
        "--protocol",
        "plain",
        "--center-crop",
        "20",
    )
    assert_clean_error(rc, err, "--center-crop")


def test_tiles_give_the_whole_image_psnr(tmp_path, capsys, tiny_ckpt):
    """LR 40 x 48 in tiles of 7 pixels (a halo of 4 + 2): 4 x 5 tiles."""
    write_png(tmp_path / "hr" / "a.png", np.random.default_rng(0).integers(0, 256, (100, 120, 3), dtype=np.uint8))
    psnrs = []
    for tile in (0, 7):
        rc, _, err = run_cli(
            capsys,
            "--model",
            tiny_ckpt,
            "--hr-dir",
            tmp_path / "hr",
            "--scale",
            "2.5",
            "--protocol",
            "plain",
            "--tile",
            tile,
            "--json",
            tmp_path / f"{tile}.json",
        )
        assert rc == 0, err
        psnrs.append(json.loads((tmp_path / f"{tile}.json").read_text())["images"][0]["psnr"])
    assert psnrs[0] == pytest.approx(psnrs[1], abs=1e-4)
    rc, _, err = run_cli(
        capsys, "--model", tiny_ckpt, "--hr-dir", tmp_path / "hr", "--scale", "2", "--protocol", "plain", "--tile", -1
    )
    assert rc == 1 and "--tile" in err


def test_protocol_defaults_to_div2k_and_a_missing_scale_is_named(tmp_path, capsys, tiny_ckpt):
    write_png(tmp_path / "hr" / "a.png", np.random.default_rng(0).integers(0, 256, (36, 36, 3), dtype=np.uint8))
    rc, out, err = run_cli(
        capsys, "--model", tiny_ckpt, "--hr-dir", tmp_path / "hr", "--scale", "2", "--json", tmp_path / "r.json"
    )
    assert rc == 0, err
    assert "under protocol 'div2k'" in out
    rc, _, err = run_cli(capsys, "--model", tiny_ckpt, "--hr-dir", tmp_path / "hr", "--protocol", "div2k")
    assert_clean_error(rc, err, "--scale is required")
    assert "--protocol" not in err


def test_degraded_inputs_are_named_in_the_table_and_drawn_from_the_seed(tmp_path, capsys, tiny_ckpt):
    """--degrade jpeg:Q: bicubic and the model see the bicubic LR saved as JPEG; realesrgan:SEED is
    the same inputs for the same seed; a bad recipe is one line before the model is read."""
    photo = sources.sample_images("val")[0]
    hr = np.ascontiguousarray(photo[100:166, 150:216])
    write_png(tmp_path / "hr" / "a.png", hr)
    rc, out, err = run_cli(
        capsys, "--model", tiny_ckpt, "--hr-dir", tmp_path / "hr", "--scale", "3", "--degrade", "jpeg:30",
        "--json", tmp_path / "jpeg.json",
    )  # fmt: skip
    assert rc == 0, err
    assert "| scale | ckpt (EDSR-baseline 1x8, MLP 16x2) on jpeg:30 inputs PSNR (dB) |" in out
    buffer = io.BytesIO()
    Image.fromarray(resize_bicubic(hr, (22, 22))).save(buffer, format="JPEG", quality=30)
    lr = np.asarray(Image.open(buffer))
    expected = metrics.psnr(report.bicubic_upsample(lr, (66, 66)), to_float01(hr), "div2k", 3)
    [image] = json.loads((tmp_path / "jpeg.json").read_text())["images"]
    assert image["bicubic_psnr"] == pytest.approx(expected, abs=1e-4)

    def realesrgan(seed: int) -> list[dict]:
        path = tmp_path / f"r{seed}.json"
        rc, _, err = run_cli(
            capsys, "--model", tiny_ckpt, "--hr-dir", tmp_path / "hr", "--scale", "3",
            "--degrade", f"realesrgan:{seed}", "--json", path,
        )  # fmt: skip
        assert rc == 0, err
        return json.loads(path.read_text())["images"]

    assert realesrgan(3) == realesrgan(3) != realesrgan(4)
    rc, _, err = run_cli(
        capsys, "--model", tmp_path / "none", "--hr-dir", tmp_path / "hr", "--scale", "3", "--degrade", "jpeg:200"
    )
    assert_clean_error(rc, err, "--degrade 'jpeg:200'", "1-95")
