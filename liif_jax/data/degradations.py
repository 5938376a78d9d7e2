"""Real-world degradations of low-resolution inputs, on the host (numpy, scipy, PIL).

Bicubic-trained models fail on real photographs, whose pixels went through optics, sensor noise,
resizing and JPEG. `SecondOrder` is Real-ESRGAN's second-order degradation (Wang et al. 2021,
`basicsr/data/degradations.py` and `realesrgan_model.py`): blur (isotropic, anisotropic,
generalized and plateau Gaussian kernels, or a sinc kernel), a random resize, Gaussian or Poisson
noise in colour or grey, and JPEG, twice, then the final resize to the LR size that the
arbitrary-scale wrapper drew (scale x1-x4, continuous) with a sinc filter and JPEG in either order.
Each operation takes the generator it draws from: in the training pipeline that is grain's
per-example generator, so a degraded batch depends only on the seed and its place in the stream.

`DEGRADATIONS` names them for the config's `data.train.degradation` (`datasets.make_degradation`);
`named(text)` reads the evaluation's `--degrade jpeg:60` / `realesrgan:SEED`.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image
from scipy import signal, special

from liif_jax.data.imaging import resize_bicubic

# A degradation: (uint8 HR crop, LR size (h, w), generator) -> uint8 LR image of that size.
Degrade = Callable[[np.ndarray, tuple[int, int], np.random.Generator], np.ndarray]

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = {
    "area": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    xx, yy = np.meshgrid(r, r)
    return xx, yy


def _inverse_covariance(sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    cov = rot @ np.diag([sigma_x**2, sigma_y**2]) @ rot.T
    return np.linalg.inv(cov)


def _quadratic(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """x^T Sigma^-1 x at each kernel position (x the offset from the centre, (col, row))."""
    xx, yy = _grid(size)
    inv = _inverse_covariance(sigma_x, sigma_y, theta)
    return inv[0, 0] * xx**2 + (inv[0, 1] + inv[1, 0]) * xx * yy + inv[1, 1] * yy**2


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """The (anisotropic) Gaussian exp(-x^T Sigma^-1 x / 2), normalised to sum 1."""
    k = np.exp(-0.5 * _quadratic(size, sigma_x, sigma_y, theta))
    return k / k.sum()


def generalized_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> np.ndarray:
    """exp(-(x^T Sigma^-1 x)^beta / 2): beta 1 is the Gaussian, below it heavier tails, above flatter tops."""
    k = np.exp(-0.5 * _quadratic(size, sigma_x, sigma_y, theta) ** beta)
    return k / k.sum()


def plateau_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> np.ndarray:
    """1 / (1 + (x^T Sigma^-1 x)^beta): a flat top with a long tail."""
    k = 1 / (1 + _quadratic(size, sigma_x, sigma_y, theta) ** beta)
    return k / k.sum()


def sinc_kernel(size: int, cutoff: float) -> np.ndarray:
    """The ideal circular low-pass filter of `cutoff` radians per pixel, truncated to size x size:
    ringing and overshoot, as sharpened and resampled photographs show."""
    xx, yy = _grid(size)
    r = np.hypot(xx, yy)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = cutoff * special.j1(cutoff * r) / (2 * np.pi * r)
    k[r == 0] = cutoff**2 / (4 * np.pi)
    return k / k.sum()


def filter2d(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlation of a float (H, W, C) image with an odd square kernel, edges mirrored without
    repeating the edge pixel (OpenCV's default BORDER_REFLECT_101, as Real-ESRGAN's filter2D); by
    FFT, since kernels reach 21 x 21."""
    r = kernel.shape[0] // 2
    padded = np.pad(img, ((r, r), (r, r), (0, 0)), mode="reflect")
    flipped = kernel[::-1, ::-1, None].astype(np.float32)
    return signal.fftconvolve(padded, flipped, mode="valid", axes=(0, 1)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Operations on float32 RGB images in [0, 1]
# ---------------------------------------------------------------------------------------------


def resize(img: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """PIL resize of a float image to size (h, w), channel by channel in 32-bit float (no rounding)."""
    h, w = size
    channels = [np.asarray(Image.fromarray(img[:, :, c]).resize((w, h), RESIZE_MODES[mode])) for c in range(3)]
    return np.stack(channels, axis=-1)


def gaussian_noise(img: np.ndarray, sigma: float, gray: bool, rng: np.random.Generator) -> np.ndarray:
    """Adds N(0, sigma / 255) noise, the same on every channel when `gray`."""
    shape = img.shape[:2] + (1,) if gray else img.shape
    return img + (rng.standard_normal(shape) * (sigma / 255)).astype(np.float32)


def poisson_noise(img: np.ndarray, scale: float, gray: bool, rng: np.random.Generator) -> np.ndarray:
    """Adds `scale` x shot noise: Poisson counts at 2^ceil(log2(#levels)) levels of the (grey) image,
    as Real-ESRGAN's `generate_poisson_noise`."""
    base = img @ np.array([0.299, 0.587, 0.114], np.float32) if gray else img
    base = np.clip(np.round(base * 255), 0, 255) / 255
    levels = 2 ** math.ceil(math.log2(max(len(np.unique(base)), 2)))
    noise = rng.poisson(base * levels) / levels - base
    return img + (scale * noise[..., None] if gray else scale * noise).astype(np.float32)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """JPEG compression at `quality` (PIL/libjpeg, 4:2:0 chroma as cameras and the web), decoded."""
    u8 = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(u8).save(buffer, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(buffer).convert("RGB")).astype(np.float32) / 255


# ---------------------------------------------------------------------------------------------
# Random draws of Real-ESRGAN's settings
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Stage:
    """One order of the degradation: its blur, resize and noise ranges (Real-ESRGAN's values)."""

    kernel_prob: Sequence[float] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)  # over KERNEL_TYPES
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag: tuple[float, float] = (0.5, 4.0)
    betap: tuple[float, float] = (1.0, 2.0)
    sinc_prob: float = 0.1
    blur_prob: float = 1.0
    resize_prob: Sequence[float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[float, float] = (30.0, 95.0)


SECOND_STAGE = Stage(
    blur_sigma=(0.2, 1.5),
    sinc_prob=0.1,
    blur_prob=0.8,
    resize_prob=(0.3, 0.4, 0.3),
    resize_range=(0.3, 1.2),
    noise_range=(1.0, 25.0),
    poisson_scale_range=(0.05, 2.5),
)


def random_kernel(stage: Stage, rng: np.random.Generator) -> np.ndarray:
    """A blur kernel of odd size 7-21 drawn as Real-ESRGAN draws them."""
    size = int(rng.choice(np.arange(7, 22, 2)))
    if rng.random() < stage.sinc_prob:
        cutoff = rng.uniform(np.pi / 3, np.pi) if size < 13 else rng.uniform(np.pi / 5, np.pi)
        return sinc_kernel(size, cutoff)
    kind = KERNEL_TYPES[rng.choice(len(KERNEL_TYPES), p=np.asarray(stage.kernel_prob) / sum(stage.kernel_prob))]
    sigma_x = rng.uniform(*stage.blur_sigma)
    if kind.endswith("aniso"):
        sigma_y, theta = rng.uniform(*stage.blur_sigma), rng.uniform(-np.pi, np.pi)
    else:
        sigma_y, theta = sigma_x, 0.0
    if kind.startswith("generalized"):
        beta = rng.uniform(stage.betag[0], 1) if rng.random() < 0.5 else rng.uniform(1, stage.betag[1])
        return generalized_kernel(size, sigma_x, sigma_y, theta, beta)
    if kind.startswith("plateau"):
        beta = rng.uniform(stage.betap[0], 1) if rng.random() < 0.5 else rng.uniform(1, stage.betap[1])
        return plateau_kernel(size, sigma_x, sigma_y, theta, beta)
    return gaussian_kernel(size, sigma_x, sigma_y, theta)


def random_noise(img: np.ndarray, stage: Stage, rng: np.random.Generator) -> np.ndarray:
    gray = rng.random() < stage.gray_noise_prob
    if rng.random() < stage.gaussian_noise_prob:
        return gaussian_noise(img, rng.uniform(*stage.noise_range), gray, rng)
    return poisson_noise(img, rng.uniform(*stage.poisson_scale_range), gray, rng)


def _random_mode(rng: np.random.Generator) -> str:
    return str(rng.choice(list(RESIZE_MODES)))


def _scaled(size: tuple[int, int], factor: float) -> tuple[int, int]:
    return max(1, round(size[0] * factor)), max(1, round(size[1] * factor))


@dataclasses.dataclass(frozen=True)
class SecondOrder:
    """Real-ESRGAN's second-order degradation ending at any LR size (`Degrade`).

    With probability `clean_prob` an input is the plain bicubic LR instead, so that the model keeps
    its accuracy on clean images; `second_order_prob` is the chance of the second stage.
    """

    clean_prob: float = 0.0
    second_order_prob: float = 0.8
    first: Stage = Stage()
    second: Stage = SECOND_STAGE
    final_sinc_prob: float = 0.8

    def __call__(self, hr: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        if rng.random() < self.clean_prob:
            return resize_bicubic(np.ascontiguousarray(hr), size)
        img = hr.astype(np.float32) / 255
        img = self._stage(img, self.first, hr.shape[:2], rng)
        if rng.random() < self.second_order_prob:
            img = self._stage(img, self.second, size, rng, jpeg_last=False)
        mode = _random_mode(rng)
        sinc = None
        if rng.random() < self.final_sinc_prob:
            sinc = sinc_kernel(int(rng.choice([7, 9, 11])), rng.uniform(np.pi / 3, np.pi))

        def final(x: np.ndarray) -> np.ndarray:
            x = resize(x, size, mode)
            return x if sinc is None else filter2d(x, sinc)

        quality = rng.uniform(*self.second.jpeg_range)
        if rng.random() < 0.5:
            img = jpeg(np.clip(final(img), 0, 1), quality)
        else:
            img = final(jpeg(np.clip(img, 0, 1), quality))
        return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)

    @staticmethod
    def _stage(
        img: np.ndarray, stage: Stage, reference: tuple[int, int], rng: np.random.Generator, jpeg_last: bool = True
    ) -> np.ndarray:
        """Blur, resize relative to `reference` (the HR size, then the LR size), noise, JPEG."""
        if rng.random() < stage.blur_prob:
            img = filter2d(img, random_kernel(stage, rng))
        kind = rng.choice(3, p=np.asarray(stage.resize_prob) / sum(stage.resize_prob))
        factor = (rng.uniform(1, stage.resize_range[1]), rng.uniform(stage.resize_range[0], 1), 1.0)[kind]
        img = resize(img, _scaled(reference, factor), _random_mode(rng))
        img = random_noise(img, stage, rng)
        if jpeg_last:
            img = jpeg(np.clip(img, 0, 1), rng.uniform(*stage.jpeg_range))
        return img


@dataclasses.dataclass(frozen=True)
class Jpeg:
    """The bicubic LR saved as JPEG: the commonest degradation of real photographs. `quality` is one
    quality or (low, high), drawn per input; `clean_prob` is the share of inputs left as they are."""

    quality: int | Sequence[int]
    clean_prob: float = 0.0

    def __call__(self, hr: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        lr = resize_bicubic(np.ascontiguousarray(hr), size)
        if self.clean_prob and rng.random() < self.clean_prob:
            return lr
        quality = self.quality if isinstance(self.quality, int) else rng.integers(*self.quality, endpoint=True)
        return np.clip(np.round(jpeg(lr.astype(np.float32) / 255, int(quality)) * 255), 0, 255).astype(np.uint8)


DEGRADATIONS: dict[str, Callable[..., Degrade]] = {"realesrgan": SecondOrder, "jpeg": Jpeg}


def named(text: str) -> tuple[Degrade, int]:
    """`--degrade jpeg:Q` (quality 1-95) or `realesrgan:SEED`: the degradation and its seed."""
    name, _, value = text.partition(":")
    if name not in DEGRADATIONS or not value.isdigit():
        raise ValueError(
            f"--degrade {text!r}: expected jpeg:QUALITY (e.g. jpeg:60) or realesrgan:SEED (e.g. realesrgan:0)"
        )
    if name == "jpeg":
        if not 1 <= int(value) <= 95:
            raise ValueError(f"--degrade {text!r}: JPEG quality must be 1-95")
        return Jpeg(int(value)), 0
    return SecondOrder(), int(value)
