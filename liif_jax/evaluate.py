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
the input padded as its SwinIR evaluation pads it. `--degrade jpeg:60` or `--degrade realesrgan:SEED`
degrades the LR inputs as real photographs are (`liif_jax.data.degradations`); the table names it.

The evaluation itself is `liif_jax.evaluation.evaluator`; this module is its command line.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

from liif_jax import cli_checks
from liif_jax.data import degradations, imaging, sources
from liif_jax.evaluation import metrics, report
from liif_jax.evaluation.evaluator import CenterCropped, check_scales, evaluate, model_label, parse_scales
from liif_jax.evaluation.official_test import OfficialTest, read_official_test_config
from liif_jax.formats.checkpoints import load_model
from liif_jax.render.render import (
    CPU_BATCH_QUERIES,
    DECODERS,
    DEFAULT_BATCH_QUERIES,
    LTE_SCALE_MAX,
    resolve_decoder,
    scale_max_for,
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=cli_checks.program_name("liif_jax.evaluate", "liif-evaluate"),
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
        help="xla, or pallas: the fused query kernel, checked against xla on its first block "
        "(default: xla, or LIIF_JAX_DECODER; see docs/gpu.md)",
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
        "--degrade",
        metavar="RECIPE",
        help="degrade each LR input made from an HR image, as real photographs are: jpeg:QUALITY (e.g. jpeg:60) or "
        "realesrgan:SEED (Real-ESRGAN's second-order blur, resize, noise and JPEG, drawn from SEED); bicubic and the "
        "model see the same inputs",
    )
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


def run(args: argparse.Namespace, sink: JsonSink | None = None) -> tuple[str, list[report.ImageResult]]:
    """Checks the flags, then evaluates; cheap checks come before loading the model and images.
    Returns the model's name for tables (`model_label`) and the results."""
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
    if args.degrade is not None:
        degradations.named(args.degrade)  # a bad recipe: one line, before the model is loaded
    if args.scale_max is not None and not (math.isfinite(args.scale_max) and args.scale_max >= 0):
        raise ValueError(f"--scale-max must be a number >= 0 (0: no cell clamp), got {args.scale_max}")
    cli_checks.check_image_headers(source)
    model, params = load_model(args.model, args.step)
    resolve_decoder(model, args.decoder)
    scale_max = scale_max_for(model, args.scale_max)
    clamp = f", cell clamped above x{scale_max:g}" if scale_max else ""
    label = model_label(args.model, model) + (f" on {args.degrade} inputs" if args.degrade else "")
    print(
        f"evaluating {label} on {len(source)} images at scale(s) {','.join(f'{s:g}' for s in scales)} under protocol "
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
        model_name=label,
        degrade=args.degrade,
    )
    if own_sink and sink.error is not None:
        raise sink.error
    return label, results


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
        label, results = run(args, sink)
    except (ValueError, OSError) as err:
        kept = f" (the {sink.written} results before it are in {args.json})" if sink.written else ""
        print(f"error: {err}{kept}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # each file is written whole (`atomic.written_whole`): what is there is usable
        kept = [f"the {sink.written} results so far are in {args.json}"] if sink.written else []
        if args.save_images is not None and os.path.isdir(args.save_images) and os.listdir(args.save_images):
            kept.append(f"their crops are in {args.save_images}")
        print(f"stopped (Ctrl-C); {'; '.join(kept) or 'nothing was written'}", file=sys.stderr)
        return cli_checks.INTERRUPTED
    print(report.format_table(report.aggregate(results), label), end="")
    if sink.error is not None:
        print(f"error: cannot write --json {args.json}: {sink.error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
