"""`python -m liif_jax.demo --input IN.png --model MODEL --resolution H,W --output OUT.png`.

The official demo.py's flags and output: MODEL is an official `.pth` or a liif_jax checkpoint
(training workdir, checkpoint directory or step directory). `--scale S` instead of `--resolution`
asks for round(S x) the input size.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from PIL import Image

from liif_jax import imaging
from liif_jax.checkpoints import load_model
from liif_jax.render import CPU_BATCH_QUERIES, DEFAULT_BATCH_QUERIES, DEFAULT_TILE, upscale


def parse_resolution(text: str) -> tuple[int, int]:
    """'H,W' -> (H, W) of positive ints, or a message saying what is wrong."""
    parts = text.split(",")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--resolution must be H,W (two positive integers, e.g. 1024,768), got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"--resolution must be positive, got {text!r}")
    return h, w


def to_uint8_official(img01: np.ndarray) -> np.ndarray:
    """As the official `ToPILImage()` on a float tensor: `mul(255).byte()` truncates."""
    return (np.asarray(img01, np.float32) * np.float32(255)).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m liif_jax.demo", description="Render an image at any resolution with LIIF.")
    parser.add_argument("--input", required=True, help="input image (any PIL format; converted to RGB)")
    parser.add_argument("--model", required=True, help="official .pth, liif_jax workdir or checkpoint directory")
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--resolution", type=parse_resolution, help="output size H,W")
    size.add_argument("--scale", type=float, help="output size as a multiple of the input size, e.g. 4 or 2.5")
    parser.add_argument("--output", required=True, help="output image path (PNG recommended)")
    parser.add_argument("--batch-queries", type=int, help=f"queries per step of the decoder (default {DEFAULT_BATCH_QUERIES}, "
                        f"as the official code; {CPU_BATCH_QUERIES} on a CPU, where more cost memory, not time)")
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE,
                        help=f"input pixels per tile side (bounds memory; 0: the whole image at once; default {DEFAULT_TILE})")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    args = parser.parse_args(argv)
    if args.batch_queries is not None and args.batch_queries <= 0:
        parser.error("--batch-queries must be positive")
    if args.tile < 0:
        parser.error(f"--tile must be 0 (whole image) or positive, got {args.tile}")
    if args.scale is not None and not args.scale > 0:
        parser.error(f"--scale must be positive, got {args.scale}")
    try:
        img = imaging.load_rgb(args.input)
        model, params = load_model(args.model, args.step)
    except (imaging.ImageError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    size = args.resolution or (max(1, round(img.shape[0] * args.scale)), max(1, round(img.shape[1] * args.scale)))
    t0 = time.perf_counter()
    pred = upscale(model, params, imaging.to_float01(img), size, args.batch_queries, args.tile)
    try:
        Image.fromarray(to_uint8_official(pred)).save(args.output)
    except (OSError, ValueError) as e:
        print(f"error: cannot write --output {args.output}: {e}", file=sys.stderr)
        return 1
    h, w = size
    print(f"{args.input} ({img.shape[0]}x{img.shape[1]}) -> {args.output} ({h}x{w}) in {time.perf_counter() - t0:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
