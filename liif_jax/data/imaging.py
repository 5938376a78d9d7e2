"""Image I/O and resizing on the host, bit-compatible with the official LIIF data code.

The official code decodes with `PIL.Image.open(path).convert('RGB')`, works on float tensors
`k / 255`, and makes low-resolution inputs with `resize_fn` (torchvision `ToPILImage` -> PIL
`Image.BICUBIC` resize -> `ToTensor`). We keep images as uint8 until the last step: the float
round trip `uint8(float32(k / 255) * 255)` inside `ToPILImage` is the identity for every uint8
value (checked in the tests), so resizing the uint8 image with PIL gives the same pixels.

Files are opened only as the formats in `FORMATS`, whatever their name says, so that no other PIL
plugin runs (EPS would start Ghostscript), and only up to `max_pixels()` pixels, checked from the
header before decoding. EXIF orientation is not applied, as in the official loader.
"""

from __future__ import annotations

import contextlib
import math
import os
import pathlib
import threading
import warnings
from collections.abc import Iterator

import numpy as np
from PIL import Image

FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
FORMATS_TEXT = "PNG, JPEG, BMP, TIFF or WebP"
DEFAULT_MAX_PIXELS = 1 << 27  # 134 megapixels: a 4K frame at scale 4 fits; 400 MB decoded
_max_pixels = DEFAULT_MAX_PIXELS
_PIL_LIMIT_LOCK = threading.Lock()


class ImageError(ValueError):
    """An image or image folder that cannot be used; the message names it and says what to do."""


def set_max_pixels(limit: int) -> None:
    """The largest image, in pixels, that `load_rgb` and `read_size` accept (the CLIs' --max-pixels)."""
    global _max_pixels
    if type(limit) is not int or limit <= 0:
        raise ValueError(f"--max-pixels must be a positive integer, got {limit!r}")
    _max_pixels = limit
    if Image.MAX_IMAGE_PIXELS is not None:  # PIL's own check (TIFF tiles, while decoding) moves up with it
        Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS, limit)


def max_pixels() -> int:
    return _max_pixels


def check_pixels(h: int, w: int, what: str) -> None:
    """Refuses an image of more than `max_pixels()` pixels, saying how to raise the limit."""
    if h * w > _max_pixels:
        raise ImageError(
            f"{what} is {h}x{w} = {h * w} pixels, over the limit of {_max_pixels}; "
            "raise it with --max-pixels if you mean it"
        )


@contextlib.contextmanager
def _open(path: str | os.PathLike) -> Iterator[Image.Image]:
    """The image, opened as one of FORMATS only, its size checked before anything is decoded."""
    where = os.fspath(path)
    if not os.path.isfile(path):  # one missing file: no advice about folders
        raise ImageError(f"no such image file: {where!r}")
    try:
        with _PIL_LIMIT_LOCK:  # threads open images at once: the swap of PIL's global is never interleaved
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # the header only; checked below
            try:
                opened = Image.open(path, formats=list(FORMATS))
            finally:
                Image.MAX_IMAGE_PIXELS = saved
        with warnings.catch_warnings(), opened as img:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            check_pixels(img.height, img.width, f"image {where!r}")
            yield img
    except ImageError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageError(f"image {where!r}: {err}; raise the limit with --max-pixels if you mean it") from err
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageError(
            f"cannot read image {where!r}: {err}. Check that the file exists and is a complete {FORMATS_TEXT} "
            "image (other formats are refused whatever the file name says); re-extract or replace it."
        ) from err


def in_folder(err: ImageError, path: str | os.PathLike) -> ImageError:
    """`err`, about one image of a folder of them, with the other way out: leaving it out."""
    return ImageError(f"{err} Or remove it from {os.fspath(pathlib.Path(path).parent)!r}.")


def read_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) from the header, checked as `load_rgb` checks it, without decoding the pixels."""
    with _open(path) as img:
        return img.height, img.width


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decodes an image file to uint8 (H, W, 3) with PIL's `convert('RGB')`, as the official loader.

    Gray, palette and RGBA images are converted by PIL (alpha is dropped, not composited); 16-bit
    images are clipped to 255 by PIL, not rescaled; EXIF orientation is ignored, as by the official
    `ToTensor()(Image.open(path).convert('RGB'))`. The full decode happens here so that a truncated
    file fails at this call, naming the file.
    """
    with _open(path) as img:
        img.load()
        return np.asarray(img.convert("RGB"))


def resize_bicubic(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The official `resize_fn`: PIL bicubic resize of a uint8 (H, W, 3) image to `size` = (h, w)."""
    h, w = size
    return np.asarray(Image.fromarray(img).resize((w, h), Image.BICUBIC))


def to_float01(img: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1], as torchvision `ToTensor` (a float32 division by 255)."""
    return img.astype(np.float32) / np.float32(255)


def normalize(x: np.ndarray) -> np.ndarray:
    """[0, 1] -> [-1, 1] with the official data_norm `(x - 0.5) / 0.5`, in float32."""
    return (x - np.float32(0.5)) / np.float32(0.5)


def denormalize(x: np.ndarray) -> np.ndarray:
    """[-1, 1] -> [0, 1], the inverse of `normalize` (`x * 0.5 + 0.5`, as the official test code)."""
    return x * np.float32(0.5) + np.float32(0.5)


def list_images(folder: str | os.PathLike) -> list[pathlib.Path]:
    """Image files directly inside `folder`, sorted by name like the official `sorted(os.listdir)`.

    Unlike the official loader, non-image files (e.g. `.DS_Store`, `readme.txt`) are skipped so
    that they cannot be mistaken for data.
    """
    root = pathlib.Path(folder)
    if not root.is_dir():
        raise ImageError(f"image folder {os.fspath(folder)!r} does not exist or is not a folder")
    files = sorted(
        p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )
    if not files:
        raise ImageError(
            f"image folder {os.fspath(folder)!r} holds no {'/'.join(IMAGE_SUFFIXES)} files; "
            "point it at the folder that directly contains the images"
        )
    return files


def center_crop(img: np.ndarray, side: int) -> np.ndarray:
    """The central side x side window of an (H, W, ...) image (a dimension smaller than side is
    kept whole): a quick look at images too large to evaluate whole on a CPU."""
    img = np.asarray(img)
    top, left = max(0, (img.shape[0] - side) // 2), max(0, (img.shape[1] - side) // 2)
    return img[top : top + side, left : left + side]


def downsample(hr: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(LR, cropped HR) as the official `sr-implicit-downsampled` with `inp_size: None`.

    The LR side is floor(H / s + 1e-9) (the epsilon keeps e.g. 90 / 3 from flooring to 29), the HR
    image is cropped at the top left to round(h_lr * s), and the LR is PIL bicubic of that crop.
    """
    h_lr = math.floor(hr.shape[0] / scale + 1e-9)
    w_lr = math.floor(hr.shape[1] / scale + 1e-9)
    if min(h_lr, w_lr) < 1:
        raise ImageError(f"image of {hr.shape[0]}x{hr.shape[1]} pixels is too small for scale {scale:g}")
    crop = hr[: round(h_lr * scale), : round(w_lr * scale)]
    return resize_bicubic(crop, (h_lr, w_lr)), crop
