"""`python -m liif_jax.demo --input IN.png --model MODEL --resolution H,W --output OUT.png`.

The official demo.py's flags and output: MODEL is an official `.pth`, a liif_jax checkpoint
(training workdir, checkpoint directory or step directory), or the shipped model by name
(`pretrained:edsr-baseline-liif`). `--scale S` instead of `--resolution` asks for round(S x) the
input size. `--zoom FRAMES --scale S --output zoom.webp` (or .gif) makes an animated zoom from x1
to xS into the centre instead (`liif_jax.render.zoom`).

Models of LTE's code (LTE, and LIIF / MetaSR on SwinIR) render as LTE's demo.py does: `--scale S`
asks for int(h S) x int(w S), and above x4 (`--scale-max`) the cell is clamped as if at x4
(times scale / 4). `--scale-max` sets that scale for any model; 0 turns the clamp off.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
from PIL import Image

from liif_jax import cli_checks
from liif_jax.data import imaging
from liif_jax.formats import atomic
from liif_jax.formats.checkpoints import load_model
from liif_jax.render import zoom
from liif_jax.render.render import (
    CPU_BATCH_QUERIES,
    DECODERS,
    DEFAULT_BATCH_QUERIES,
    LTE_SCALE_MAX,
    default_batch_queries,
    resolve_decoder,
    scale_max_for,
    upscale_image,
)
from liif_jax.training.writers import ProgressLines


def parse_resolution(text: str) -> tuple[int, int]:
    """'H,W' -> (H, W) of positive ints, or a message saying what is wrong."""
    parts = text.split(",")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--resolution must be H,W (two positive integers, e.g. 1024,768), got {text!r}"
        ) from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"--resolution must be positive, got {text!r}")
    return h, w


def check_zoom_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.scale is None or not args.scale > 1:
        parser.error("--zoom needs --scale S above 1 (the last frame's zoom), not --resolution")
    if args.zoom < 2:
        parser.error(f"--zoom must be at least 2 frames, got {args.zoom}")
    if not args.output.lower().endswith(zoom.ANIMATION_SUFFIXES):
        parser.error(
            f"--zoom writes an animation: --output must end in {' or '.join(zoom.ANIMATION_SUFFIXES)}, got {args.output}"
        )


def write_zoom(args: argparse.Namespace, model, params, img: np.ndarray, frame_hw: tuple[int, int]) -> int:
    t0 = time.perf_counter()
    try:
        with atomic.written_whole(args.output) as tmp:
            zoom.save_zoom(
                model,
                params,
                imaging.to_float01(img),
                tmp,
                args.zoom,
                args.scale,
                frame_hw,
                default_batch_queries() if args.batch_queries is None else args.batch_queries,
                report=lambda line: print(f"\r{line}", end="", file=sys.stderr, flush=True),
                scale_max=scale_max_for(model, args.scale_max),
            )
    except (OSError, ValueError) as e:
        print(f"\nerror: cannot write --output {args.output}: {e}", file=sys.stderr)
        return 1
    print(
        f"\n{args.input} ({img.shape[0]}x{img.shape[1]}) -> {args.output} ({args.zoom} frames of {frame_hw[0]}x{frame_hw[1]}, "
        f"x1 to x{args.scale:g}) in {time.perf_counter() - t0:.2f} s"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return render_to_file(argv)
    except KeyboardInterrupt:  # the output is written whole or not at all (`atomic.written_whole`)
        print("stopped (Ctrl-C); --output was not written", file=sys.stderr)
        return cli_checks.INTERRUPTED


def render_to_file(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=cli_checks.program_name("liif_jax.demo", "liif-demo"),
        description="Render an image at any resolution with LIIF.",
    )
    parser.add_argument("--input", required=True, help=f"input image ({imaging.FORMATS_TEXT}; converted to RGB)")
    parser.add_argument(
        "--model",
        required=True,
        help="official .pth, liif_jax workdir or checkpoint directory, "
        "or the shipped model by name: pretrained:edsr-baseline-liif",
    )
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--resolution", type=parse_resolution, help="output size H,W")
    size.add_argument("--scale", type=float, help="output size as a multiple of the input size, e.g. 4 or 2.5")
    parser.add_argument(
        "--output", required=True, help="output image path: .png (recommended), .jpg, .bmp, .tif or .webp"
    )
    parser.add_argument(
        "--batch-queries",
        type=int,
        help=f"queries per step of the decoder (default {DEFAULT_BATCH_QUERIES}, "
        f"as the official code; {CPU_BATCH_QUERIES} on a CPU, where more cost memory, not time)",
    )
    parser.add_argument(
        "--tile",
        type=int,
        default=None,
        help="input pixels per tile side (0: the whole image at once; default: the largest that fits "
        "the render's memory budget, see liif_jax.render.memory: the whole image when it fits)",
    )
    parser.add_argument(
        "--decoder",
        choices=DECODERS,
        help="xla, or pallas: the fused query kernel, checked against xla on its first block "
        "(default: xla, or LIIF_JAX_DECODER; see docs/gpu.md)",
    )
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=imaging.DEFAULT_MAX_PIXELS,
        help=f"largest input or output image, in pixels (default {imaging.DEFAULT_MAX_PIXELS})",
    )
    parser.add_argument(
        "--scale-max",
        type=float,
        metavar="S",
        help=f"clamp the cell above this scale, as LTE's demo.py (cell x scale / S); default "
        f"{LTE_SCALE_MAX} for models of LTE's code (LTE, SwinIR encoder), none for LIIF's; 0: never",
    )
    parser.add_argument(
        "--zoom",
        type=int,
        metavar="FRAMES",
        help="an animated zoom of FRAMES frames from x1 to --scale "
        "into the centre, each rendered at its own scale; --output .webp or .gif",
    )
    parser.add_argument(
        "--frame-size",
        type=parse_resolution,
        metavar="H,W",
        help="--zoom frame size (default: the input size, at most 512 per side)",
    )
    args = parser.parse_args(argv)
    if args.zoom is not None:
        check_zoom_flags(parser, args)
    if args.batch_queries is not None and args.batch_queries <= 0:
        parser.error("--batch-queries must be positive")
    if args.tile is not None and args.tile < 0:
        parser.error(f"--tile must be 0 (whole image) or positive, got {args.tile}")
    if args.scale is not None and not (math.isfinite(args.scale) and args.scale > 0):
        parser.exit(2, f"error: --scale must be a positive number, got {args.scale}\n")
    if args.scale_max is not None and not (math.isfinite(args.scale_max) and args.scale_max >= 0):
        parser.exit(2, f"error: --scale-max must be a number >= 0 (0: no cell clamp), got {args.scale_max}\n")
    try:  # every check before the model is loaded or the image decoded
        imaging.set_max_pixels(args.max_pixels)
        cli_checks.check_step(args.step)
        suffixes = cli_checks.IMAGE_OUTPUT_SUFFIXES if args.zoom is None else zoom.ANIMATION_SUFFIXES
        cli_checks.check_output_file(args.output, "--output", suffixes)
        in_size = imaging.read_size(args.input)
        if args.zoom is not None:  # the frames' size, whatever the zoom
            size, flag = args.frame_size or (min(in_size[0], 512), min(in_size[1], 512)), "--frame-size"
        else:
            size, flag = (
                args.resolution or cli_checks.scaled_size(in_size, args.scale),
                "--resolution" if args.resolution else "--scale",
            )
        cli_checks.check_render_size(size, flag)
        img = imaging.load_rgb(args.input)
        model, params = load_model(args.model, args.step)
        resolve_decoder(model, args.decoder)
    except (imaging.ImageError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.zoom is not None:
        return write_zoom(args, model, params, img, size)
    t0 = time.perf_counter()
    out = upscale_image(  # the size (at most the one checked above), LTE's cell clamp and uint8 rounding
        model,
        params,
        imaging.to_float01(img),
        args.scale,
        args.resolution,
        args.tile,
        args.batch_queries,
        args.decoder,
        args.scale_max,
        progress=ProgressLines("render"),
    )
    try:
        with atomic.written_whole(args.output) as tmp:
            Image.fromarray(out).save(tmp)
    except (OSError, ValueError) as e:
        print(f"error: cannot write --output {args.output}: {e}", file=sys.stderr)
        return 1
    h, w = out.shape[:2]
    print(
        f"{args.input} ({img.shape[0]}x{img.shape[1]}) -> {args.output} ({h}x{w}) in {time.perf_counter() - t0:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
