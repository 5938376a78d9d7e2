"""The deviceless estimate beside a GPU's measurement of the same programs, at the same commit.

    JAX_PLATFORMS=cpu python experiments/aot_compare.py --benchmark OUT/benchmark_<gpu>.json [--target h100|h200]
        [--out OUT]

Run it on the CPU after a GPU benchmark, so that every GPU run checks the estimate
(`xla_tools.estimate.H200_FIT`, fitted to measured training steps: `experiments/aot_fit.py`) on
the code it measured. For every case that `experiments/benchmark.py` timed (the model-only training
step; the renders), it compiles the same program at the same sizes for a compile-only GPU of that
kind (`liif_jax.aot`; the target follows the benchmark's device unless given), estimates its time
(a render: each program times its runs) and writes `<out>/aot_compare_<target>.{json,md}`:
measured, estimated and their difference per case. Needs the `aot-gpu` extra; no GPU is used.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # compile-only: nothing runs on a device

import jax.numpy as jnp  # noqa: E402

from liif_jax import aot  # noqa: E402
from liif_jax.configs.common import base_config, downsampled  # noqa: E402
from liif_jax.models import build_model  # noqa: E402
from liif_jax.training import trainer
from xla_tools import estimate  # noqa: E402

TARGET_BY_KIND = {"H100": "h100", "H200": "h200"}  # a word of the benchmark's device_kind -> target


def target_for(device_kind: str) -> str:
    found = [t for word, t in TARGET_BY_KIND.items() if word in device_kind]
    if len(found) != 1:
        raise SystemExit(
            f"error: no compile target for the benchmark's device {device_kind!r}: give --target "
            f"({', '.join(aot.TARGETS)})"
        )
    return found[0]


def precision(t: aot.Target, dtype: str) -> str:
    """As `experiments/benchmark.py` (TF32 for float32 on a GPU) and `experiments/aot.py`."""
    return "tensorfloat32" if t.platform == "cuda" and dtype == "float32" else "default"


def estimate_case(case: str, r: dict, settings: dict, dtype: str, t: aot.Target, devs: list) -> dict:
    """Compiles one benchmark case's programs for `t` and estimates one run of the case."""
    model_dtype = trainer.compute_dtype(dtype)
    prec = precision(t, dtype)
    if case.startswith("train"):
        c = base_config(
            r["spec"],
            {},
            None,
            train_wrapper=downsampled(settings["inp_size"], sample_q=settings["sample_q"]),
            batch_size=settings["batch"],
        )
        c.compute_dtype = dtype
        programs = {"train_step": (aot.train_step(c, devs, precision=prec), 1)}
        kernel_flops, flops_class = 0.0, "f32"
    else:
        model = build_model(r["spec"], model_dtype)
        mlp = jnp.bfloat16 if r.get("render_mlp_dtype") == "bfloat16" else None
        decoder = r.get("decoder") or "xla"  # benchmarks before the fused kernel ran XLA's decoder
        programs = aot.render_programs(
            model,
            tuple(r["in_hw"]),
            tuple(r["out_hw"]),
            devs[0],
            precision=prec,
            tile=r.get("tile", settings.get("tile")),
            batch_queries=r["batch_queries"],
            mlp_dtype=mlp,
            decoder=decoder,
        )
        # The fused kernel is opaque to the HLO: its FLOPs, spread over the query program's runs.
        kernel_flops = estimate.fused_kernel_flops(model, tuple(r["out_hw"])) if decoder == "pallas" else 0.0
        flops_class = "bf16" if model_dtype is not None or mlp is not None else "f32"
    reports = {
        name: (
            estimate.read(
                low, t, opaque_flops=kernel_flops / runs if name == "query_block" else 0.0, opaque_class=flops_class
            ),
            runs,
        )
        for name, (low, runs) in programs.items()
    }
    est = None if any(p.est_s is None for p, _ in reports.values()) else sum(p.est_s * n for p, n in reports.values())
    return {
        "est_ms": None if est is None else 1e3 * est,
        "programs": {
            name: {
                "runs": n,
                "launches": p.stats and p.stats.launches,
                "total_bytes": p.total_bytes,
                "est_ms": None if p.est_s is None else 1e3 * p.est_s,
            }
            for name, (p, n) in reports.items()
        },
    }


def measured_ms(case: str, r: dict) -> float | None:
    return r.get("model_only", {}).get("ms_per_step") if case.startswith("train") else r.get("ms")


def compare(bench: dict, t: aot.Target) -> list[dict]:
    devs = aot.devices(t)
    rows = []
    for dtype, cases in bench["dtypes"].items():
        for case, r in cases.items():
            ms = measured_ms(case, r)
            if ms is None or "spec" not in r:  # failed or compile-only cases have nothing to compare
                continue
            if not case.startswith("train") and r.get("tile", bench["settings"].get("tile")) is None:
                print(f"{case} {dtype}: skipped, the benchmark predates tiled rendering (no tile)", flush=True)
                continue
            print(f"{case} {dtype}: measured {ms:.2f} ms; compiling for {t.name} ...", flush=True)
            row = {
                "case": case,
                "dtype": dtype,
                "measured_ms": ms,
                **estimate_case(case, r, bench["settings"], dtype, t, devs),
            }
            row["error"] = None if row["est_ms"] is None else row["est_ms"] / ms - 1
            print(f"  estimated {row['est_ms']:.2f} ms ({100 * row['error']:+.0f}%)", flush=True)
            rows.append(row)
    return rows


def markdown(result: dict) -> str:
    lines = [
        f"# Estimated beside measured: {result['benchmark']['device_kind']} ({result['target']})",
        "",
        f"Command: `JAX_PLATFORMS=cpu {result['command']}`. Date (UTC): {result['date_utc']}. Measured: "
        f"`{result['benchmark']['file']}` ({result['benchmark']['command']}, {result['benchmark']['date_utc']}). "
        f"Estimated: the same programs compiled for a compile-only {result['target']} (no GPU used), "
        f"{result['note']} (e = {result['roofline']['efficiency']}, t_launch = "
        f"{1e6 * result['roofline']['launch_s']:.2f} us). The benchmark ran on {result['benchmark']['device_count']} "
        "device(s); the estimates are for one.",
        "",
        "| Case | dtype | Programs (runs) | Kernel launches | Measured (ms) | Estimated (ms) | Estimated / measured - 1 |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        progs = ", ".join(f"{k} x{p['runs']}" for k, p in r["programs"].items())
        launches = sum((p["launches"] or 0) * p["runs"] for p in r["programs"].values())
        est = "-" if r["est_ms"] is None else f"{r['est_ms']:.2f}"
        err = "-" if r["error"] is None else f"{100 * r['error']:+.0f}%"
        lines.append(f"| {r['case']} | {r['dtype']} | {progs} | {launches} | {r['measured_ms']:.2f} | {est} | {err} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmark", required=True, help="a benchmark_<device>.json of experiments/benchmark.py")
    parser.add_argument("--target", choices=list(aot.TARGETS), help="compile target (default: the benchmark's GPU)")
    parser.add_argument(
        "--out", default=None, help="folder for aot_compare_<target>.{json,md} (default: the benchmark's)"
    )
    args = parser.parse_args(argv)
    path = pathlib.Path(args.benchmark)
    if not path.is_file():
        parser.error(f"--benchmark {path}: no such file (experiments/benchmark.py writes benchmark_<device>.json)")
    bench = json.loads(path.read_text())
    t = aot.target(args.target or target_for(bench["device_kind"]))
    result = {
        "target": t.name,
        "rows": compare(bench, t),
        "benchmark": {
            "file": path.name,
            "device_kind": bench["device_kind"],
            "command": bench.get("command"),
            "device_count": bench.get("device_count", 1),
            "date_utc": bench.get("date_utc"),
        },
        "roofline": {"efficiency": estimate.H200_FIT.efficiency, "launch_s": estimate.H200_FIT.launch_s},
        "note": estimate.ESTIMATE_NOTE,
        "command": "python experiments/aot_compare.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    out = pathlib.Path(args.out) if args.out else path.parent
    out.mkdir(parents=True, exist_ok=True)
    (out / f"aot_compare_{t.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"aot_compare_{t.name}.md").write_text(markdown(result))
    print(f"wrote {out / f'aot_compare_{t.name}.md'} and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
