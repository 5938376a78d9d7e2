"""Where the time goes: the top XLA ops of one training step and of an x4 render, per decoder.

    python experiments/profile_ops.py [--size full|small] [--top 30] [--out experiments/results]

Runs each program once to compile it, then `--repeats` times under `jax.profiler.trace`, reads the
trace the profiler writes (`perfetto_trace.json.gz`, Chrome trace events) and sums the time of
each XLA op: on a GPU the device's "XLA Ops" line (else its stream lines, kernel names); on a CPU,
the thunks of the XLA CPU client's threads. Writes `<out>/profile_<device>.md` and `.json`: per
program, the top ops by total time, their call counts and share of all op time.

Programs: the EDSR-baseline-LIIF training step (batch 16, 48 px inputs, 2304 queries) and
`render.upscale` x4 (339x510 -> 1356x2040, the tile chosen by memory) with each decoder, the fused
Pallas kernel ("pallas"; interpret mode on a CPU, slow) and XLA's ("xla"), float32 under TF32
matmuls as the benchmark; `--size small` shrinks the model and sizes (a CPU smoke test).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import functools
import gzip
import json
import pathlib
import shlex
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from liif_jax.configs.common import base_config, liif_spec
from liif_jax.evaluation.report import device_slug
from liif_jax.models import build_model
from liif_jax.render import render
from liif_jax.training import trainer

SIZES = {
    "full": {
        "encoder": {},
        "hidden": (256,) * 4,
        "batch": 16,
        "inp": 48,
        "queries": 2304,
        "render": ((339, 510), (1356, 2040)),
    },
    "small": {
        "encoder": {"n_resblocks": 2, "n_feats": 16},
        "hidden": (32, 32),
        "batch": 2,
        "inp": 8,
        "queries": 64,
        "render": ((17, 26), (68, 104)),
    },
}
SKIP = ("ThunkExecutor", "end: ", "ThreadpoolListener")  # CPU client bookkeeping, not ops


def trace_ops(fn: Callable[[], Any], repeats: int) -> tuple[dict[str, list[float]], str]:
    """{op name: [total us, count]} of `repeats` calls of fn (compiled before), and which trace line."""
    jax.block_until_ready(fn())
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp, create_perfetto_trace=True):
            for _ in range(repeats):
                jax.block_until_ready(fn())
        path = next(pathlib.Path(tmp).rglob("perfetto_trace.json.gz"))
        trace = json.loads(gzip.decompress(path.read_bytes()))
    return op_times(trace["traceEvents"] if isinstance(trace, dict) else trace)


def op_times(events: list[dict]) -> tuple[dict[str, list[float]], str]:
    """Op durations from Chrome trace events: device 'XLA Ops' lines, else device streams, else the
    CPU client's threads."""
    processes = {e["pid"]: e["args"]["name"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name"}
    threads = {
        (e["pid"], e.get("tid")): e["args"]["name"]
        for e in events
        if e.get("ph") == "M" and e.get("name") == "thread_name"
    }
    spans = [e for e in events if e.get("ph") == "X" and not e["name"].startswith(SKIP)]
    on_device = lambda e: processes.get(e["pid"], "").startswith(("/device:GPU", "/device:TPU"))
    line = lambda e: threads.get((e["pid"], e.get("tid")), "")
    choices = [
        ("device XLA Ops", lambda e: on_device(e) and line(e) == "XLA Ops"),
        ("device streams", lambda e: on_device(e) and line(e).startswith("Stream")),
        ("CPU client threads", lambda e: line(e).startswith(("tf_XLAPjRtCpuClient", "XLA"))),
    ]
    for name, keep in choices:
        chosen = [e for e in spans if keep(e)]
        if chosen:
            totals: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
            for e in chosen:
                totals[e["name"]][0] += float(e.get("dur", 0))
                totals[e["name"]][1] += 1
            return dict(totals), name
    return {}, "none found"


def table(totals: dict[str, list[float]], top: int, repeats: int) -> list[dict[str, Any]]:
    all_us = sum(t for t, _ in totals.values()) or 1.0
    rows = sorted(totals.items(), key=lambda kv: -kv[1][0])[:top]
    return [
        {"op": name, "ms_per_call": t / 1e3 / repeats, "count_per_call": n / repeats, "share": t / all_us}
        for name, (t, n) in rows
    ]


def programs(size: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    """name -> a call of the compiled program, on random data and params."""
    model = build_model(liif_spec("edsr-baseline", size["encoder"], hidden_list=size["hidden"]))
    params = jax.jit(model.init, static_argnums=1)(jax.random.key(0), size["inp"])
    tx = trainer.make_optimizer(base_config(model.spec, {}, None), steps_per_epoch=1000)
    steps = trainer.compile_steps(model, tx, trainer.make_mesh())
    state = jax.jit(lambda p: trainer.TrainState.create(model, tx, p), out_shardings=steps.replicated)(params)
    rng = np.random.default_rng(0)
    b, n, q = size["batch"], size["inp"], size["queries"]
    batch = {
        "inp": rng.uniform(-1, 1, (b, n, n, 3)),
        "coord": rng.uniform(-1, 1, (b, q, 2)),
        "cell": np.full((b, q, 2), 2 / (4 * n)),
        "gt": rng.uniform(-1, 1, (b, q, 3)),
    }
    batch = trainer.to_global({k: v.astype(np.float32) for k, v in batch.items()}, steps.batch)

    in_hw, out_hw = size["render"]
    img = rng.random((*in_hw, 3), dtype=np.float32)
    renders = {}
    for decoder in render.DECODERS:
        tile = render.choose_tile(model, params, in_hw, out_hw, decoder=decoder)
        renders[f"render_{decoder}"] = functools.partial(
            render.upscale, model, params, img, out_hw, tile=tile, decoder=decoder
        )
    holder = [state]  # the step donates its state: each call trains on the last call's

    def train_step():
        holder[0], loss = steps.train(holder[0], batch)
        return loss

    return {"train_step": train_step, **renders}


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Top XLA ops on {report['device_kind']}",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Date (UTC): {report['date_utc']}. JAX {report['jax_version']}. Per call, mean of {report['repeats']} calls "
        "after one compiling call; float32 under TF32 matmuls.",
        "",
    ]
    for name, prog in report["programs"].items():
        lines += [
            f"## {name} ({prog['source']}; all ops {prog['total_ms_per_call']:.3f} ms per call)",
            "",
            "| Op | ms per call | calls | share |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| `{r['op'][:90]}` | {r['ms_per_call']:.3f} | {r['count_per_call']:g} | {100 * r['share']:.1f}% |"
            for r in prog["top"]
        ]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), default="full")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("experiments/results"))
    args = p.parse_args(argv)
    dev = jax.devices()[0]
    report: dict[str, Any] = {
        "device": device_slug(dev.platform, dev.device_kind),
        "device_kind": dev.device_kind,
        "jax_version": jax.__version__,
        "repeats": args.repeats,
        "command": shlex.join(["python", "experiments/profile_ops.py", *(argv if argv is not None else sys.argv[1:])]),
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "programs": {},
    }
    with jax.default_matmul_precision("tensorfloat32"):
        for name, fn in programs(SIZES[args.size]).items():
            totals, source = trace_ops(fn, args.repeats)
            report["programs"][name] = {
                "source": source,
                "top": table(totals, args.top, args.repeats),
                "total_ms_per_call": sum(t for t, _ in totals.values()) / 1e3 / args.repeats,
            }
            print(f"{name}: {len(totals)} ops from {source}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"profile_{report['device']}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(report) + "\n")
    print(f"wrote {stem}.json and {stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
