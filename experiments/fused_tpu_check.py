"""Does the fused query kernel compile for a TPU (Mosaic)? A deviceless compile, nothing runs.

    JAX_PLATFORMS=cpu python experiments/fused_tpu_check.py [--target v5e-1] [--out experiments/results]

Lowers `fused_query`'s Pallas kernel as it runs on a GPU (the same kernel body, without Triton's
compiler parameters, with blocks of 128 queries x 4 neighbours, as Mosaic's (8, 128) tiling asks)
for a compile-only TPU at the shapes of one x4 query block of a small LIIF
MLP, and the XLA decoder (`fused_query.reference`) beside it, and writes what the compiler said to
`<out>/fused_tpu_<target>.md` with the command and date. Needs the `aot-tpu` extra (libtpu).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import pathlib
import re
import shlex
import sys

import jax
import jax.numpy as jnp

from liif_jax import aot
from liif_jax.kernels import fused_query
from xla_tools import hlo_stats

REPO = pathlib.Path(__file__).resolve().parents[1]


def shapes(n_rows: int, width: int, queries: int, hidden: int, n_terms: int = 4, n_nb: int = 4):
    f32, i32 = jnp.float32, jnp.int32
    s = jax.ShapeDtypeStruct
    layers = [(s((width, hidden), f32), s((hidden,), f32)), (s((hidden, 3), f32), s((3,), f32))]
    return (
        s((1,), i32),
        s((n_nb, queries), i32),
        s((n_nb, n_terms, queries), f32),
        s((n_nb, queries), f32),
        s((n_rows, width), f32),
        s((n_terms, width), f32),
        s((width,), f32),
        layers,
    )


def try_compile(name: str, fn, args, devs) -> str:
    sharding = jax.sharding.SingleDeviceSharding(devs[0])
    args = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), args)
    try:
        with aot.lowering(devs):
            compiled = jax.jit(fn).lower(*args).compile()
    except Exception as err:  # what Mosaic says is the result
        text = re.sub(r"\S*/(liif_jax|site-packages)/", r"\1/", " ".join(str(err).split()))  # no machine paths
        print(f"{name}: refused: {text[:300]}", file=sys.stderr)
        return f"refused ({type(err).__name__}): `{text[:400]}`"
    stats = hlo_stats.analyze(compiled.as_text())
    print(f"{name}: compiled", file=sys.stderr)
    return f"compiled: {stats.launches} kernel launches"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="v5e-1")
    parser.add_argument("--out", default=str(REPO / "experiments" / "results"))
    args = parser.parse_args()
    devs = aot.devices(args.target)
    sizes = dict(n_rows=85 * 128, width=64, queries=4096, hidden=64)
    kernel = functools.partial(
        fused_query._pallas,
        compute_dtype=jnp.dtype(jnp.float32),
        precision=None,
        interpret=False,
        block_rows=512,
        num_warps=fused_query.NUM_WARPS,
        triton=False,
    )
    xla = lambda n, *rest: fused_query.reference(*rest)
    rows = {
        name: try_compile(name, fn, shapes(**sizes), devs)
        for name, fn in (("fused Pallas kernel (Mosaic)", kernel), ("XLA decoder (fused_query.reference)", xla))
    }
    date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    lines = (
        [
            f"# The fused query kernel on a TPU ({args.target}): deviceless compile",
            "",
            f"Command: `{' '.join(['JAX_PLATFORMS=cpu python experiments/fused_tpu_check.py', *map(shlex.quote, sys.argv[1:])])}`. "
            f"Date (UTC): {date}. JAX {jax.__version__}, compiled on a CPU-only machine for a compile-only "
            f"{devs[0].device_kind} (nothing ran on one).",
            "",
            f"Shapes: a table of {sizes['n_rows']} latent rows x {sizes['width']}, {sizes['queries']} queries x 4 "
            f"neighbours (blocks of 128 queries), one hidden layer of {sizes['hidden']}, 3 outputs.",
            "",
            "| Decoder | Result |",
            "|---|---|",
        ]
        + [f"| {k} | {v} |" for k, v in rows.items()]
        + [
            "",
            "A TPU render therefore keeps XLA's decoder (`render.resolve_decoder`). A Mosaic kernel would "
            "have to fetch each gathered latent row by a DMA of its own (4 per query); that kernel was not built "
            '(its cost is inferred in `archive/707f6cf/fused_render_h200.md`, "Other targets").',
        ]
    )
    out = pathlib.Path(args.out) / f"fused_tpu_{args.target}.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
