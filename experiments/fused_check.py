"""The fused query kernel on a device: agreement with XLA's decoder, speed, and a block-size sweep.

    python experiments/fused_check.py [--size full|small] [--repeats 5] [--sweep 64x4,64x8,32x4,128x8]
        [--out experiments/results]

With a random full-size EDSR-baseline-LIIF and the x4 render of the benchmark (339x510 ->
1356x2040; `--size small`: a small model, 17x26 -> 68x104, for a CPU dry run, where the kernel
runs in Pallas interpret mode):

1. agreement: the largest |fused - xla| of the whole render, under float32 at "highest" precision
   (the kernel's three-TF32 products against XLA's float32), TF32, and a bf16 MLP;
2. speed: ms per render (`render.upscale`, tile by memory) with each decoder and ms per query
   program alone, mean of `--repeats` after one compiling call (TF32, as the benchmark);
3. sweep: ms per query program for kernel settings ROWSxWARPS (`fused_query.BLOCK_ROWS`,
   `NUM_WARPS`), each compiled afresh.

Writes `<out>/fused_check_<device>.{json,md}` with the command, device and date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import shlex
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from liif_jax.configs.common import liif_spec
from liif_jax.evaluation.report import device_slug
from liif_jax.kernels import fused_query
from liif_jax.models import build_model, liif
from liif_jax.render import render

SIZES = {
    "full": {"encoder": {}, "hidden": (256,) * 4, "render": ((339, 510), (1356, 2040))},
    "small": {"encoder": {"n_resblocks": 2, "n_feats": 16}, "hidden": (32, 32), "render": ((17, 26), (68, 104))},
}


def mean_ms(fn: Callable[[], Any], repeats: int) -> float:
    jax.block_until_ready(fn())  # compiles
    start = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn())
    return 1e3 * (time.perf_counter() - start) / repeats


def query_program(model, params, img: np.ndarray, out_hw: tuple[int, int], decoder: str) -> Callable[[], Any]:
    """The first query program of the render (the first tile's first block), on its own."""
    in_hw = img.shape[:2]
    p = render.plan(model, in_hw, out_hw, render.choose_tile(model, params, in_hw, out_hw, decoder=decoder), decoder)
    window = jnp.asarray((img[None, : p.rows.window, : p.cols.window] - 0.5) / 0.5)
    start = jnp.array(
        [p.rows.crop_starts[0] - p.rows.window_starts[0], p.cols.crop_starts[0] - p.cols.window_starts[0]], jnp.int32
    )
    grid = render.encode_tile(model, params, window, start, (p.rows.crop, p.cols.crop))
    lattice = liif.lattice(in_hw, (p.rows.crop_starts[0], p.cols.crop_starts[0]))
    geometry = jnp.asarray(render.output_geometry(out_hw))
    rows, cols = (np.array(r, np.int32) for r in (p.rows.blocks(0)[0], p.cols.blocks(0)[0]))
    return lambda: render.query_block(
        model,
        params,
        grid,
        lattice,
        geometry,
        rows,
        cols,
        (p.rows.block, p.cols.block),
        render.default_batch_queries(),
        True,
        None,
        decoder,
    )


def run(size: dict[str, Any], repeats: int, sweep: list[tuple[int, int]]) -> dict[str, Any]:
    model = build_model(liif_spec("edsr-baseline", size["encoder"], hidden_list=size["hidden"]))
    params = jax.jit(model.init, static_argnums=1)(jax.random.key(0), 48)
    (in_hw, out_hw), rng = size["render"], np.random.default_rng(0)
    img = rng.random((*in_hw, 3), dtype=np.float32)
    upscale = lambda decoder, mlp_dtype=None: render.upscale(
        model, params, img, out_hw, decoder=decoder, mlp_dtype=mlp_dtype
    )
    agreement = {}
    for name, precision, mlp_dtype in [
        ("float32-highest", "highest", None),
        ("tf32", "tensorfloat32", None),
        ("bf16-mlp", "tensorfloat32", jnp.bfloat16),
    ]:
        with jax.default_matmul_precision(precision):
            diff = np.abs(upscale("pallas", mlp_dtype) - upscale("xla", mlp_dtype))
        agreement[name] = {"max_abs": float(diff.max()), "mean_abs": float(diff.mean())}
        print(f"agreement {name}: max {diff.max():.2e}", flush=True)
    speed, tuning = {}, []
    with jax.default_matmul_precision("tensorfloat32"):
        for decoder in render.DECODERS:
            speed[decoder] = {
                "render_ms": mean_ms(lambda: upscale(decoder), repeats),
                "query_program_ms": mean_ms(query_program(model, params, img, out_hw, decoder), repeats),
            }
            print(f"speed {decoder}: {speed[decoder]}", flush=True)
        defaults = fused_query.BLOCK_ROWS, fused_query.NUM_WARPS
        for rows, warps in sweep:
            fused_query.BLOCK_ROWS, fused_query.NUM_WARPS = rows, warps
            jax.clear_caches()  # the settings are not part of the jit cache key
            try:
                start = time.perf_counter()
                fn = query_program(model, params, img, out_hw, "pallas")
                jax.block_until_ready(fn())
                row = {
                    "block_rows": rows,
                    "num_warps": warps,
                    "compile_s": time.perf_counter() - start,
                    "query_program_ms": mean_ms(fn, repeats),
                }
            except Exception as err:  # noqa: BLE001 - a setting the compiler refuses is a result
                row = {"block_rows": rows, "num_warps": warps, "error": f"{type(err).__name__}: {str(err)[:300]}"}
            tuning.append(row)
            print(f"sweep {row}", flush=True)
        fused_query.BLOCK_ROWS, fused_query.NUM_WARPS = defaults
    return {
        "in_hw": in_hw,
        "out_hw": out_hw,
        "hidden": size["hidden"],
        "agreement": agreement,
        "speed": speed,
        "sweep": tuning,
        "defaults": {"block_rows": defaults[0], "num_warps": defaults[1]},
    }


def markdown(r: dict[str, Any]) -> str:
    (h, w), (oh, ow) = r["in_hw"], r["out_hw"]
    lines = [
        f"# The fused query kernel on {r['device_kind']}",
        "",
        f"Command: `{r['command']}`",
        "",
        f"Date (UTC): {r['date_utc']}. JAX {r['jax_version']}. Random EDSR-baseline-LIIF (hidden {list(r['hidden'])}), "
        f"x4 render {h}x{w} -> {oh}x{ow}, tile by memory; times are means of {r['repeats']} calls after a compiling one.",
        "",
        "| Agreement fused vs xla | max abs | mean abs |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {v['max_abs']:.2e} | {v['mean_abs']:.2e} |" for k, v in r["agreement"].items()]
    lines += ["", "| Decoder (TF32) | ms per render | ms per query program |", "|---|---|---|"]
    lines += [f"| {k} | {v['render_ms']:.2f} | {v['query_program_ms']:.2f} |" for k, v in r["speed"].items()]
    lines += [
        "",
        f"Kernel settings (default {r['defaults']['block_rows']} rows x {r['defaults']['num_warps']} warps):",
        "",
        "| Rows per block | Warps | Compile (s) | ms per query program |",
        "|---|---|---|---|",
    ]
    for t in r["sweep"]:
        result = f"{t['compile_s']:.1f} | {t['query_program_ms']:.2f}" if "error" not in t else f"- | {t['error']}"
        lines.append(f"| {t['block_rows']} | {t['num_warps']} | {result} |")
    if r["platform"] == "cpu":
        lines += ["", "On a CPU the kernel runs in Pallas interpret mode: these times say nothing about a GPU."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python experiments/fused_check.py", description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), default="full")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--sweep", default="64x4,64x8,32x4,128x8", help="kernel settings ROWSxWARPS, comma separated")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("experiments/results"))
    args = p.parse_args(argv)
    sweep = [tuple(int(v) for v in s.split("x")) for s in args.sweep.split(",") if s]
    dev = jax.devices()[0]
    report = {
        "device": device_slug(dev.platform, dev.device_kind),
        "device_kind": dev.device_kind,
        "platform": dev.platform,
        "jax_version": jax.__version__,
        "repeats": args.repeats,
        "command": shlex.join(["python", "experiments/fused_check.py", *argv]),
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **run(SIZES[args.size], args.repeats, sweep),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"fused_check_{report['device']}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(report))
    print(f"wrote {stem}.json and {stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
