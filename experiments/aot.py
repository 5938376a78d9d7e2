"""Compile our training step and render programs for an accelerator we do not have, and read them.

    JAX_PLATFORMS=cpu python experiments/aot.py --target h100|h200|v5e-1|v5e-8|v4-8|v6e-1
        [--config quickstart,edsr-baseline-liif] [--programs train,render] [--dtype float32,bfloat16]
        [--renders x4,x30,4k8k,INHxINW-OUTHxOUTW] [--render_config edsr-baseline-liif] [--tile 256]
        [--decoder xla|pallas] [--batch_queries 30000] [--out experiments/results]

Needs the target's extra (`pip install -e ".[aot-tpu]"` or `".[aot-gpu]"`); no accelerator. For each
config and dtype it compiles the training step (`liif_jax.aot.train_step`: the config's model,
batch and optimizer, data-parallel over every chip of the target) and, with the model of
`--render_config`, the render programs of each render case (`render.programs`, one chip), and
writes `<out>/aot_<target>.{json,md}`: per program the compile time, memory against the chip's,
kernels by kind, FLOPs and HBM bytes read from the optimized HLO (loops by their trip counts),
how many times a render runs it, and an estimated time (`xla_tools.hlo_stats.Roofline` with the
fit of `experiments/aot_fit.py`). Renders use the tile and decoder a render picks on the target
(by memory; the fused Pallas kernel on a GPU) unless `--tile` / `--decoder` say otherwise; the
fused kernel's FLOPs, which its HLO does not show, are counted from the model (`estimate.fused_kernel_flops`). float32 on a GPU compiles with TF32 matmuls, as
`experiments/benchmark.py` measures; on a TPU at JAX's default precision.

Estimates are not measurements: they rank training steps and count bytes; 148494c's renders ran
25-50% slower than estimated (a per-chunk cost outside the compiled programs).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import pathlib
import re
import shlex
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # compile-only: nothing runs on a device

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from absl import app, flags  # noqa: E402

from liif_jax import aot  # noqa: E402
from liif_jax.models import build_model  # noqa: E402
from liif_jax.render import render
from xla_tools import estimate, hlo_stats  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
RENDERS = {  # the cases of experiments/benchmark.py: input and output sizes
    "x4": ((339, 510), (1356, 2040)),
    "x30": ((128, 128), (3840, 3840)),
    "4k8k": ((2160, 3840), (4320, 7680)),
}

TPU_NOTE = (
    "; on a TPU it is not calibrated at all (no TPU has measured our programs): its times only compare "
    "programs on the same chip"
)

_TARGET = flags.DEFINE_enum("target", None, list(aot.TARGETS), "compile target", required=True)
_CONFIGS = flags.DEFINE_list(
    "config",
    ["quickstart", "edsr-baseline-liif"],
    "training configs: names in liif_jax/configs/ or paths to such .py files",
)
_PROGRAMS = flags.DEFINE_list("programs", ["train", "render"], "train, render")
_DTYPES = flags.DEFINE_list("dtype", ["float32", "bfloat16"], "compute dtypes: float32 (TF32 on a GPU), bfloat16")
_RENDERS = flags.DEFINE_list(
    "renders",
    list(RENDERS),
    f"render cases: {', '.join(RENDERS)}, or any sizes as INHxINW-OUTHxOUTW (339x510-1356x2040)",
)
_RENDER_CONFIG = flags.DEFINE_string("render_config", "edsr-baseline-liif", "config whose model renders")
_TILE = flags.DEFINE_integer(
    "tile",
    None,
    "input pixels per render tile side (0: whole image; default: the render's "
    "own choice by memory on the target, `render.choose_tile`)",
)
_DECODER = flags.DEFINE_enum(
    "decoder",
    None,
    list(render.DECODERS),
    "render decoder (default: the target's, `render.resolve_decoder`; XLA's unless measured otherwise)",
)
_BATCH_QUERIES = flags.DEFINE_integer("batch_queries", render.DEFAULT_BATCH_QUERIES, "queries per decoder step")
_OUT = flags.DEFINE_string("out", str(REPO / "experiments" / "results"), "folder for aot_<target>.{json,md}")


def load_config(name: str):
    path = pathlib.Path(name) if name.endswith(".py") else REPO / "liif_jax" / "configs" / f"{name}.py"
    if not path.is_file():
        raise SystemExit(f"error: --config {name}: no such config ({path})")
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"aot_config_{path.stem.replace('-', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def render_sizes(case: str) -> tuple[tuple[int, int], tuple[int, int]]:
    if case in RENDERS:
        return RENDERS[case]
    m = re.fullmatch(r"(\d+)x(\d+)-(\d+)x(\d+)", case)
    if not m or 0 in map(int, m.groups()):
        raise app.UsageError(f"--renders: {case!r} is neither a case ({', '.join(RENDERS)}) nor INHxINW-OUTHxOUTW")
    h, w, oh, ow = map(int, m.groups())
    return (h, w), (oh, ow)


def precision(t: aot.Target, dtype: str) -> str:
    return "tensorfloat32" if t.platform == "cuda" and dtype == "float32" else "default"


class Compiler:
    """Reads each distinct program once (render cases often share one), printing progress."""

    def __init__(self, t: aot.Target):
        self.t, self.cache = t, {}

    def read(
        self, label: str, lowered: jax.stages.Lowered, opaque_flops: float = 0.0, opaque_class: str = "f32"
    ) -> dict:
        key = hashlib.sha256(lowered.as_text().encode()).hexdigest() + f"{opaque_flops} {opaque_class}"
        if key not in self.cache:
            print(f"compiling {label} for {self.t.name} ...", flush=True)
            r = estimate.read(lowered, self.t, opaque_flops=opaque_flops, opaque_class=opaque_class)
            self.cache[key] = {
                **r.to_json(),
                "first_label": label,
                "top": None
                if r.stats is None
                else hlo_stats.top_kernels(r.stats, estimate.H200_FIT, self.t.peak_flops, self.t.hbm_bandwidth, 8),
            }
            print(f"  {summary(self.cache[key], self.t)}", flush=True)
        return self.cache[key]


def summary(p: dict, t: aot.Target) -> str:
    if p["memory"] is None:
        return f"does NOT fit: {p['error']}"
    h = p["hlo"]
    return (
        f"{p['compile_s']:.1f} s compile ({p['compile_cpu_s']:.1f} s CPU), {p['total_bytes'] / 1e9:.3f} GB of {t.memory_bytes / 1e9:.1f} GB "
        f"({'fits' if p['fits'] else 'does NOT fit'}), {h['launches']} kernel launches, "
        f"{h['flops'] / 1e9:.1f} GFLOP, {h['bytes'] / 1e9:.3f} GB HBM, est. {1e3 * p['est_s']:.3f} ms"
    )


def run(t: aot.Target) -> dict:
    devs = aot.devices(t)
    compiler = Compiler(t)
    result = {
        "target": t.name,
        "description": t.description,
        "device_kind": devs[0].device_kind,
        "chips": len(devs),
        "memory_bytes_per_chip": t.memory_bytes,
        "hbm_bandwidth": t.hbm_bandwidth,
        "peak_flops": t.peak_flops,
        "roofline": {"efficiency": estimate.H200_FIT.efficiency, "launch_s": estimate.H200_FIT.launch_s},
        "note": estimate.ESTIMATE_NOTE + ("" if t.platform == "cuda" else TPU_NOTE),
        "jax": jax.__version__,
        "command": "python experiments/aot.py " + shlex.join(sys.argv[1:]),
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "train": [],
        "renders": [],
    }
    for dtype in _DTYPES.value:
        prec = precision(t, dtype)
        if "train" in _PROGRAMS.value:
            for name in _CONFIGS.value:
                config = load_config(name)
                config.compute_dtype = dtype
                lowered = aot.train_step(config, devs, precision=prec)
                p = compiler.read(f"train {name} {dtype}", lowered)
                result["train"].append(
                    {"config": name, "dtype": dtype, "precision": prec, "batch": config.data.train.batch_size, **p}
                )
        if "render" in _PROGRAMS.value:
            config = load_config(_RENDER_CONFIG.value)
            model = build_model(config.model.to_dict(), None if dtype == "float32" else jnp.bfloat16)
            for case in _RENDERS.value:
                in_hw, out_hw = render_sizes(case)
                decoder = render.resolve_decoder(model, _DECODER.value, devs[0])
                settings = dict(precision=prec, batch_queries=_BATCH_QUERIES.value, decoder=decoder)
                tile = _TILE.value
                if tile is None:
                    tile = aot.render_tile(model, in_hw, out_hw, devs[0], memory_bytes=t.memory_bytes, **settings)
                programs = aot.render_programs(model, in_hw, out_hw, devs[0], tile=tile, **settings)
                # The fused kernel is opaque to the HLO: its FLOPs, spread over the query programs' runs.
                kernel_flops = estimate.fused_kernel_flops(model, out_hw) if decoder == "pallas" else 0.0
                rows = {
                    prog: {
                        "runs": runs,
                        **compiler.read(
                            f"render {case} {dtype} {prog}",
                            low,
                            kernel_flops / runs if prog == "query_block" else 0.0,
                            "f32" if dtype == "float32" else "bf16",
                        ),
                    }
                    for prog, (low, runs) in programs.items()
                }
                est = (
                    None
                    if any(r["est_s"] is None for r in rows.values())
                    else sum(r["runs"] * r["est_s"] for r in rows.values())
                )
                result["renders"].append(
                    {
                        "case": case,
                        "config": _RENDER_CONFIG.value,
                        "dtype": dtype,
                        "precision": prec,
                        "in_hw": in_hw,
                        "out_hw": out_hw,
                        "tile": tile,
                        "decoder": decoder,
                        "tile_by_memory": _TILE.value is None,
                        "batch_queries": _BATCH_QUERIES.value,
                        "est_s": est,
                        "est_s_range": None if est is None else estimate.render_range(est, model, out_hw, decoder),
                        "fits": all(r["fits"] for r in rows.values()),
                        "programs": rows,
                    }
                )
    return result


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------


def gb(x: float | None) -> str:
    return "-" if x is None else f"{x / 1e9:.3f}"


def kinds(h: dict) -> str:
    return ", ".join(f"{v['launches']} {k}" for k, v in h["by_kind"].items())


def program_row(label: str, p: dict, runs: str = "") -> str:
    m = p["memory"]
    if m is None:
        return f"| {label} | {runs} | {p['compile_s']:.1f} | refused: {p['error']} | | | | no | | | | |"
    h = p["hlo"]
    return (
        f"| {label} | {runs} | {p['compile_s']:.1f} | {gb(m['argument'])} | {gb(m['output'] - m['alias'])} | "
        f"{gb(m['temp'])} | {gb(m['code'])} | {gb(p['total_bytes'])} {'yes' if p['fits'] else '**no**'} | "
        f"{kinds(h)} | {h['flops'] / 1e9:.1f} | {h['bytes'] / 1e9:.3f} | {1e3 * p['est_s']:.3f} |"
    )


def render_bytes(c: dict) -> float | None:
    """HBM bytes between kernels of one render: its programs' bytes times their runs."""
    if any(p["hlo"] is None for p in c["programs"].values()):
        return None
    return sum(p["runs"] * p["hlo"]["bytes"] for p in c["programs"].values())


def render_peak(c: dict) -> float | None:
    """Device bytes one render needs at once, summed as `render.footprint` sums them: the larger of
    encoding a tile while the previous tile's latents are held (when there are several tiles) and
    querying a block while the previous block's output is copied out."""
    enc, query = c["programs"]["encode_tile"], c["programs"]["query_block"]
    if enc["memory"] is None or query["memory"] is None:
        return None
    held = enc["memory"]["output"] if enc["runs"] > 1 else 0
    return max(enc["total_bytes"] + held, query["total_bytes"] + query["memory"]["output"])


def markdown(r: dict) -> str:
    lines = [
        f"# Deviceless compile for {r['description']} ({r['target']}): memory, kernels, bytes, estimated time",
        "",
        f"Command: `JAX_PLATFORMS=cpu {r['command']}`. Date (UTC): {r['date_utc']}. JAX {r['jax']}, compiled on a "
        f"CPU-only machine for {r['chips']} x {r['device_kind']} (compile-only devices; nothing ran on one).",
        "",
        f"Memory per chip: {r['memory_bytes_per_chip'] / 1e9:.1f} GB; HBM bandwidth {r['hbm_bandwidth'] / 1e12:.2f} TB/s; "
        f"peak {r['peak_flops']['bf16'] / 1e12:.0f} TFLOP/s bf16, {r['peak_flops']['f32'] / 1e12:.0f} float32 at the "
        f"default precision. Memory is `memory_analysis()` (arguments, outputs less donated, temporaries, code); "
        f"FLOPs (matrix products and convolutions) and HBM bytes between kernels are counted from the optimized HLO "
        f"(`experiments/xla_tools/hlo_stats.py`), loops by their trip counts. **Times are {r['note']}** "
        f"(e = {r['roofline']['efficiency']}, t_launch = {1e6 * r['roofline']['launch_s']:.2f} us; "
        "[aot_fit_h200.md](archive/42e58ae/aot_fit_h200.md)).",
        "",
    ]
    header = (
        "| Program | Runs per render | Compile (s) | Arguments (GB) | Outputs (GB) | Temporaries (GB) | Code (GB) | "
        "Total (GB), fits | Kernel launches by kind | GFLOP | HBM GB | Estimated ms |"
    )
    rule = "|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|"
    if r["train"]:
        lines += ["## Training step (one step, global batch over every chip)", "", header, rule]
        lines += [program_row(f"{t['config']} {t['dtype']} (batch {t['batch']})", t) for t in r["train"]]
        lines.append("")
    if r["renders"]:
        lines += [
            f"## Rendering ({r['renders'][0]['config']}, one chip)",
            "",
            "| Render | dtype | Decoder | Tile | Queries per step | Fits | Peak GB at once | HBM GB | "
            "HBM KB per output pixel | Estimated ms (a render; a range) |",
            "|---|---|---|---:|---:|---|---:|---:|---:|---:|",
        ]
        for c in r["renders"]:
            est = "-" if c.get("est_s_range") is None else estimate.ms_range(*c["est_s_range"])
            hbm = render_bytes(c)
            per_pixel = "-" if hbm is None else f"{hbm / (c['out_hw'][0] * c['out_hw'][1]) / 1e3:.2f}"
            tile = f"{c['tile']}{' (by memory)' if c.get('tile_by_memory') else ''}"
            lines.append(
                f"| {c['case']}: {c['in_hw'][0]}x{c['in_hw'][1]} -> {c['out_hw'][0]}x{c['out_hw'][1]} | "
                f"{c['dtype']} | {c.get('decoder', 'xla')} | {tile} | {c['batch_queries']} | "
                f"{'yes' if c['fits'] else '**no**'} | {gb(render_peak(c))} | {gb(hbm)} | {per_pixel} | {est} |"
            )
        lines += [
            "",
            "Peak GB at once: the larger of encoding a tile while the previous tile's latents are held and "
            "querying a block while the previous block's output is copied out (`render.footprint`, from "
            "`memory_analysis()`; compile-time autotuning buffers are not counted).",
            "",
            "Its programs (per run; a render runs each the times shown):",
            "",
            header,
            rule,
        ]
        for c in r["renders"]:
            lines += [
                program_row(f"{c['case']} {c['dtype']} {name}", p, str(p["runs"])) for name, p in c["programs"].items()
            ]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    for case in _RENDERS.value:
        render_sizes(case)  # a bad case fails before anything compiles
    t = aot.target(_TARGET.value)
    result = run(t)
    out = pathlib.Path(_OUT.value)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"aot_{t.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"aot_{t.name}.md").write_text(markdown(result) + "\n")
    print(f"wrote {out / f'aot_{t.name}.json'} and .md")


if __name__ == "__main__":
    app.run(main)
