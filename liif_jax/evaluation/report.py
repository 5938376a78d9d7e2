"""What a person looks at after an evaluation: a table, a JSON file, a visual comparison, a plot.

Everything takes per-image results (`ImageResult`) or their per-scale means (`ScaleResult`, from
`aggregate`) and writes files; nothing here runs a model. Images are HWC RGB, float in [0, 1] or
uint8.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator
from PIL import Image, ImageDraw

from liif_jax.formats.atomic import written_whole

Crop = tuple[int, int, int, int]  # (top, left, height, width)

LABEL_HEIGHT = 16  # pixels above each panel for its label; the default PIL font is ~11 px tall
CROP_SIZE = 256  # pixels per side of a comparison crop: enough to judge texture, three fit a screen
PANEL_GAP = 4  # white pixels between panels, so the crops do not run into each other


@dataclass(frozen=True)
class ImageResult:
    """PSNRs (dB, under the dataset's protocol) of one image at one scale."""

    name: str
    scale: float
    psnr: float
    bicubic_psnr: float


@dataclass(frozen=True)
class ScaleResult:
    """Mean PSNRs over the images evaluated at one scale."""

    scale: float
    psnr: float
    bicubic_psnr: float
    n_images: int

    @property
    def gain(self) -> float:
        """How much LIIF beats the bicubic baseline, in dB."""
        return self.psnr - self.bicubic_psnr


def aggregate(results: Iterable[ImageResult]) -> list[ScaleResult]:
    """Mean of per-image PSNRs for each scale (the paper's dataset numbers), in first-seen order."""
    groups: dict[float, list[ImageResult]] = {}
    for result in results:
        groups.setdefault(result.scale, []).append(result)
    return [
        ScaleResult(
            scale=scale,
            psnr=float(np.mean([r.psnr for r in group])),
            bicubic_psnr=float(np.mean([r.bicubic_psnr for r in group])),
            n_images=len(group),
        )
        for scale, group in groups.items()
    ]


def format_table(rows: Sequence[ScaleResult], model: str = "LIIF") -> str:
    """Markdown table, one row per scale, PSNRs to 2 decimals as the paper prints them; `model`
    names the model's column, so that a table pasted elsewhere still says what it measured."""
    lines = [
        f"| scale | {model} PSNR (dB) | bicubic PSNR (dB) | gain (dB) | images |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| x{row.scale:g} | {row.psnr:.2f} | {row.bicubic_psnr:.2f} | {row.gain:+.2f} | {row.n_images} |"
        for row in rows
    ]
    return "\n".join(lines) + "\n"


def format_comparison(models: dict[str, Sequence[ScaleResult]]) -> str:
    """Markdown table of several models on the same images: bicubic once, then each model's PSNR
    and gain over bicubic, one row per scale (the scales of the first model)."""
    first = next(iter(models.values()))
    by_scale = {name: {r.scale: r for r in rows} for name, rows in models.items()}
    head = "| scale | bicubic (dB) | " + " | ".join(f"{name} (dB) | gain" for name in models) + " |"
    lines = [head, "| ---: | ---: |" + " ---: | ---: |" * len(models)]
    for row in first:
        cells = [f"{by_scale[n][row.scale].psnr:.2f} | {by_scale[n][row.scale].gain:+.2f}" for n in models]
        lines.append(f"| x{row.scale:g} | {row.bicubic_psnr:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_json_dict(results: Sequence[ImageResult]) -> dict:
    """The evaluation summary; `mean_psnr` is the first scale's mean, the headline number.

    Non-finite PSNRs (a perfect reconstruction gives +inf) become null, keeping the file strict JSON.
    """
    rows = aggregate(results)
    if not rows:
        raise ValueError("no image results to summarise")
    return {
        "mean_psnr": _json_number(rows[0].psnr),
        "scales": {
            f"{row.scale:g}": {
                "psnr": _json_number(row.psnr),
                "bicubic_psnr": _json_number(row.bicubic_psnr),
                "n_images": row.n_images,
            }
            for row in rows
        },
        "images": [
            {
                "name": r.name,
                "scale": _json_scale(r.scale),
                "psnr": _json_number(r.psnr),
                "bicubic_psnr": _json_number(r.bicubic_psnr),
            }
            for r in results
        ],
    }


def write_json(path: str | os.PathLike, results: Sequence[ImageResult]) -> None:
    """Write `to_json_dict(results)` to `path`, creating its folder; whole or not at all, since it is
    rewritten after every image of an evaluation that may be stopped at any moment."""
    text = json.dumps(to_json_dict(results), indent=2, allow_nan=False) + "\n"
    with written_whole(_prepare(path)) as tmp:
        tmp.write_text(text)


def bicubic_upsample(lr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The bicubic baseline: PIL bicubic resize of the uint8 LR to `size` = (H, W), float32 in [0, 1].

    Float input is taken back to uint8 by rounding, which recovers exactly the bytes of an image
    that was read as uint8 and divided by 255.
    """
    height, width = size
    image = Image.fromarray(to_uint8(lr)).resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.float32) / 255


def default_crop(gt: np.ndarray, size: int = CROP_SIZE) -> Crop:
    """The size x size window (or the whole image, if smaller) with the most gradient energy.

    Flat regions look alike under every method; the most detailed window is where they differ.
    """
    luma = to_uint8(gt).astype(np.float64).mean(axis=-1)
    height, width = luma.shape
    crop_h, crop_w = min(size, height), min(size, width)
    energy = np.zeros_like(luma)
    energy[:-1, :] += np.diff(luma, axis=0) ** 2
    energy[:, :-1] += np.diff(luma, axis=1) ** 2
    integral = np.pad(energy.cumsum(axis=0).cumsum(axis=1), ((1, 0), (1, 0)))
    window_sums = (
        integral[crop_h:, crop_w:]
        - integral[:-crop_h, crop_w:]
        - integral[crop_h:, :-crop_w]
        + integral[:-crop_h, :-crop_w]
    )
    top, left = np.unravel_index(np.argmax(window_sums), window_sums.shape)
    return int(top), int(left), crop_h, crop_w


def save_side_by_side(
    path: str | os.PathLike,
    bicubic: np.ndarray,
    liif: np.ndarray,
    gt: np.ndarray,
    crop: Crop | None = None,
    labels: tuple[str, str, str] = ("bicubic", "LIIF", "ground truth"),
    psnrs: tuple[float, float] | None = None,
) -> Crop:
    """One PNG with the same crop of the three images side by side, each labelled above, the first
    two with their PSNR (`psnrs`: of the whole image, as measured), so the picture and the number
    are read together.

    The panels are at 1:1 pixel scale, so what is shown is exactly what was measured. Returns the
    crop used ((top, left, height, width); `default_crop(gt)` when none is given).
    """
    if not bicubic.shape == liif.shape == gt.shape:
        raise ValueError(f"image shapes differ: {bicubic.shape}, {liif.shape}, {gt.shape}")
    top, left, crop_h, crop_w = crop if crop is not None else default_crop(gt)
    if top < 0 or left < 0 or top + crop_h > gt.shape[0] or left + crop_w > gt.shape[1]:
        raise ValueError(f"crop {(top, left, crop_h, crop_w)} does not fit images of shape {gt.shape}")
    canvas = np.full((LABEL_HEIGHT + crop_h, 3 * crop_w + 2 * PANEL_GAP, 3), 255, dtype=np.uint8)
    for i, image in enumerate((bicubic, liif, gt)):
        x = i * (crop_w + PANEL_GAP)
        canvas[LABEL_HEIGHT:, x : x + crop_w] = to_uint8(image)[top : top + crop_h, left : left + crop_w]
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    if psnrs is not None:
        labels = (f"{labels[0]} {psnrs[0]:.2f} dB", f"{labels[1]} {psnrs[1]:.2f} dB", labels[2])
    for i, label in enumerate(labels):
        draw.text((i * (crop_w + PANEL_GAP) + 2, 2), label, fill=(0, 0, 0))
    with written_whole(_prepare(path)) as tmp:
        picture.save(tmp, format="PNG")
    return top, left, crop_h, crop_w


def plot_psnr_vs_scale(path: str | os.PathLike, rows: Sequence[ScaleResult], model: str = "LIIF") -> None:
    """PNG line plot of the model's (named `model` in the legend and title) and bicubic PSNR over
    scale, log x axis ticked at the given scales."""
    if not rows:
        raise ValueError("no scales to plot")
    rows = sorted(rows, key=lambda row: row.scale)
    scales = [row.scale for row in rows]
    figure = Figure(figsize=(5, 3.5), dpi=100, layout="tight")  # no pyplot: no display, no global state
    axes = figure.subplots()
    axes.plot(scales, [row.psnr for row in rows], "o-", label=model)
    axes.plot(scales, [row.bicubic_psnr for row in rows], "s--", label="bicubic")
    axes.set_xscale("log")
    axes.xaxis.set_minor_locator(NullLocator())
    axes.set_xticks(scales, labels=[f"x{s:g}" for s in scales])
    axes.set_xlabel("scale")
    axes.set_ylabel("PSNR (dB)")
    axes.set_title(model, fontsize="small")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    with written_whole(_prepare(path)) as tmp:
        figure.savefig(tmp, format="png")


def to_uint8(image: np.ndarray) -> np.ndarray:
    """uint8 as-is; float in [0, 1] clipped and rounded (not truncated, which would darken by up to 1)."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def _json_scale(scale: float) -> int | float:
    """Integral scales as JSON integers (also turns numpy scalars into Python numbers)."""
    return int(scale) if float(scale).is_integer() else float(scale)


def _json_number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _prepare(path: str | os.PathLike) -> pathlib.Path:
    """The path as a Path, with its folder created."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def device_slug(platform: str, kind: str) -> str:
    """The short device name that names result files: 'NVIDIA H100 80GB HBM3' -> 'h100',
    'NVIDIA H200' -> 'h200', 'TPU v5 lite' -> 'tpu_v5_lite', 'cpu' -> 'cpu'."""
    model = re.search(r"[a-z]+\d+", kind.lower()) if platform == "gpu" else None
    return model.group(0) if model else re.sub(r"[^a-z0-9]+", "_", kind.lower()).strip("_") or platform


def verdict(rows: Sequence[ScaleResult], steps_done: int, recipe_steps: int, eta: str | None = None) -> str:
    """One plain sentence under the final table: does the run beat bicubic at every scale, and if
    not, how far it is into its recipe (`recipe_steps`, the length of its learning-rate schedule)
    and how to continue it (`eta`: the time the remaining steps would take, if known)."""
    below = [r for r in rows if r.gain < 0]
    if not below:
        mean = float(np.mean([r.gain for r in rows]))
        return f"The run is above bicubic at every scale ({mean:+.2f} dB on average) after {steps_done} steps."
    where = ", ".join(f"x{r.scale:g} ({r.gain:+.2f} dB)" for r in below)
    if steps_done < recipe_steps:
        more = f"{recipe_steps - steps_done} more steps" + (f", about {eta} at this run's speed" if eta else "")
        return (
            f"The run is still BELOW BICUBIC at {where}: {steps_done} steps are {100 * steps_done / recipe_steps:.0f}% "
            f"of the {recipe_steps} its recipe plans (the length of its learning-rate schedule). To continue it, run "
            f"the same command with --config.num_steps={recipe_steps} ({more})."
        )
    past = "the length its recipe plans" if steps_done == recipe_steps else f"past the {recipe_steps} its recipe plans"
    return (
        f"The run is still BELOW BICUBIC at {where} after {steps_done} steps, {past}. Train longer: the same "
        f"command with --config.num_steps={2 * steps_done} continues it; more photographs help too."
    )
