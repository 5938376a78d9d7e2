"""Images are opened only as PNG, JPEG, BMP, TIFF or WebP, up to a pixel limit checked from the
header, and without EXIF rotation (as the official loader)."""

import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from liif_jax.data import imaging
from liif_jax.data.imaging import ImageError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels in a few dozen bytes (no pixel data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


GS_CHECK = r"""
import sys
from PIL import Image
from liif_jax.data import imaging
try:
    imaging.load_rgb(sys.argv[1])
except imaging.ImageError as err:
    print("refused:", err)
if sys.argv[2] == "plain":  # the control: what PIL alone does with the same file
    try:
        Image.open(sys.argv[1]).load()
    except Exception as err:
        print("pil:", type(err).__name__)
"""


def test_a_disguised_eps_never_starts_ghostscript(tmp_path):
    """An EPS named .png is refused, and a fake `gs` first on PATH never runs; the control run shows
    that PIL alone would have run it."""
    evil = tmp_path / "photo.png"
    Image.new("RGB", (8, 8), "red").save(evil, "EPS")
    bin_dir, marker = tmp_path / "bin", tmp_path / "gs_ran"
    bin_dir.mkdir()
    (bin_dir / "gs").write_text(f"#!/bin/sh\necho ran >> {marker}\nexit 0\n")
    (bin_dir / "gs").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])),
    }
    run = lambda mode: subprocess.run(
        [sys.executable, "-c", GS_CHECK, str(evil), mode], env=env, capture_output=True, text=True, timeout=60
    )
    ours = run("ours")
    assert "refused: cannot read image" in ours.stdout and "PNG, JPEG, BMP, TIFF or WebP" in ours.stdout, ours.stderr
    assert not marker.exists()
    control = run("plain")
    assert "pil:" in control.stdout and marker.exists()


def test_pixel_limit_is_checked_from_the_header(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(100_000, 100_000))  # 10^10 pixels declared in 57 bytes
    with pytest.raises(
        ImageError,
        match=r"bomb\.png' is 100000x100000 = 10000000000 pixels, over the limit of 134217728; "
        r"raise it with --max-pixels",
    ):
        imaging.load_rgb(bomb)
    with pytest.raises(ImageError, match="over the limit"):
        imaging.read_size(bomb)

    Image.fromarray(np.zeros((50, 100, 3), np.uint8)).save(tmp_path / "small.png")
    monkeypatch.setattr(imaging, "_max_pixels", 4999)
    with pytest.raises(ImageError, match="50x100 = 5000 pixels, over the limit of 4999"):
        imaging.load_rgb(tmp_path / "small.png")
    imaging.set_max_pixels(5000)
    assert imaging.load_rgb(tmp_path / "small.png").shape == (50, 100, 3)
    with pytest.raises(ValueError, match="--max-pixels must be a positive integer"):
        imaging.set_max_pixels(0)


def test_a_raised_limit_goes_past_pils_own_bomb_check(tmp_path, monkeypatch):
    big = tmp_path / "big.png"
    big.write_bytes(_png_header(20_000, 10_000))  # 2e8 pixels: PIL alone refuses above 1.79e8
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # both restored after the test
    monkeypatch.setattr(imaging, "_max_pixels", imaging.DEFAULT_MAX_PIXELS)
    with pytest.raises(imaging.ImageError, match="--max-pixels"):
        imaging.read_size(big)
    imaging.set_max_pixels(300_000_000)
    assert imaging.read_size(big) == (10_000, 20_000)


def test_images_opened_by_many_threads_leave_pils_limit_as_it_was(tmp_path, monkeypatch):
    """Data pipelines open images on several threads at once; PIL's global limit must survive that."""
    import concurrent.futures

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    before = Image.MAX_IMAGE_PIXELS
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: imaging.load_rgb(tmp_path / "a.png"), range(400)))
    assert before == Image.MAX_IMAGE_PIXELS


def test_exif_orientation_is_not_applied_as_in_the_official_loader(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (16, 32, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "rotated.jpg", exif=exif, quality=100)
    with Image.open(tmp_path / "rotated.jpg") as img:
        assert ImageOps.exif_transpose(img).size == (16, 32)  # the tag is there: a viewer would rotate
    assert imaging.load_rgb(tmp_path / "rotated.jpg").shape == (16, 32, 3)


def test_webp_and_tiff_load_and_folders_list_them(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.webp", lossless=True)
    Image.fromarray(pixels).save(tmp_path / "b.tif")
    for name in ("a.webp", "b.tif"):
        np.testing.assert_array_equal(imaging.load_rgb(tmp_path / name), pixels)
    assert [p.name for p in imaging.list_images(tmp_path)] == ["a.webp", "b.tif"]
