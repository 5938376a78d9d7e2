"""How far SwinIR's features reach: the halo exact tiling would need (why liif_jax encodes SwinIR whole).

    python experiments/swinir_reach.py [--size 320] [--out experiments/results/swinir_reach_cpu.md]

LTE's SwinIR (6 RSTBs x 6 Swin blocks, window 8, shift 4, 3x3 convs) at a narrow width (12
channels, 2 heads: the reach depends on the depth, window and convs, not on the width), random
weights, in float64. The derivative of every feature with respect to one input pixel (a JVP with
an impulse tangent) is non-zero exactly where that pixel reaches; the largest row or column
distance of a non-zero is the receptive-field radius, measured for impulses at several window
phases. Each attention hop scales the derivative by about 1/64 (a near-uniform softmax over a
window): float32 would flush it to zero within a few dozen hops, hence float64, and the linear
layers' weights are scaled up from SwinIR's init (std 0.02) so that no branch vanishes. A tile
reproduces the whole image's features only where its halo covers that radius, and only if its
windows line up with the whole image's (tiles starting at multiples of 8).
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
import platform
import sys

import jax
import jax.numpy as jnp
import numpy as np

from liif_jax.models.swinir import make_swinir


def reach(size: int, phase: int) -> int:
    enc = make_swinir(embed_dim=12, num_heads=(2,) * 6, drop_path_rate=0.0)
    params = enc.init(jax.random.key(0), jnp.zeros((1, 48, 48, 3)))
    params = jax.tree.map(lambda p: (p * 15 if p.ndim == 2 else p).astype(jnp.float64), params)
    x = jax.random.uniform(jax.random.key(1), (1, size, size, 3), jnp.float64, minval=-1, maxval=1)
    c = size // 2 - size // 2 % 8 + phase  # an impulse `phase` pixels into a window
    t = jnp.zeros_like(x).at[0, c, c, 0].set(1.0)
    _, dy = jax.jvp(lambda v: enc.apply(params, v), (x,), (t,))
    rows, cols = np.nonzero(np.abs(np.asarray(dy[0])).max(-1) > 0)
    return int(max(np.abs(rows - c).max(), np.abs(cols - c).max()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--size", type=int, default=320, help="input side (a multiple of 8, larger than twice the reach)"
    )
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("experiments/results/swinir_reach_cpu.md"))
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    radii = {phase: reach(args.size, phase) for phase in (0, 3, 4, 7)}
    worst = max(radii.values())
    if worst >= args.size // 2 - 8:
        raise SystemExit(f"the reach {worst} is near the input's edge: use a larger --size")
    halo = -(-worst // 8) * 8
    lines = [
        "# SwinIR's receptive field: the halo exact tiling would need",
        "",
        f"Command: `python experiments/swinir_reach.py --size {args.size}`. Date: {datetime.date.today()}; device: CPU "
        f"({platform.machine()}), JAX {jax.__version__}.",
        "",
        "LTE's SwinIR structure (6 RSTBs x 6 blocks, window 8, shift 4, 3x3 convs) at width 12, random weights "
        "(linear layers scaled up), float64; the features that one input pixel changes (JVP with an impulse), largest "
        "row/column distance:",
        "",
        "| impulse position in its window | radius (pixels) |",
        "|---:|---:|",
        *[f"| {p} | {r} |" for p, r in radii.items()],
        "",
        f"An exact tile needs a halo of {worst} pixels ({halo} with its windows aligned to the image's 8-pixel grid) on "
        f"every side: a 256-pixel tile would encode a {256 + 2 * halo}-pixel window, {((256 + 2 * halo) / 256) ** 2:.1f}x its "
        "own pixels, and SwinIR's padding of an image that is not a multiple of 8 makes the latent grid itself larger "
        "than the image (LTE's queries address the padded grid). liif_jax therefore encodes SwinIR whole, as LTE's code "
        "does, and says so in a log line (as for RCAN); the decoder's queries are still made in blocks.",
    ]
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
