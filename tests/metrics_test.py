"""PSNR against the official `utils.calc_psnr` reference values, and its edge cases."""

import numpy as np
import pytest

from liif_jax.evaluation.metrics import eval_type_to_protocol, psnr, shave_for

import reference

TOL_DB = 1e-3


@pytest.fixture(scope="module")
def manifest():
    return reference.manifest()


@pytest.fixture(scope="module")
def psnr_pair():
    data = reference.arrays("psnr")
    return data["sr"][0].transpose(1, 2, 0), data["hr"][0].transpose(1, 2, 0)  # CHW -> HWC


@pytest.mark.parametrize("key", ["div2k-2", "div2k-4", "benchmark-2", "benchmark-3", "None-1"])
def test_matches_official_calc_psnr(manifest, psnr_pair, key):
    eval_type = None if key.startswith("None") else key
    protocol, scale = eval_type_to_protocol(eval_type)
    assert psnr(*psnr_pair, protocol, scale) == pytest.approx(manifest["psnr"]["psnr"][key], abs=TOL_DB)


@pytest.mark.parametrize("name", ["eval_div2k_x3", "eval_benchmark_x4"])
def test_matches_official_test_path(manifest, name):
    data = reference.arrays(name)
    pred = data["pred"].transpose(1, 2, 0)
    # The official paired loader crops the HR top-left to scale * LR size; `hr_u8` of the benchmark
    # file is stored uncropped (90 x 100 for a 22 x 25 LR at x4).
    height, width = pred.shape[:2]
    hr = data["hr_u8"][:height, :width].astype(np.float32) / 255
    protocol, scale = eval_type_to_protocol(manifest[name]["eval_type"])
    assert scale == manifest[name]["scale"]
    assert psnr(pred, hr, protocol, scale) == pytest.approx(float(data["psnr"]), abs=TOL_DB)
    assert psnr(pred, hr, "plain") == pytest.approx(float(data["psnr_plain"]), abs=TOL_DB)


def test_batch_axis_pools_squared_error_like_the_official(psnr_pair):
    sr, hr = psnr_pair
    batch_sr, batch_hr = np.stack([sr, hr]), np.stack([hr, hr])
    # The second image is a perfect match: the pooled MSE halves, i.e. +10 log10(2) dB.
    assert psnr(batch_sr, batch_hr, "div2k", 2) == pytest.approx(psnr(sr, hr, "div2k", 2) + 10 * np.log10(2))


def test_plain_protocol_uses_every_pixel_and_identical_images_give_inf():
    hr = np.zeros((4, 5, 3))
    sr = hr.copy()
    sr[0, 0, 0] = 0.1  # a corner pixel: shaving would hide it
    assert psnr(sr, hr, "plain") == pytest.approx(-10 * np.log10(0.01 / hr.size))
    assert psnr(hr, hr, "plain") == float("inf")


def test_benchmark_single_channel_skips_y_conversion():
    hr = np.zeros((10, 10, 1))
    sr = np.full_like(hr, 0.1)
    assert psnr(sr, hr, "benchmark", 2) == pytest.approx(20.0)


def test_shave_sizes():
    assert shave_for("div2k", 4) == 10
    assert shave_for("benchmark", 3) == 3
    assert shave_for("plain", 4) == 0


def test_too_small_image_names_shape_and_protocol():
    image = np.zeros((20, 30, 3))
    with pytest.raises(ValueError, match=r"\(20, 30, 3\).*'div2k'"):
        psnr(image, image, "div2k", 4)  # shaves 10 per side: nothing would be left
    assert psnr(image + 0.5, image, "div2k", 3) == pytest.approx(-10 * np.log10(0.25))


@pytest.mark.parametrize(
    ("sr_shape", "hr_shape", "kwargs", "message"),
    [
        ((8, 8, 3), (8, 9, 3), {}, "shapes differ"),
        ((8, 8), (8, 8), {}, "HWC"),
        ((8, 8, 4), (8, 8, 4), {"protocol": "benchmark", "scale": 2}, "3 channels"),
        ((8, 8, 3), (8, 8, 3), {"protocol": "set5", "scale": 2}, "unknown protocol"),
        ((8, 8, 3), (8, 8, 3), {"protocol": "benchmark", "scale": 0}, "positive integer"),
    ],
)
def test_invalid_inputs(sr_shape, hr_shape, kwargs, message):
    with pytest.raises(ValueError, match=message):
        psnr(np.zeros(sr_shape), np.zeros(hr_shape), **kwargs)


def test_eval_type_parsing():
    assert eval_type_to_protocol("div2k-4") == ("div2k", 4)
    assert eval_type_to_protocol("benchmark-12") == ("benchmark", 12)
    assert eval_type_to_protocol(None) == ("plain", 1)
    for bad in ["div2k", "div2k-", "div2k-x4", "benchmark-0", "urban-2"]:
        with pytest.raises(ValueError, match="eval_type"):
            eval_type_to_protocol(bad)
