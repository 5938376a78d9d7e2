"""`python -m liif_jax.convert IN OUT`: between official `.pth` checkpoints and liif_jax ones.

Writes a params-only orbax checkpoint (from an official `.pth` or a liif_jax workdir or
checkpoint), or, when OUT ends in `.pth`, exports a liif_jax model to the official format, which
the official test.py and demo.py load (`models.make(torch.load(OUT)['model'], load_sd=True)`).
The name mapping itself is `liif_jax.formats.state_dict`.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import numpy as np

from liif_jax import cli_checks
from liif_jax.formats import atomic
from liif_jax.formats.checkpoints import load_model, save_model
from liif_jax.formats.pth import OFFICIAL_SUFFIXES
from liif_jax.formats.state_dict import save_official


def main(argv: list[str] | None = None) -> int:
    try:
        return convert(argv)
    except KeyboardInterrupt:  # the output is written whole or not at all (`atomic.written_whole`)
        print("stopped (Ctrl-C); nothing was written", file=sys.stderr)
        return cli_checks.INTERRUPTED


def convert(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=cli_checks.program_name("liif_jax.convert", "liif-convert"),
        description="Write a params-only liif_jax orbax checkpoint from an official LIIF .pth, or from a "
        "training workdir / checkpoint (dropping optimizer and data state, e.g. to ship a model); "
        "or, when OUTPUT ends in .pth, export a liif_jax model for the official PyTorch code.",
    )
    parser.add_argument(
        "input",
        help="official checkpoint (.pth), training workdir, liif_jax checkpoint directory, "
        "or the shipped model by name (pretrained:edsr-baseline-liif)",
    )
    parser.add_argument(
        "output", help="directory for the orbax checkpoint (must not exist or be empty), or a new official .pth file"
    )
    parser.add_argument("--step", type=int, default=None, help="checkpoint step of a workdir (default: latest)")
    args = parser.parse_args(argv)

    to_pth = args.output.endswith(OFFICIAL_SUFFIXES)
    try:
        if to_pth and args.input.endswith(OFFICIAL_SUFFIXES):
            raise ValueError(f"{args.input} is already an official checkpoint; nothing to convert (copy it instead)")
        if to_pth and os.path.exists(args.output):
            raise FileExistsError(f"{args.output}: output file exists; choose a new name or delete it")
        if not to_pth and os.path.isfile(args.output):
            raise FileExistsError(f"{args.output}: output is a file; give a new folder (or a .pth file name)")
        if not to_pth and os.path.isdir(args.output) and os.listdir(args.output):
            raise FileExistsError(f"{args.output}: output directory is not empty; choose a new one")
        cli_checks.check_step(args.step)
        cli_checks.check_output_dir(os.path.dirname(os.path.abspath(args.output)), "OUTPUT's folder")
        model, params = load_model(args.input, args.step)
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with atomic.written_whole(os.path.abspath(args.output)) as tmp:
            if to_pth:
                save_official(tmp, model, params)
            else:
                save_model(tmp, model.spec, params)
        path = os.path.abspath(args.output)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    n = sum(np.size(x) for x in jax.tree.leaves(params))
    print(f"wrote {path} ({model.spec['name']}, {n / 1e6:.2f} M parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
