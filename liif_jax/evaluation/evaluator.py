"""The evaluation loop as the official `test.py` runs it: PSNR of a model and of bicubic over a set of images.

`evaluate(model, params, source, scales, protocol)` is what the CLI (`liif_jax.evaluate`), the
training loop and a notebook share. A source is any sequence (a `liif_jax.data.sources` source, or a
plain list) of uint8 HR images (H, W, 3), or of {'lr', 'hr'} dicts for given LR inputs. Every
prediction goes through `render.upscale`, tile by tile (`tile` input pixels per side), so memory is
bounded whatever the image size. Models of LTE's code are evaluated as LTE's test.py does: the cell
clamped above x4 (`scale_max`), and with `window` the input padded as its SwinIR evaluation pads it.
"""

from __future__ import annotations

import functools
import math
import os
import pathlib
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from liif_jax import pretrained
from liif_jax.data import degradations
from liif_jax.data.imaging import ImageError, center_crop, downsample, to_float01
from liif_jax.evaluation import metrics, report
from liif_jax.models import Model, describe
from liif_jax.render.render import lte_cell_factor, upscale
from liif_jax.training.writers import ProgressLines, format_duration

PLOT_NAME = "psnr_vs_scale.png"


@dataclass(frozen=True)
class Outcome:
    """One image at one scale: what was fed, rendered and measured, for inspection and tests."""

    lr: np.ndarray  # uint8 (h, w, 3): the model input
    hr: np.ndarray  # uint8 (H, W, 3): the ground truth, cropped to the rendered size
    pred: np.ndarray  # float32 (H, W, 3) in [0, 1]: the LIIF prediction, clamped
    bicubic: np.ndarray  # float32 (H, W, 3) in [0, 1]: the baseline
    psnr: float
    bicubic_psnr: float


def parse_scales(text: str) -> list[float]:
    """'2,3,4' or '2.5' -> scales; each a number >= 1, since the official test path only upsamples."""
    try:
        scales = [float(part) for part in text.split(",")]
    except ValueError:
        scales = []
    if not scales or not all(math.isfinite(s) and s >= 1 for s in scales):
        raise ValueError(f"--scale must be numbers >= 1 separated by commas (e.g. 4 or 2,3,4 or 2.5), got {text!r}")
    return scales


def check_scales(scales: Sequence[float], protocol: metrics.Protocol) -> None:
    """Fails before any work when the protocol cannot measure a scale (div2k/benchmark shave by it)."""
    if not scales:
        raise ValueError("no scales to evaluate")
    for scale in scales:
        if scale < 1:
            raise ValueError(f"scale {scale:g} is below 1; super-resolution scales are >= 1")
        try:
            metrics.shave_for(protocol, scale)
        except ValueError as err:
            raise ValueError(f"{err}; use --protocol plain for non-integer scales") from None


def crop_paired(lr: np.ndarray, hr: np.ndarray, scale: float) -> np.ndarray:
    """The HR image cropped at the top left to LR size x scale, as `sr-implicit-paired` does.

    The official code takes the scale as H_hr // H_lr; we require that (and the same for widths)
    to equal the scale asked for, so a wrong LR folder is an error rather than a silently wrong
    table.
    """
    if scale != int(scale):
        raise ImageError(f"given LR images need an integer scale, got {scale:g}")
    scale = int(scale)
    (h_lr, w_lr), (h_hr, w_hr) = lr.shape[:2], hr.shape[:2]
    if h_hr // h_lr != scale or w_hr // w_lr != scale:
        raise ImageError(
            f"LR image of {h_lr}x{w_lr} pixels does not fit HR image of {h_hr}x{w_hr} pixels at scale "
            f"{scale} (HR size // LR size is {h_hr // h_lr}x{w_hr // w_lr}); check --lr-dir and --scale"
        )
    return hr[: h_lr * scale, : w_lr * scale]


def window_pad(lr: np.ndarray, window: int) -> np.ndarray:
    """LTE's test.py `--window`: the input extended at the bottom and right by its mirror image (edge
    pixel repeated) to the next multiple of the window above its size (a whole window more when it
    is one already), as its SwinIR evaluation does."""
    h, w = lr.shape[:2]
    pad = ((0, (h // window + 1) * window - h), (0, (w // window + 1) * window - w), (0, 0))
    return np.pad(lr, pad, mode="symmetric")


def evaluate_one(
    model: Model,
    params: Any,
    hr: np.ndarray,
    lr: np.ndarray | None,
    scale: float,
    protocol: metrics.Protocol,
    batch_queries: int | None = None,
    tile: int | None = None,
    decoder: str | None = None,
    window: int = 0,
    scale_max: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    degrade: Callable[[np.ndarray, tuple[int, int]], np.ndarray] | None = None,
) -> Outcome:
    """LIIF and bicubic of one uint8 HR image at one scale; `lr=None` makes the LR from `hr`.

    `scale_max`: LTE's cell clamp above that scale; `window`: LTE's padding of the input to a
    multiple of the window (the output rendered for the padded input, then cropped to the HR size).
    `progress`: the render's (`render.render`). `degrade` makes the LR input from the (cropped) HR
    image instead of the bicubic resize (`--degrade`); bicubic and the model both see it.
    """
    if lr is None:
        lr, hr = downsample(hr, scale)
        lr = lr if degrade is None else degrade(hr, lr.shape[:2])
    elif degrade is not None:
        raise ValueError("degraded inputs are made from HR images, not from given LR images")
    else:
        hr = crop_paired(lr, hr, scale)
    factor = lte_cell_factor(scale, scale_max)
    if window:
        if scale != int(scale):
            raise ValueError(
                f"--window needs an integer scale (LTE's test.py renders scale x the padded input), got {scale:g}"
            )
        padded = window_pad(lr, window)
        out_hw = (int(scale) * padded.shape[0], int(scale) * padded.shape[1])
        pred = upscale(
            model,
            params,
            to_float01(padded),
            out_hw,
            batch_queries,
            tile,
            decoder=decoder,
            cell_factor=factor,
            progress=progress,
        )
        pred = pred[: hr.shape[0], : hr.shape[1]]
    else:
        pred = upscale(
            model,
            params,
            to_float01(lr),
            hr.shape[:2],
            batch_queries,
            tile,
            decoder=decoder,
            cell_factor=factor,
            progress=progress,
        )
    bicubic = report.bicubic_upsample(lr, hr.shape[:2])
    gt = to_float01(hr)
    return Outcome(
        lr, hr, pred, bicubic, metrics.psnr(pred, gt, protocol, scale), metrics.psnr(bicubic, gt, protocol, scale)
    )


def evaluate(
    model: Model,
    params: Any,
    source: Sequence[Any],
    scales: Sequence[float],
    protocol: metrics.Protocol,
    batch_queries: int | None = None,
    save_images: str | os.PathLike | None = None,
    progress: bool = True,
    names: Sequence[str] | None = None,
    on_result: Callable[[list[report.ImageResult]], None] | None = None,
    tile: int | None = None,
    decoder: str | None = None,
    window: int = 0,
    scale_max: float | None = None,
    model_name: str = "LIIF",
    degrade: str | None = None,
) -> list[report.ImageResult]:
    """Per-image results of every image of `source` at every scale, image-major.

    Elements of `source` are uint8 HR images (LR made per scale) or {'lr', 'hr'} dicts (given LR,
    one scale). Results are named by `names`, else by `source.describe(i)` when the source has it
    (the `liif_jax.data.sources` sources), else `image<i>`; errors name `source.describe(i)` when present,
    as that names every file involved. `save_images` gets a bicubic / LIIF / ground-truth crop per
    image and scale, and a PSNR-vs-scale plot when there are several scales, naming the model
    `model_name` (see `model_label`). `on_result` gets the
    results so far after each one (the CLI saves them, so that an error on a later image loses nothing).
    `progress` prints a line per result with the time left, and the progress of renders of more than a
    few seconds. `degrade` names a degradation of the LR inputs (`degradations.named`: `jpeg:60`,
    `realesrgan:SEED`), drawn per image and scale from the seed, so every model sees the same inputs.
    """
    check_scales(scales, protocol)
    degradation, seed = degradations.named(degrade) if degrade else (None, 0)
    if batch_queries is not None and batch_queries <= 0:
        raise ValueError(f"batch_queries must be positive, got {batch_queries}")
    if names is not None and len(names) != len(source):
        raise ValueError(f"{len(names)} names for {len(source)} images")
    results: list[report.ImageResult] = []
    total, t0 = len(source) * len(scales), time.perf_counter()
    for i in range(len(source)):
        name, where = _name(source, names, i), _where(source, names, i)
        hr, lr = _split(source[i], where)
        if lr is not None and len(scales) != 1:
            raise ValueError(f"{where}: a given LR image has one scale, but scales {list(scales)} were asked for")
        for scale in scales:
            start = time.perf_counter()
            try:
                lines = ProgressLines(f"  {name} x{scale:g}") if progress else None
                make_lr = None
                if degradation is not None:
                    rng = np.random.default_rng([seed, i, round(scale * 1000)])
                    make_lr = functools.partial(degradation, rng=rng)
                outcome = evaluate_one(
                    model,
                    params,
                    hr,
                    lr,
                    scale,
                    protocol,
                    batch_queries,
                    tile,
                    decoder,
                    window,
                    scale_max,
                    lines,
                    make_lr,
                )
            except ValueError as err:
                raise ImageError(f"{where} at scale {scale:g}: {err}") from err
            results.append(report.ImageResult(name, scale, outcome.psnr, outcome.bicubic_psnr))
            if on_result is not None:
                on_result(results)
            if save_images is not None:
                crop_path = _crop_path(save_images, name, scale)
                report.save_side_by_side(
                    crop_path, outcome.bicubic, outcome.pred, outcome.hr, psnrs=(outcome.bicubic_psnr, outcome.psnr)
                )
            if progress:
                now = time.perf_counter()
                print(_progress_line(results, i, len(source), now - start, now - t0, total), flush=True)
    if save_images is not None and len(scales) > 1:
        report.plot_psnr_vs_scale(pathlib.Path(save_images) / PLOT_NAME, report.aggregate(results), model_name)
    return results


def model_label(path: str | os.PathLike, model: Model) -> str:
    """How tables and plots name a model: `pretrained:NAME` or its file or folder name, and its
    architecture (`describe`), e.g. `run1 (EDSR-baseline 16x64, MLP 256x4)`."""
    text = os.fspath(path)
    name = text if text.startswith(pretrained.PREFIX) else pathlib.Path(text).resolve().name
    return f"{name} ({describe(model)})"


class CenterCropped:
    """A source of HR images seen through `imaging.center_crop`, cropped when read."""

    def __init__(self, source: Sequence[Any], side: int):
        if side <= 0:
            raise ValueError(f"--center-crop must be positive, got {side}")
        self.source, self.side = source, side

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> np.ndarray:
        element = self.source[i]
        if isinstance(element, Mapping):
            raise ValueError(
                f"{_where(self.source, None, i)}: --center-crop applies to HR images, not given LR/HR pairs"
            )
        return center_crop(element, self.side)

    def describe(self, i: int) -> str:
        return f"{_where(self.source, None, i)} (central {self.side}x{self.side})"


def _name(source: Sequence[Any], names: Sequence[str] | None, i: int) -> str:
    if names is not None:
        return names[i]
    return source.describe(i) if hasattr(source, "describe") else f"image{i}"


def _where(source: Sequence[Any], names: Sequence[str] | None, i: int) -> str:
    return source.describe(i) if hasattr(source, "describe") else _name(source, names, i)


def _split(element: Any, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(HR, LR or None) of a source element, each checked to be a uint8 RGB image."""
    if isinstance(element, Mapping):
        return _rgb_u8(element["hr"], where), _rgb_u8(element["lr"], where)
    return _rgb_u8(element, where), None


def _rgb_u8(image: Any, where: str) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ImageError(f"{where}: expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    return image


def _crop_path(folder: str | os.PathLike, name: str, scale: float) -> pathlib.Path:
    """`<folder>/<name without suffix>_x<scale>.png`, the name reduced to file-name-safe characters."""
    stem = re.sub(r"[^\w.-]+", "_", pathlib.PurePath(name).stem).strip("_") or "image"
    return pathlib.Path(folder) / f"{stem}_x{scale:g}.png"


def _progress_line(
    results: Sequence[report.ImageResult], i: int, n: int, seconds: float, elapsed: float, total: int
) -> str:
    """The result just measured, the running mean at its scale, and the time left at the pace so far
    (`total` results in all, `elapsed` seconds since the first began)."""
    last = results[-1]
    same_scale = [r.psnr for r in results if r.scale == last.scale]
    eta = format_duration(elapsed * (total - len(results)) / len(results))
    return (
        f"[{i + 1}/{n}] {last.name} x{last.scale:g}: LIIF {last.psnr:.2f} dB, bicubic "
        f"{last.bicubic_psnr:.2f} dB | running mean x{last.scale:g} {np.mean(same_scale):.2f} dB | {seconds:.2f} s"
        f" | {format_duration(elapsed)} elapsed, ETA {eta}"
    )
