"""The official training wrappers (`datasets/wrappers.py`) as grain random transforms.

`RandomScaleDownsample` (`sr-implicit-downsampled`), `PairedRandomCrop` (`sr-implicit-paired`) and
`UniformVariedResize` (`sr-implicit-uniform-varied`), with the official defaults. Each returns
float32 `inp` (h, w, 3) and `gt` (Q, 3) already normalised to [-1, 1] (the official `data_norm`),
`coord` and `cell` (Q, 2), and the scale. Randomness comes only from the generator they are given.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import grain
import numpy as np

from liif_jax.data.degradations import Degrade
from liif_jax.data.imaging import ImageError, downsample, normalize, resize_bicubic, to_float01
from liif_jax.data.sources import Element
from liif_jax.models.coords import coord_seq, make_cell, make_coord

Batch = dict[str, np.ndarray]


def _augment(images: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The official flips, each p=0.5, the same for all images: H axis, W axis, then H<->W."""
    hflip, vflip, dflip = rng.random(3) < 0.5
    out = []
    for x in images:
        x = x[::-1] if hflip else x
        x = x[:, ::-1] if vflip else x
        out.append(x.transpose(1, 0, 2) if dflip else x)
    return out


def _pixel_samples(
    lr: np.ndarray,
    hr: np.ndarray,
    sample_q: int | None,
    scale: float,
    rng: np.random.Generator,
    bicubic: bool = False,
) -> Batch:
    """The official `to_pixel_samples` + query sampling without replacement + cells, normalised.
    With `bicubic`, also the bicubic upsampling of the input at the same queries (`bicubic`), the
    baseline that validation reports beside the model."""
    h, w = hr.shape[:2]
    rgb = hr.reshape(-1, 3)
    up = resize_bicubic(np.ascontiguousarray(lr), (h, w)).reshape(-1, 3) if bicubic else None
    if sample_q is None:
        coord = make_coord((h, w))
    else:
        if sample_q > h * w:
            raise ImageError(f"cannot sample {sample_q} query pixels from a {h}x{w} HR image; lower sample_q")
        idx = rng.choice(h * w, sample_q, replace=False)
        # make_coord's values at the sampled pixels only, without the whole grid
        coord = np.stack([coord_seq(h)[idx // w], coord_seq(w)[idx % w]], axis=-1)
        rgb = rgb[idx]
        up = None if up is None else up[idx]
    out = {
        "inp": normalize(to_float01(lr)),
        "coord": coord,
        "cell": make_cell((h, w), len(coord)),
        "gt": normalize(to_float01(rgb)),
        "scale": np.float32(scale),
    }
    return out if up is None else {**out, "bicubic": normalize(to_float01(up))}


class RandomScaleDownsample(grain.transforms.RandomMap):
    """The official `sr-implicit-downsampled`: random scale, HR crop, bicubic LR, queries.

    s ~ U(scale_min, scale_max); an HR square of side round(inp_size * s) at a uniform position is
    resized (PIL bicubic) to inp_size for the input. With `inp_size=None` (evaluation) the whole
    image is used: LR side floor(H / s + 1e-9), HR cropped to round(h_lr * s), every pixel queried
    when `sample_q` is None. Unlike the official code, an image smaller than the largest possible
    crop (round(inp_size * scale_max)) is rejected whatever s was drawn, so the error is found the
    first time the image is used rather than at a rare large s. Defaults are the official ones
    (whole image, scale_max = scale_min, no flips, every pixel), as for every wrapper here.
    `degrade` (`liif_jax.data.degradations`, the config's `data.train.degradation`) makes the
    input of a crop from its HR crop instead of the bicubic resize, with the same generator.
    """

    def __init__(
        self,
        inp_size: int | None = None,
        scale_min: float = 1.0,
        scale_max: float | None = None,
        augment: bool = False,
        sample_q: int | None = None,
        degrade: Degrade | None = None,
    ):
        scale_max = scale_min if scale_max is None else scale_max
        if not 0 < scale_min <= scale_max:
            raise ValueError(f"need 0 < scale_min <= scale_max, got {scale_min}, {scale_max}")
        if inp_size is not None and sample_q is not None and round(inp_size * scale_min) ** 2 < sample_q:
            raise ValueError(
                f"sample_q={sample_q} exceeds the {round(inp_size * scale_min)}^2 pixels of the smallest "
                f"HR crop (inp_size={inp_size}, scale_min={scale_min})"
            )
        self.inp_size, self.scale_min, self.scale_max = inp_size, scale_min, scale_max
        self.augment, self.sample_q, self.degrade = augment, sample_q, degrade
        self.bicubic_reference = False  # validation sets it: `_pixel_samples`' `bicubic`

    def random_map(self, img: np.ndarray, rng: np.random.Generator) -> Batch:
        s = rng.uniform(self.scale_min, self.scale_max)
        lr, hr = downsample(img, s) if self.inp_size is None else self._crop(img, s, rng)
        if self.augment:
            lr, hr = _augment([lr, hr], rng)
        return _pixel_samples(lr, hr, self.sample_q, s, rng, self.bicubic_reference)

    def _crop(self, img: np.ndarray, s: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        h, w = img.shape[:2]
        largest = round(self.inp_size * self.scale_max)
        if min(h, w) < largest:
            raise ImageError(
                f"image of {h}x{w} pixels is smaller than the largest HR crop {largest}x{largest} "
                f"(inp_size {self.inp_size} x scale_max {self.scale_max}); use a smaller scale_max "
                "or inp_size, or remove the image"
            )
        w_hr = round(self.inp_size * s)
        x0 = rng.integers(0, h - w_hr, endpoint=True)
        y0 = rng.integers(0, w - w_hr, endpoint=True)
        hr = img[x0 : x0 + w_hr, y0 : y0 + w_hr]
        size = (self.inp_size, self.inp_size)
        return (resize_bicubic(hr, size) if self.degrade is None else self.degrade(hr, size, rng)), hr


class PairedRandomCrop(grain.transforms.RandomMap):
    """The official `sr-implicit-paired`: aligned crops of a given {'lr', 'hr'} pair.

    The integer scale is s = H_hr // H_lr; the LR crop of side inp_size at (x0, y0) goes with the
    HR crop of side inp_size * s at (x0 * s, y0 * s). With `inp_size=None` the whole LR image is
    used and the HR image is cropped to (h_lr * s, w_lr * s).
    """

    def __init__(self, inp_size: int | None = None, augment: bool = False, sample_q: int | None = None):
        self.inp_size, self.augment, self.sample_q = inp_size, augment, sample_q
        self.bicubic_reference = False  # validation sets it: `_pixel_samples`' `bicubic`

    def random_map(self, pair: dict[str, np.ndarray], rng: np.random.Generator) -> Batch:
        lr, hr = pair["lr"], pair["hr"]
        (h_lr, w_lr), (h_hr, w_hr) = lr.shape[:2], hr.shape[:2]
        s = h_hr // h_lr
        if s < 1 or w_hr < w_lr * s:
            raise ImageError(f"HR image {h_hr}x{w_hr} is not an integer upscaling of LR image {h_lr}x{w_lr}")
        if self.inp_size is None:
            hr = hr[: h_lr * s, : w_lr * s]
        else:
            n = self.inp_size
            if min(h_lr, w_lr) < n:
                raise ImageError(
                    f"LR image of {h_lr}x{w_lr} pixels is smaller than the {n}x{n} crop; use a smaller inp_size"
                )
            x0 = rng.integers(0, h_lr - n, endpoint=True)
            y0 = rng.integers(0, w_lr - n, endpoint=True)
            lr = lr[x0 : x0 + n, y0 : y0 + n]
            hr = hr[x0 * s : (x0 + n) * s, y0 * s : (y0 + n) * s]
        if self.augment:
            lr, hr = _augment([lr, hr], rng)
        return _pixel_samples(lr, hr, self.sample_q, s, rng, self.bicubic_reference)


class PositionalRandomMap(grain.transforms.RandomMap):
    """A transform that also depends on where its element is in the source: `position` is
    index / (len - 1), from 0 (first element) to 1 (last), as the official wrapper that reads
    its own index. The pipelines here (`make_train_dataset`, `make_val_dataset`) provide it."""

    @abc.abstractmethod
    def positional_map(self, element: Element, position: float, rng: np.random.Generator) -> Batch: ...

    def random_map(self, element: Element, rng: np.random.Generator) -> Batch:
        raise TypeError(
            f"{type(self).__name__} depends on each element's position in its source: apply it through "
            "make_train_dataset / make_val_dataset, or call positional_map(element, position, rng)"
        )


def _shorter_side_to(shape: tuple[int, ...], size: int) -> tuple[int, int]:
    """torchvision `Resize(size)`: the shorter side becomes `size`, the longer keeps the aspect."""
    h, w = shape[:2]
    return (size, int(size * w / h)) if h <= w else (int(size * h / w), size)


class UniformVariedResize(PositionalRandomMap):
    """The official `sr-implicit-uniform-varied` (the CelebA-HQ configs): the whole LR image is the
    input and the HR image is resized (PIL bicubic) so that its side grows linearly with the
    element's position in the source, from `size_min` (first) to `size_max` (last), so every
    scale between the two is trained. Then an optional horizontal flip of both images, an optional
    resize of the HR image to `gt_resize`, and `sample_q` query pixels (all when None).
    """

    def __init__(
        self,
        size_min: int,
        size_max: int | None = None,
        augment: bool = False,
        gt_resize: int | None = None,
        sample_q: int | None = None,
    ):
        size_max = size_min if size_max is None else size_max
        if not 0 < size_min <= size_max:
            raise ValueError(f"need 0 < size_min <= size_max, got {size_min}, {size_max}")
        if sample_q is not None and (gt_resize or size_min) ** 2 < sample_q:
            raise ValueError(
                f"sample_q={sample_q} exceeds the pixels of the smallest HR image ({gt_resize or size_min}^2)"
            )
        self.size_min, self.size_max, self.augment = size_min, size_max, augment
        self.gt_resize, self.sample_q = gt_resize, sample_q

    def positional_map(self, pair: dict[str, np.ndarray], position: float, rng: np.random.Generator) -> Batch:
        lr, hr = pair["lr"], pair["hr"]
        side = round(self.size_min + (self.size_max - self.size_min) * position)
        hr = resize_bicubic(hr, _shorter_side_to(hr.shape, side))
        if self.augment and rng.random() < 0.5:
            lr, hr = lr[:, ::-1], hr[:, ::-1]
        if self.gt_resize is not None:
            hr = resize_bicubic(np.ascontiguousarray(hr), _shorter_side_to(hr.shape, self.gt_resize))
        return _pixel_samples(lr, hr, self.sample_q, hr.shape[0] / lr.shape[0], rng)
