"""Report outputs: table and JSON contents, PNG sizes and content, the bicubic baseline."""

import json

import numpy as np
import pytest
from PIL import Image

from liif_jax.evaluation import report
from liif_jax.evaluation.report import (
    CROP_SIZE,
    LABEL_HEIGHT,
    PANEL_GAP,
    ImageResult,
    aggregate,
    bicubic_upsample,
    default_crop,
    format_table,
    plot_psnr_vs_scale,
    save_side_by_side,
    to_json_dict,
    write_json,
)

import reference

RESULTS = [
    ImageResult("0801", 4, 30.0, 28.0),
    ImageResult("0802", 4, 31.0, 28.5),
    ImageResult("0801", 2, 35.0, 32.0),
    ImageResult("0802", 2, 36.0, 33.0),
    ImageResult("0803", 2, 37.0, 31.0),
]


def test_aggregate_means_per_scale_in_first_seen_order():
    rows = aggregate(RESULTS)
    assert [row.scale for row in rows] == [4, 2]
    assert [row.n_images for row in rows] == [2, 3]
    assert rows[0].psnr == pytest.approx(30.5) and rows[0].bicubic_psnr == pytest.approx(28.25)
    assert rows[1].psnr == pytest.approx(36.0) and rows[1].bicubic_psnr == pytest.approx(32.0)
    assert rows[1].gain == pytest.approx(4.0)


def cells(table: str) -> list[list[str]]:
    """The rows of a markdown table, each a list of its stripped cells (the rule line left out)."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()]
    return [rows[0], *rows[2:]]


def test_format_table_names_the_model_and_gives_each_scale_its_means_gain_and_count():
    header, *rows = cells(format_table(aggregate(RESULTS), "run1 (EDSR-baseline 16x64, MLP 256x4)"))
    assert len(header) == 5 and "run1 (EDSR-baseline 16x64, MLP 256x4)" in header[1] and "bicubic" in header[2]
    assert [r[0] for r in rows] == ["x4", "x2"]
    assert [[float(c) for c in r[1:]] for r in rows] == [[30.5, 28.25, 2.25, 2], [36.0, 32.0, 4.0, 3]]
    assert rows[0][3].startswith("+")  # the gain's sign is always shown
    assert "LIIF" in cells(format_table(aggregate(RESULTS)))[0][1]


def test_json_schema_and_values(tmp_path):
    path = tmp_path / "out" / "eval.json"
    write_json(path, RESULTS + [ImageResult("same", np.int64(3), float("inf"), 40.0)])
    summary = json.loads(path.read_text())
    assert summary["mean_psnr"] == pytest.approx(30.5)  # the first scale seen, x4
    assert summary["scales"]["4"] == {"psnr": 30.5, "bicubic_psnr": 28.25, "n_images": 2}
    assert summary["scales"]["2"] == {"psnr": 36.0, "bicubic_psnr": 32.0, "n_images": 3}
    assert summary["scales"]["3"]["psnr"] is None  # +inf is not JSON
    assert summary["images"][0] == {"name": "0801", "scale": 4, "psnr": 30.0, "bicubic_psnr": 28.0}
    assert len(summary["images"]) == 6 and summary["images"][-1]["scale"] == 3


def test_json_fractional_scale_key_and_empty_input():
    assert list(to_json_dict([ImageResult("a", 2.5, 30.0, 29.0)])["scales"]) == ["2.5"]
    with pytest.raises(ValueError, match="no image results"):
        to_json_dict([])


def _images(height=150, width=170, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.random((height, width, 3), dtype=np.float32) for _ in range(3)]


def test_side_by_side_size_and_content(tmp_path):
    bicubic, liif, gt = _images()
    path = tmp_path / "cmp.png"
    crop = save_side_by_side(path, bicubic, liif, gt, crop=(10, 20, 40, 50))
    assert crop == (10, 20, 40, 50)
    with Image.open(path) as image:
        picture = np.asarray(image)
    assert picture.shape == (LABEL_HEIGHT + 40, 3 * 50 + 2 * PANEL_GAP, 3)
    for i, image in enumerate((bicubic, liif, gt)):
        x = i * (50 + PANEL_GAP)
        expected = np.round(image[10:50, 20:70] * 255).astype(np.uint8)
        np.testing.assert_array_equal(picture[LABEL_HEIGHT:, x : x + 50], expected)
    assert (picture[:LABEL_HEIGHT] < 128).any()  # labels were drawn


def test_side_by_side_writes_each_panels_psnr_above_it(tmp_path):
    """The bicubic and LIIF labels grow by their PSNR; the ground truth's and the pixels do not change."""
    bicubic, liif, gt = _images()
    strips = []
    for psnrs in (None, (27.5, 31.25)):
        save_side_by_side(tmp_path / "cmp.png", bicubic, liif, gt, crop=(0, 0, 60, 90), psnrs=psnrs)
        with Image.open(tmp_path / "cmp.png") as image:
            strips.append(np.asarray(image))
    plain, with_psnr = strips
    panel = lambda picture, i: picture[:LABEL_HEIGHT, i * (90 + PANEL_GAP) : (i + 1) * (90 + PANEL_GAP)]
    for i in (0, 1):
        assert (panel(with_psnr, i) < 128).sum() > (panel(plain, i) < 128).sum()
    np.testing.assert_array_equal(panel(with_psnr, 2), panel(plain, 2))
    np.testing.assert_array_equal(with_psnr[LABEL_HEIGHT:], plain[LABEL_HEIGHT:])


def test_default_crop_finds_the_detailed_window(tmp_path):
    gt = np.full((300, 260, 3), 0.5, dtype=np.float32)
    gt[200:260, 30:90] = np.random.default_rng(1).random((60, 60, 3))
    top, left, height, width = default_crop(gt, 128)
    assert (height, width) == (128, 128)
    assert top <= 200 and top + 128 >= 260 and left <= 30 and left + 128 >= 90
    big = np.full((400, 420, 3), 0.5, dtype=np.float32)
    big[300:360, 330:390] = gt[200:260, 30:90]
    top, left, height, width = default_crop(big)
    assert CROP_SIZE >= 256 and (height, width) == (CROP_SIZE, CROP_SIZE)
    assert top <= 300 and top + CROP_SIZE >= 360 and left <= 330 and left + CROP_SIZE >= 390
    path = tmp_path / "cmp.png"
    assert save_side_by_side(path, big, big, big) == (top, left, CROP_SIZE, CROP_SIZE)
    with Image.open(path) as image:
        assert image.size == (3 * CROP_SIZE + 2 * PANEL_GAP, LABEL_HEIGHT + CROP_SIZE)


def test_default_crop_of_a_small_image_is_the_whole_image():
    assert default_crop(np.zeros((50, 70, 3), dtype=np.uint8)) == (0, 0, 50, 70)


def test_side_by_side_rejects_mismatch(tmp_path):
    bicubic, liif, gt = _images()
    with pytest.raises(ValueError, match="shapes differ"):
        save_side_by_side(tmp_path / "x.png", bicubic[:-1], liif, gt)
    with pytest.raises(ValueError, match="does not fit"):
        save_side_by_side(tmp_path / "x.png", bicubic, liif, gt, crop=(100, 0, 128, 128))


def test_plot_is_a_png_that_names_the_model(tmp_path, monkeypatch):
    path = tmp_path / "plot.png"
    texts = []
    savefig = report.Figure.savefig

    def record(figure, *args, **kwargs):
        texts.extend(t.get_text() for ax in figure.axes for t in (ax.title, *ax.get_legend().get_texts()))
        return savefig(figure, *args, **kwargs)

    monkeypatch.setattr(report.Figure, "savefig", record)
    plot_psnr_vs_scale(path, aggregate(RESULTS), "run1 (EDSR-baseline 4x32, MLP 128x2)")
    assert texts.count("run1 (EDSR-baseline 4x32, MLP 128x2)") == 2 and "bicubic" in texts  # title and legend
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (500, 350)


def test_bicubic_upsample_shape_and_range():
    lr = np.random.default_rng(2).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    up = bicubic_upsample(lr, (36, 30))
    assert up.shape == (36, 30, 3) and up.dtype == np.float32
    assert up.min() >= 0 and up.max() <= 1
    np.testing.assert_array_equal(bicubic_upsample(lr.astype(np.float32) / 255, (36, 30)), up)


def test_bicubic_resize_matches_the_official_resize_fn():
    data = reference.arrays("pil_bicubic_resize")
    for i in range(4):
        hr, lr = data[f"hr_{i}"], data[f"lr_{i}"]
        np.testing.assert_array_equal(np.round(bicubic_upsample(hr, lr.shape[:2]) * 255), lr)


@pytest.mark.parametrize(
    "platform, kind, slug",
    [
        ("gpu", "NVIDIA H100 80GB HBM3", "h100"),
        ("gpu", "NVIDIA H200", "h200"),
        ("tpu", "TPU v5 lite", "tpu_v5_lite"),
        ("cpu", "cpu", "cpu"),
    ],
)
def test_device_slug_names_result_files(platform, kind, slug):
    assert report.device_slug(platform, kind) == slug


def test_format_comparison_puts_models_side_by_side_over_one_bicubic_column():
    other = [ImageResult("a.png", 2, 31.0, 30.0), ImageResult("a.png", 4, 25.0, 26.0)]
    header, *rows = cells(report.format_comparison({"mine": aggregate(other), "shipped": aggregate(other[::-1])}))
    assert [h.split(" (")[0] for h in header] == ["scale", "bicubic", "mine", "gain", "shipped", "gain"]
    assert [r[0] for r in rows] == ["x2", "x4"]  # the first model's order
    assert [[float(c) for c in r[1:]] for r in rows] == [[30, 31, 1, 31, 1], [26, 25, -1, 25, -1]]


def test_verdict_says_plainly_where_the_run_stands_against_bicubic():
    rows = lambda *gains: [report.ScaleResult(s, 30 + g, 30, 2) for s, g in zip((2, 3, 4), gains)]
    above = report.verdict(rows(0.5, 0.2, 0.0), 900, 1000)
    assert "BELOW" not in above and "+0.23 dB" in above and "900 steps" in above  # the mean gain

    short = report.verdict(rows(-1.5, 0.1, -0.25), 100, 3000, eta="14m10s")
    assert "BELOW BICUBIC" in short
    assert "x2 (-1.50 dB)" in short and "x4 (-0.25 dB)" in short and "x3" not in short  # only the scales below
    assert "3%" in short and "14m10s" in short and "2900 more steps" in short
    assert "--config.num_steps=3000" in short  # the recipe's length continues it

    done = report.verdict(rows(-0.1, 0.1, 0.1), 3000, 3000)
    assert "x2 (-0.10 dB)" in done and "--config.num_steps=6000" in done and "%" not in done
    past = report.verdict(rows(-0.1, 0.1, 0.1), 6000, 3000)
    assert "--config.num_steps=12000" in past and "past the 3000" in past
