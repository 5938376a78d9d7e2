"""Image I/O and resizing: bit-exact with the official `resize_fn` and PIL's `convert('RGB')`."""

import io

import numpy as np
import pytest
from PIL import Image

from liif_jax.data import imaging
from liif_jax.data.imaging import ImageError

import reference


def test_resize_matches_official_reference():
    ref = reference.arrays("pil_bicubic_resize")
    pairs = reference.manifest()["pil_bicubic_resize"]["pairs"]
    assert len(pairs) == 4
    for i, pair in enumerate(pairs):
        hr, lr = ref[f"hr_{i}"], ref[f"lr_{i}"]
        assert hr.shape[:2] == tuple(pair["hr"]) and lr.shape[:2] == tuple(pair["lr"])
        out = imaging.resize_bicubic(hr, tuple(pair["lr"]))
        assert out.dtype == np.uint8
        np.testing.assert_array_equal(out, lr, err_msg=f"pair {i}: {pair}")


def test_official_float_round_trip_is_identity_so_uint8_resize_matches():
    """The official resize_fn goes uint8 -> float32 k/255 (ToTensor) -> uint8(x * 255) (ToPILImage,
    truncating). If truncation ever turned k into k - 1, resizing the uint8 image directly would be
    wrong; check every value, and a resize of an image holding all of them."""
    k = np.arange(256).astype(np.uint8)
    official_u8 = (imaging.to_float01(k) * np.float32(255)).astype(np.uint8)
    np.testing.assert_array_equal(official_u8, k)

    img = np.random.default_rng(0).integers(0, 256, (64, 60, 3), dtype=np.uint8)
    img.reshape(-1)[:256] = k
    emulated = (imaging.to_float01(img) * np.float32(255)).astype(np.uint8)
    expected = np.asarray(Image.fromarray(emulated).resize((23, 17), Image.BICUBIC))
    np.testing.assert_array_equal(imaging.resize_bicubic(img, (17, 23)), expected)


def test_resize_size_is_height_width():
    img = np.zeros((40, 30, 3), np.uint8)
    assert imaging.resize_bicubic(img, (10, 7)).shape == (10, 7, 3)


def _save(img: Image.Image, path) -> str:
    img.save(path)
    return str(path)


def test_load_rgb_converts_like_pil(tmp_path):
    gray = np.array([[0, 17], [128, 255]], np.uint8)
    out = imaging.load_rgb(_save(Image.fromarray(gray, "L"), tmp_path / "gray.png"))
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=-1))

    rgba = np.array([[[10, 20, 30, 0], [40, 50, 60, 255]]], np.uint8)
    out = imaging.load_rgb(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "rgba.png"))
    np.testing.assert_array_equal(out, rgba[..., :3])  # alpha dropped, not composited

    pal = Image.fromarray(np.array([[0, 1], [1, 2]], np.uint8), "P")
    pal.putpalette([255, 0, 0, 0, 255, 0, 1, 2, 3] + [0] * (256 * 3 - 9))
    out = imaging.load_rgb(_save(pal, tmp_path / "pal.png"))
    np.testing.assert_array_equal(out[1, 1], [1, 2, 3])
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])

    deep = np.array([[0, 100, 255], [256, 4000, 65535]], np.uint16)
    path = _save(Image.fromarray(deep), tmp_path / "deep.png")
    assert Image.open(path).mode == "I;16"
    out = imaging.load_rgb(path)
    np.testing.assert_array_equal(out[..., 0], [[0, 100, 255], [255, 255, 255]])  # PIL clips, no rescale
    np.testing.assert_array_equal(out, np.asarray(Image.open(path).convert("RGB")))


def test_load_rgb_errors_name_the_file(tmp_path):
    with pytest.raises(ImageError, match="missing.png") as missing:
        imaging.load_rgb(tmp_path / "missing.png")
    assert "no such image file" in str(missing.value) and "folder" not in str(
        missing.value
    )  # one file: no folder advice

    (tmp_path / "garbage.png").write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match="garbage.png"):
        imaging.load_rgb(tmp_path / "garbage.png")

    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    (tmp_path / "truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match="truncated.png") as info:
        imaging.load_rgb(tmp_path / "truncated.png")
    assert isinstance(info.value, ValueError)


def test_float_and_normalisation():
    k = np.array([0, 1, 128, 254, 255], np.uint8)
    x = imaging.to_float01(k)
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, np.float32([0, 1, 128, 254, 255]) / np.float32(255))
    y = imaging.normalize(x)
    assert y.dtype == np.float32
    assert y[0] == -1.0 and y[-1] == 1.0
    np.testing.assert_array_equal(y, (x - np.float32(0.5)) / np.float32(0.5))
    back = imaging.denormalize(y)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, x, atol=1e-7)


def test_list_images(tmp_path):
    for name in ["b.png", "a.JPG", "c.bmp", "d.tiff", "notes.txt", ".hidden.png"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in imaging.list_images(tmp_path)] == ["a.JPG", "b.png", "c.bmp", "d.tiff"]

    with pytest.raises(ImageError, match="nowhere"):
        imaging.list_images(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="empty"):
        imaging.list_images(tmp_path / "empty")
