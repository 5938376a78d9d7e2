"""Evaluation as the official `test.py` does it: PSNR of LIIF and of bicubic over a set of images.

`python -m liif_jax.evaluate --model MODEL --hr-dir DIR --scale 2,3,4 --protocol div2k` makes each
low-resolution input from the HR image exactly as the official `sr-implicit-downsampled` wrapper
(with `inp_size: None`); `--lr-dir DIR` instead pairs given LR images with the HR images by name,
as `sr-implicit-paired` (the official DIV2K x2-x4 and benchmark tables); `--split-file` and
`--split-key` select the files of a split (the CelebA-HQ tests: `--lr-dir load/celebAHQ/32 --hr-dir
load/celebAHQ/256 --split-file load/celebAHQ/split.json --split-key val --scale 8 --protocol
plain`). `--tfds NAME` reads a prepared TFDS set (ArrayRecord, no TensorFlow) instead of folders.
`--config configs/test/test-div2k-4.yaml` takes the data, scale and protocol from an official test
config, as `python test.py --config` does. Models of LTE's code (LTE, SwinIR encoders) are
evaluated as LTE's test.py does: the cell clamped above x4 (`--scale-max`), and with `--window 8`
the input padded as its SwinIR evaluation pads it.

The library call `evaluate(model, params, source, scales, protocol)` is what the CLI, the training
loop and a notebook share. A source is any sequence (a `liif_jax.data.sources` source, or a plain list) of
uint8 HR images (H, W, 3), or of {'lr', 'hr'} dicts for given LR inputs. Every prediction goes
through `render.upscale`, tile by tile (`tile` input pixels per side), so memory is bounded whatever
the image size.
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from liif_jax import cli_checks
from liif_jax.configs import official
from liif_jax.data import datasets, imaging, sources
from liif_jax.data.imaging import ImageError, center_crop, downsample, to_float01
from liif_jax.evaluation import metrics, report
from liif_jax.formats.checkpoints import load_model
from liif_jax.models import Model
from liif_jax.render.render import (
    CPU_BATCH_QUERIES,
    DECODERS,
    DEFAULT_BATCH_QUERIES,
    LTE_SCALE_MAX,
    lte_cell_factor,
    resolve_decoder,
    scale_max_for,
    upscale,
)

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
) -> Outcome:
    """LIIF and bicubic of one uint8 HR image at one scale; `lr=None` makes the LR from `hr`.

    `scale_max`: LTE's cell clamp above that scale; `window`: LTE's padding of the input to a
    multiple of the window (the output rendered for the padded input, then cropped to the HR size).
    """
    if lr is None:
        lr, hr = downsample(hr, scale)
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
            model, params, to_float01(padded), out_hw, batch_queries, tile, decoder=decoder, cell_factor=factor
        )
        pred = pred[: hr.shape[0], : hr.shape[1]]
    else:
        pred = upscale(
            model, params, to_float01(lr), hr.shape[:2], batch_queries, tile, decoder=decoder, cell_factor=factor
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
) -> list[report.ImageResult]:
    """Per-image results of every image of `source` at every scale, image-major.

    Elements of `source` are uint8 HR images (LR made per scale) or {'lr', 'hr'} dicts (given LR,
    one scale). Results are named by `names`, else by `source.describe(i)` when the source has it
    (the `liif_jax.data.sources` sources), else `image<i>`; errors name `source.describe(i)` when present,
    as that names every file involved. `save_images` gets a bicubic / LIIF / ground-truth crop per
    image and scale, and a PSNR-vs-scale plot when there are several scales. `on_result` gets the
    results so far after each one (the CLI saves them, so that an error on a later image loses nothing).
    """
    check_scales(scales, protocol)
    if batch_queries is not None and batch_queries <= 0:
        raise ValueError(f"batch_queries must be positive, got {batch_queries}")
    if names is not None and len(names) != len(source):
        raise ValueError(f"{len(names)} names for {len(source)} images")
    results: list[report.ImageResult] = []
    for i in range(len(source)):
        name, where = _name(source, names, i), _where(source, names, i)
        hr, lr = _split(source[i], where)
        if lr is not None and len(scales) != 1:
            raise ValueError(f"{where}: a given LR image has one scale, but scales {list(scales)} were asked for")
        for scale in scales:
            start = time.perf_counter()
            try:
                outcome = evaluate_one(
                    model, params, hr, lr, scale, protocol, batch_queries, tile, decoder, window, scale_max
                )
            except ValueError as err:
                raise ImageError(f"{where} at scale {scale:g}: {err}") from err
            results.append(report.ImageResult(name, scale, outcome.psnr, outcome.bicubic_psnr))
            if on_result is not None:
                on_result(results)
            if save_images is not None:
                crop_path = _crop_path(save_images, name, scale)
                report.save_side_by_side(crop_path, outcome.bicubic, outcome.pred, outcome.hr)
            if progress:
                print(_progress_line(results, i, len(source), time.perf_counter() - start), flush=True)
    if save_images is not None and len(scales) > 1:
        report.plot_psnr_vs_scale(pathlib.Path(save_images) / PLOT_NAME, report.aggregate(results))
    return results


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


def _progress_line(results: Sequence[report.ImageResult], i: int, n: int, seconds: float) -> str:
    last = results[-1]
    same_scale = [r.psnr for r in results if r.scale == last.scale]
    return (
        f"[{i + 1}/{n}] {last.name} x{last.scale:g}: LIIF {last.psnr:.2f} dB, bicubic "
        f"{last.bicubic_psnr:.2f} dB | running mean x{last.scale:g} {np.mean(same_scale):.2f} dB | {seconds:.2f} s"
    )


def open_source(args: argparse.Namespace) -> tuple[Sequence[Any], list[str]]:
    """The evaluation source the flags name, and a short name (file name) for each image."""
    if args.tfds is None and args.tfds_lr_key is not None:
        raise ValueError("--tfds-lr-key applies only with --tfds; use --lr-dir for a folder of LR images")
    if args.tfds is not None:
        if args.lr_dir is not None:
            raise ValueError("--lr-dir does not apply to --tfds; use --tfds-lr-key for the set's LR images")
        source = sources.TfdsSource(args.tfds, args.tfds_data_dir, args.split, lr_key=args.tfds_lr_key)
        return source, [source.describe(i) for i in range(len(source))]
    if (args.split_file is None) != (args.split_key is None):
        raise ValueError(
            "--split-file and --split-key go together (e.g. --split-file load/celebAHQ/split.json --split-key val)"
        )
    split = {"split_file": args.split_file, "split_key": args.split_key}
    if args.lr_dir is not None:
        paired = sources.PairedImageFolders(args.lr_dir, args.hr_dir, **split)
        return paired, [hr.name for _, hr in paired.pairs]
    folder = sources.ImageFolder(args.hr_dir, **split)
    return folder, [f.name for f in folder.files]


@dataclass(frozen=True)
class OfficialTest:
    """What an official test config (`configs/test/*.yaml`) asks for, in this module's terms."""

    source: Sequence[Any]
    names: list[str]
    scale: float
    protocol: metrics.Protocol
    batch_queries: int


def read_official_test_config(path: str | os.PathLike) -> OfficialTest:
    """An official test YAML (`test_dataset` {dataset, wrapper}, `eval_type`, `eval_bsize`,
    `data_norm`), as `python test.py --config` reads it; relative data paths are from the working
    directory, as there. Only what the official test path can mean is accepted: whole images
    (`inp_size` unset), one scale, the standard normalisation."""
    import yaml  # Imported here: only this path reads YAML.

    where = os.fspath(path)
    try:
        config = yaml.safe_load(pathlib.Path(path).read_text())
        spec = config["test_dataset"]
        dataset, wrapper = dict(spec["dataset"]), dict(spec["wrapper"])
    except (OSError, yaml.YAMLError, TypeError, KeyError) as err:
        raise ValueError(
            f"--config {where}: not an official test config (test_dataset: dataset, wrapper): {err}"
        ) from None
    norm = config.get("data_norm")
    if norm != official.OFFICIAL_DATA_NORM:
        raise ValueError(f"--config {where}: data_norm must be the official inp/gt sub [0.5] div [0.5], got {norm}")
    try:
        protocol, type_scale = metrics.eval_type_to_protocol(config.get("eval_type"))
    except ValueError as err:
        raise ValueError(f"--config {where}: {err}") from None
    args = dict(wrapper.get("args") or {})
    if args.get("inp_size") is not None or args.get("sample_q") is not None:
        raise ValueError(
            f"--config {where}: the wrapper crops or samples (inp_size / sample_q); a test uses whole images"
        )
    # A test reads each image once: the official `cache` (bin files beside the data) would only write files.
    dataset["args"] = {k: v for k, v in (dataset.get("args") or {}).items() if k != "cache"}
    source = datasets.make_source(dataset, f"--config {where}: test_dataset.dataset")
    if wrapper.get("name") == "sr-implicit-downsampled":
        scale = float(args.get("scale_min", 1))
        if args.get("scale_max", scale) != scale:
            raise ValueError(
                f"--config {where}: scale_min {scale:g} and scale_max {args['scale_max']} differ; a test has one scale"
            )
        names = [f.name for f in source.files]
    elif wrapper.get("name") == "sr-implicit-paired":
        first = source[0]
        scale = float(type_scale if config.get("eval_type") else first["hr"].shape[0] // first["lr"].shape[0])
        names = [hr.name for _, hr in source.pairs]
    else:
        raise ValueError(
            f"--config {where}: wrapper {wrapper.get('name')!r} is not a test wrapper "
            "(sr-implicit-downsampled or sr-implicit-paired)"
        )
    if config.get("eval_type") and type_scale != scale:
        raise ValueError(
            f"--config {where}: eval_type {config['eval_type']!r} does not match the wrapper's scale {scale:g}"
        )
    return OfficialTest(source, names, scale, protocol, int(config.get("eval_bsize") or DEFAULT_BATCH_QUERIES))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m liif_jax.evaluate",
        description="PSNR of LIIF and bicubic over an image set, as the official test.py.",
    )
    parser.add_argument(
        "--model",
        required=True,
        help="official .pth, liif_jax workdir or checkpoint directory, "
        "or the shipped model by name: pretrained:edsr-baseline-liif",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--config",
        help="an official test config (configs/test/test-div2k-4.yaml ...): data, scale and protocol from it",
    )
    where.add_argument("--hr-dir", help="folder of high-resolution (ground-truth) images")
    where.add_argument("--tfds", metavar="NAME", help="prepared TFDS data set (e.g. div2k/bicubic_x4), feature 'hr'")
    parser.add_argument(
        "--lr-dir", help="folder of given LR images, paired by name (0801x4.png <-> 0801.png); one scale only"
    )
    parser.add_argument("--scale", help="scale(s), comma separated, e.g. 4 or 2,3,4 or 2.5 (not with --config)")
    parser.add_argument(
        "--protocol",
        choices=["div2k", "benchmark", "plain"],
        help="div2k (default, the paper's for DIV2K and photographs): shave scale+6, RGB; benchmark: shave scale, "
        "Y channel (Set5, Set14, B100, Urban100); plain: all pixels, RGB (not with --config)",
    )
    parser.add_argument(
        "--split-file",
        help="JSON {split: [file names]} selecting the folder images (the official CelebA-HQ split.json)",
    )
    parser.add_argument("--split-key", help="split of --split-file to evaluate (the official CelebA-HQ tests: val)")
    parser.add_argument(
        "--center-crop",
        type=int,
        metavar="SIDE",
        help="evaluate the central SIDE x SIDE pixels of each HR image (quick looks)",
    )
    parser.add_argument("--json", help="write the results (per scale and per image) to this JSON file")
    parser.add_argument(
        "--batch-queries",
        type=int,
        help=f"queries per decoder step (default {DEFAULT_BATCH_QUERIES}, {CPU_BATCH_QUERIES} on a CPU, or the config's eval_bsize)",
    )
    parser.add_argument(
        "--tile",
        type=int,
        default=None,
        help="input pixels per tile side (0: whole images; default: the largest that fits the render's memory "
        "budget, see liif_jax.render.memory; a fixed tile compiles once for images of every size)",
    )
    parser.add_argument(
        "--decoder",
        choices=DECODERS,
        help="xla, or pallas: the fused query kernel "
        "(default: pallas on GPUs for the LIIF models it runs, xla elsewhere)",
    )
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    parser.add_argument(
        "--window",
        type=int,
        default=0,
        help="LTE's test.py --window (8 for SwinIR): pad each input "
        "with its mirror image to the next multiple of W above its size; default 0, no padding",
    )
    parser.add_argument(
        "--scale-max",
        type=float,
        metavar="S",
        help="clamp the cell above this scale, as LTE's test.py "
        f"(cell x scale / S); default {LTE_SCALE_MAX} for models of LTE's code (LTE, SwinIR encoder), "
        "none for LIIF's; 0: never",
    )
    parser.add_argument(
        "--save-images", metavar="DIR", help="write bicubic / LIIF / ground-truth crops (and a plot) here"
    )
    parser.add_argument(
        "--tfds-data-dir",
        default=os.path.expanduser("~/tensorflow_datasets"),
        help="TFDS data directory (default: ~/tensorflow_datasets)",
    )
    parser.add_argument("--split", default="validation", help="TFDS split (default: validation)")
    parser.add_argument("--tfds-lr-key", help="TFDS feature with given LR images (e.g. lr); default: make LR from hr")
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=imaging.DEFAULT_MAX_PIXELS,
        help=f"largest image to read, in pixels (default {imaging.DEFAULT_MAX_PIXELS}); images are "
        f"{imaging.FORMATS_TEXT}",
    )
    return parser


class JsonSink:
    """Writes the results so far to --json after each image; remembers a failed write instead of
    stopping the evaluation, so that the table is still printed."""

    def __init__(self, path: str | None):
        self.path, self.error, self.written = path, None, 0

    def __call__(self, results: list[report.ImageResult]) -> None:
        if self.path is None:
            return
        try:
            report.write_json(self.path, results)
            self.written, self.error = len(results), None
        except (OSError, ValueError) as err:
            self.error = err


def run(args: argparse.Namespace, sink: JsonSink | None = None) -> list[report.ImageResult]:
    """Checks the flags, then evaluates; cheap checks come before loading the model and images."""
    imaging.set_max_pixels(args.max_pixels)
    cli_checks.check_step(args.step)
    if args.json is not None:
        cli_checks.check_output_file(args.json, "--json", (".json",), makes_folder=True)
    if args.save_images is not None:
        cli_checks.check_output_dir(args.save_images, "--save-images")
    if args.config is not None:
        test = official_config_test(args)
        source, names, scales, protocol, batch_queries = (
            test.source,
            test.names,
            [test.scale],
            test.protocol,
            test.batch_queries,
        )
    else:
        (source, names, scales, protocol), batch_queries = flags_test(args), None
    batch_queries = batch_queries if args.batch_queries is None else args.batch_queries
    if batch_queries is not None and batch_queries <= 0:
        raise ValueError(f"--batch-queries must be positive, got {batch_queries}")
    if args.tile is not None and args.tile < 0:
        raise ValueError(f"--tile must be 0 (whole images) or positive, got {args.tile}")
    if args.window < 0:
        raise ValueError(f"--window must be 0 (no padding) or positive (8 for SwinIR), got {args.window}")
    if args.window and any(s != int(s) for s in scales):
        raise ValueError(f"--window needs integer scales, as LTE's test.py, got {','.join(f'{s:g}' for s in scales)}")
    if args.scale_max is not None and not (math.isfinite(args.scale_max) and args.scale_max >= 0):
        raise ValueError(f"--scale-max must be a number >= 0 (0: no cell clamp), got {args.scale_max}")
    cli_checks.check_image_headers(source)
    model, params = load_model(args.model, args.step)
    resolve_decoder(model, args.decoder)
    scale_max = scale_max_for(model, args.scale_max)
    clamp = f", cell clamped above x{scale_max:g}" if scale_max else ""
    print(
        f"evaluating {len(source)} images at scale(s) {','.join(f'{s:g}' for s in scales)} under protocol "
        f"{protocol!r}{clamp}{f', window {args.window}' if args.window else ''}",
        flush=True,
    )
    own_sink = sink is None
    sink = sink or JsonSink(args.json)
    results = evaluate(
        model,
        params,
        source,
        scales,
        protocol,
        batch_queries,
        args.save_images,
        names=names,
        on_result=sink,
        tile=args.tile,
        decoder=args.decoder,
        window=args.window,
        scale_max=scale_max,
    )
    if own_sink and sink.error is not None:
        raise sink.error
    return results


def flags_test(args: argparse.Namespace) -> tuple[Sequence[Any], list[str], list[float], metrics.Protocol]:
    """(source, names, scales, protocol) that the data flags (--hr-dir / --lr-dir / --tfds, --scale,
    --protocol, --center-crop) ask for."""
    if args.scale is None:
        raise ValueError(
            "--scale is required, e.g. --scale 4 or --scale 2,3,4 (or give an official test config with --config)"
        )
    scales, protocol = parse_scales(args.scale), args.protocol or "div2k"
    paired = args.lr_dir is not None or (args.tfds is not None and args.tfds_lr_key is not None)
    if paired and len(scales) != 1:
        raise ValueError(f"given LR images (--lr-dir / --tfds-lr-key) have one scale; got --scale {args.scale}")
    if args.batch_queries is not None and args.batch_queries <= 0:  # before opening the images
        raise ValueError(f"--batch-queries must be positive, got {args.batch_queries}")
    check_scales(scales, protocol)
    if args.center_crop is not None and paired:
        raise ValueError("--center-crop applies to HR images, not to given LR images (--lr-dir / --tfds-lr-key)")
    source, names = open_source(args)
    if args.center_crop is not None:
        source = CenterCropped(source, args.center_crop)
    return source, names, scales, protocol


def official_config_test(args: argparse.Namespace) -> OfficialTest:
    """`--config test.yaml`: what the official `python test.py --config test.yaml` measures."""
    given = [
        flag
        for flag, value in (
            ("--scale", args.scale),
            ("--protocol", args.protocol),
            ("--lr-dir", args.lr_dir),
            ("--split-file", args.split_file),
            ("--center-crop", args.center_crop),
        )
        if value is not None
    ]
    if given:
        raise ValueError(
            f"{', '.join(given)} cannot be combined with --config: the config sets the data, scale and protocol"
        )
    return read_official_test_config(args.config)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sink = JsonSink(args.json)
    try:
        results = run(args, sink)
    except (ValueError, OSError) as err:
        kept = f" (the {sink.written} results before it are in {args.json})" if sink.written else ""
        print(f"error: {err}{kept}", file=sys.stderr)
        return 1
    print(report.format_table(report.aggregate(results)), end="")
    if sink.error is not None:
        print(f"error: cannot write --json {args.json}: {sink.error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
