"""First contact with a GPU: is the fused query kernel correct and faster there? Five minutes, one process.

    python experiments/first_contact.py [--out DIR] [--small] [--photo PATH] [--budget 300]

Each step has a time limit and a pass/fail line, and its result goes into
`<out>/first_contact_<device>.json` as soon as it is known (a step that never finished shows as
"started"), so a run cut short still reports what it reached:

  environment   GPU, compute capability, jax and plugin versions
  kernel        the kernel against float64 numpy: random inputs with padding, n_valid below Q, rows
                0 and N-1, a batch of two; relative error <= 1e-5 at highest, 2e-3 TF32, 3e-2 bf16;
                finite; every valid output written (the allocator is filled with NaN first)
  memcheck      the same small case under `compute-sanitizer --tool memcheck` (when it exists): 0 errors
  photo         the shipped model on a photograph at x4 and x2.5, tiles 0 and 48, both decoders:
                max difference and PSNR difference (<= 0.01 dB); fails if the kernel fell back
  speed         x4 render (339x510 -> 1356x2040) per decoder, 5 runs after a compiling one, and each
                decoder's query program alone
  peak_memory   each decoder's render in a fresh process (compiled programs from the cache): peak bytes
  ncu           one `ncu` launch of the kernel (when it exists): registers, shared memory, occupancy,
                L2 and DRAM bytes, local-memory traffic
  variants      if time remains: kernel block rows x warps, query program time

`--small` is the CPU dry run (tiny sizes, the kernel in Pallas interpret mode). All compiles share a
persistent cache in `<out>/jax_cache`. Deviceless estimates run afterwards on a CPU machine.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import faulthandler
import json
import math
import os
import pathlib
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from liif_jax.formats.checkpoints import load_model
from liif_jax.kernels import fused_query
from liif_jax.render import decoders, render

SCRIPT = pathlib.Path(__file__).resolve()
LIMITS = {  # seconds per step; their sum is the run's five minutes
    "environment": 15,
    "kernel": 60,
    "memcheck": 40,
    "photo": 60,
    "speed": 45,
    "peak_memory": 40,
    "ncu": 40,
}
VARIANTS = [(32, 4), (64, 8), (128, 8), (16, 4)]
PSNR_TOLERANCE_DB = 0.01
NCU_METRICS = (
    "launch__registers_per_thread,launch__shared_mem_per_block_static,launch__shared_mem_per_block_dynamic,"
    "sm__warps_active.avg.pct_of_peak_sustained_active,launch__occupancy_limit_registers,lts__t_bytes.sum,"
    "dram__bytes.sum,l1tex__t_bytes_pipe_lsu_mem_local_op_ld.sum,l1tex__t_bytes_pipe_lsu_mem_local_op_st.sum,"
    "gpu__time_duration.sum"
)


class StepTimeout(Exception):
    pass


class Report:
    """The run's JSON, rewritten whole (through a temporary file) after every change."""

    def __init__(self, path: pathlib.Path, head: dict[str, Any]):
        self.path, self.data = path, {**head, "steps": {}}
        self.write()

    def write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str) + "\n")
        tmp.replace(self.path)

    def step(self, name: str, limit: float, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Runs one step under its time limit: a soft one (an exception in Python) and a hard one (the
        process ends, leaving the step as "started")."""
        entry = self.data["steps"][name] = {"status": "started", "limit_s": limit}
        self.write()
        start = time.perf_counter()
        signal.signal(signal.SIGALRM, _raise_timeout)
        signal.setitimer(signal.ITIMER_REAL, limit)
        faulthandler.dump_traceback_later(limit + 30, exit=True)
        try:
            entry.update(fn())
            entry["status"] = entry.get("status_override", "pass" if entry.get("ok", True) else "fail")
        except StepTimeout:
            entry["status"] = "timeout"
        except Exception as err:  # noqa: BLE001 - a step's error is its result
            entry.update(status="error", error=f"{type(err).__name__}: {str(err)[:1000]}")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            faulthandler.cancel_dump_traceback_later()
        entry.pop("status_override", None)
        entry["seconds"] = round(time.perf_counter() - start, 2)
        self.write()
        print(f"{name}: {entry['status'].upper()} ({entry['seconds']} s of {limit} s)", flush=True)
        return entry


def _raise_timeout(*_):
    raise StepTimeout


# ---------------------------------------------------------------------------------------------
# (a) environment
# ---------------------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    from importlib import metadata

    dev = jax.devices()[0]
    versions = {}
    for pkg in ("jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda13-pjrt", "jax-cuda12-plugin", "jax-cuda12-pjrt"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[pkg] = metadata.version(pkg)
    smi = shutil.which("nvidia-smi")
    return {
        "platform": dev.platform,
        "device_kind": dev.device_kind,
        "compute_capability": decoders.compute_capability(dev),
        "versions": versions,
        "nvidia_smi": subprocess.run(
            [smi, "--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        if smi
        else None,
        "tools": {t: shutil.which(t) for t in ("compute-sanitizer", "ncu")},
    }


# ---------------------------------------------------------------------------------------------
# (b) the kernel against float64
# ---------------------------------------------------------------------------------------------


def kernel_case(small: bool, seed: int = 0) -> dict[str, Any]:
    """Random inputs of a batch of two images' latent rows (query-major, as `liif.query_fused`
    lays them out), Q not a multiple of the block, rows 0 and N-1 among the indices."""
    rng = np.random.default_rng(seed)
    widths = (32, 64, 32) if small else (64, 256, 256, 256, 256)
    hw, q, n, e = (20, 75, 4, 4) if small else (4096, 5000, 4, 4)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)
    layers = [(f(a, b) / np.sqrt(a), f(b) * 0.1) for a, b in zip(widths[1:], widths[2:])]
    layers.append((f(widths[-1], 3) / np.sqrt(widths[-1]), f(3) * 0.1))
    table = f(2 * hw, widths[1])
    image = np.arange(q) % 2  # query-major: queries alternate between the two images
    index = (image * hw + rng.integers(0, hw, (n, q))).astype(np.int32)
    index[0, 0], index[-1, -1] = 0, 2 * hw - 1
    weights = rng.random((n, q)).astype(np.float32)
    return {
        "table": table,
        "index": index,
        "terms": f(n, e, q),
        "weights": weights / weights.sum(0),
        "w_terms": f(e, widths[1]) * 0.5,
        "b0": f(widths[1]) * 0.1,
        "layers": layers,
        "n_valid": q - 3,
    }


def float64_reference(c: dict[str, Any]) -> np.ndarray:
    d = lambda a: np.asarray(a, np.float64)
    out = np.zeros((3, c["index"].shape[1]))
    for k in range(c["index"].shape[0]):
        h = np.maximum(d(c["table"])[c["index"][k]] + d(c["b0"]) + d(c["terms"][k]).T @ d(c["w_terms"]), 0)
        for w, b in c["layers"][:-1]:
            h = np.maximum(h @ d(w) + d(b), 0)
        out += ((h @ d(c["layers"][-1][0]) + d(c["layers"][-1][1])) * d(c["weights"][k])[:, None]).T
    return out


def run_kernel(c: dict[str, Any], compute_dtype=None, **kw) -> np.ndarray:
    args = [jnp.asarray(c[k]) for k in ("table", "index", "terms", "weights", "w_terms", "b0")]
    layers = [(jnp.asarray(w), jnp.asarray(b)) for w, b in c["layers"]]
    fn = jax.jit(lambda *a: fused_query.ensemble_mlp(*a, layers, c["n_valid"], compute_dtype, **kw))
    jax.block_until_ready(jnp.full((64 << 20,), jnp.nan, jnp.float32)).delete()  # poison what the allocator reuses
    return np.asarray(fn(*args))


KERNEL_TOLERANCE = {  # mode: (matmul precision, MLP dtype, relative error bound)
    "highest": ("highest", None, decoders.TOLERANCE["highest"]),
    "tf32": ("tensorfloat32", None, decoders.TOLERANCE["tf32"]),
    "bf16": ("tensorfloat32", jnp.bfloat16, decoders.TOLERANCE["bf16"]),
}


def kernel_step(small: bool) -> dict[str, Any]:
    c = kernel_case(small)
    want = float64_reference(c)[:, : c["n_valid"]]
    modes = {}
    for mode, (precision, dtype, bound) in KERNEL_TOLERANCE.items():
        with jax.default_matmul_precision(precision):
            got = run_kernel(c, dtype)[:, : c["n_valid"]]
        err = float(np.abs(got - want).max() / np.abs(want).max()) if np.all(np.isfinite(got)) else math.inf
        modes[mode] = {"max_rel_error": err, "bound": bound, "ok": bool(err <= bound)}
        print(f"  kernel {mode}: relative error {err:.2e} (bound {bound:.0e})", flush=True)
    return {
        "q": int(c["index"].shape[1]),
        "n_valid": c["n_valid"],
        "modes": modes,
        "ok": all(m["ok"] for m in modes.values()),
    }


# ---------------------------------------------------------------------------------------------
# (c), (e) peak memory, (f): steps in a subprocess of this script
# ---------------------------------------------------------------------------------------------


def subprocess_step(cmd: list[str], limit: float, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=limit, env=env)


def memcheck_step(tool: str | None, child: Callable[[str], list[str]], limit: float, env) -> dict[str, Any]:
    if tool is None:
        return {"status_override": "skip", "reason": "compute-sanitizer not found"}
    proc = subprocess_step([tool, "--tool", "memcheck", *child("kernel_once")], limit - 5, env)
    found = re.search(r"ERROR SUMMARY: (\d+) error", proc.stdout + proc.stderr)
    errors = int(found.group(1)) if found else None
    return {
        "errors": errors,
        "returncode": proc.returncode,
        "tail": (proc.stdout + proc.stderr)[-1500:],
        "ok": errors == 0,
    }


def ncu_step(tool: str | None, child: Callable[[str], list[str]], limit: float, env) -> dict[str, Any]:
    if tool is None:
        return {"status_override": "skip", "reason": "ncu not found"}
    cmd = [tool, "--kernel-name", "regex:ensemble_mlp", "--launch-count", "1", "--metrics", NCU_METRICS, "--csv"]
    proc = subprocess_step([*cmd, *child("kernel_once")], limit - 5, env)
    metrics = {}
    for line in proc.stdout.splitlines():
        cells = [c.strip('"') for c in line.split('","')]
        if len(cells) >= 3 and cells[-3] in NCU_METRICS.split(","):
            metrics[cells[-3]] = f"{cells[-1]} {cells[-2]}".strip()
    return {"metrics": metrics, "returncode": proc.returncode, "tail": proc.stderr[-1500:], "ok": bool(metrics)}


# ---------------------------------------------------------------------------------------------
# (d) the shipped model on a photograph, (e) speed
# ---------------------------------------------------------------------------------------------


def load_photo(path: str | None, small: bool) -> np.ndarray:
    if path:
        from liif_jax.data import imaging

        img = imaging.to_float01(imaging.load_rgb(path))
    else:
        from skimage import data

        img = data.chelsea().astype(np.float32) / 255
    return img[:20, :25] if small else img


def downscale(img: np.ndarray, scale: float) -> np.ndarray:
    from PIL import Image

    h, w = img.shape[:2]
    size = (max(1, round(w / scale)), max(1, round(h / scale)))
    pil = Image.fromarray((img * 255).round().astype(np.uint8)).resize(size, Image.BICUBIC)
    return np.asarray(pil, np.float32) / 255


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1 / max(float(np.mean((a - b) ** 2)), 1e-12)))


def photo_step(model, params, photo: np.ndarray, small: bool) -> dict[str, Any]:
    device, rows = jax.devices()[0], []
    for scale in (4.0, 2.5):
        lr = downscale(photo, scale)
        for tile in (0, 8 if small else 48):
            out = {d: render.upscale(model, params, lr, photo.shape[:2], tile=tile, decoder=d) for d in render.DECODERS}
            if decoders.failed(device):
                return {"rows": rows, "ok": False, "fell_back": decoders._failed[device.device_kind]}
            row = {
                "scale": scale,
                "tile": tile,
                "max_abs_diff": float(np.abs(out["pallas"] - out["xla"]).max()),
                "psnr_xla": psnr(out["xla"], photo),
                "psnr_pallas": psnr(out["pallas"], photo),
            }
            row["ok"] = abs(row["psnr_pallas"] - row["psnr_xla"]) <= PSNR_TOLERANCE_DB
            rows.append(row)
            print(
                f"  photo x{scale:g} tile {tile}: max diff {row['max_abs_diff']:.2e}, PSNR {row['psnr_xla']:.3f} dB "
                f"vs {row['psnr_pallas']:.3f} dB",
                flush=True,
            )
    return {"rows": rows, "psnr_tolerance_db": PSNR_TOLERANCE_DB, "ok": all(r["ok"] for r in rows)}


def speed_input(photo: np.ndarray, small: bool) -> tuple[np.ndarray, tuple[int, int]]:
    """The x4 render of the estimates (339x510 -> 1356x2040), from the photograph resized."""
    from PIL import Image

    in_hw = (9, 12) if small else (339, 510)
    pil = Image.fromarray((photo * 255).round().astype(np.uint8)).resize(in_hw[::-1], Image.BICUBIC)
    return np.asarray(pil, np.float32) / 255, (4 * in_hw[0], 4 * in_hw[1])


def mean_ms(fn: Callable[[], Any], repeats: int) -> float:
    jax.block_until_ready(fn())
    start = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn())
    return 1e3 * (time.perf_counter() - start) / repeats


def query_program(model, params, img: np.ndarray, out_hw: tuple[int, int], decoder: str) -> Callable[[], Any]:
    """The render's first query program (whole image as one tile), on its own."""
    p = render.plan(model, img.shape[:2], out_hw, 0, decoder)
    grid = render.encode_tile(
        model, params, jnp.asarray((img[None] - 0.5) / 0.5), jnp.zeros(2, jnp.int32), img.shape[:2]
    )
    lattice = render.liif.lattice(img.shape[:2])
    geometry = jnp.asarray(render.output_geometry(out_hw))
    rows, cols = (np.array(r, np.int32) for r in (p.rows.blocks(0)[0], p.cols.blocks(0)[0]))
    block = (p.rows.block, p.cols.block)
    bq = render.default_batch_queries()
    return lambda: render.query_block(
        model, params, grid, lattice, geometry, rows, cols, block, bq, True, None, decoder
    )


def speed_step(model, params, photo: np.ndarray, small: bool, repeats: int) -> dict[str, Any]:
    img, out_hw = speed_input(photo, small)
    result = {"in_hw": img.shape[:2], "out_hw": out_hw, "repeats": repeats}
    with jax.default_matmul_precision("tensorfloat32"):
        for d in render.DECODERS:
            result[d] = {
                "render_ms": mean_ms(lambda: render.upscale(model, params, img, out_hw, tile=0, decoder=d), repeats),
                "query_program_ms": mean_ms(query_program(model, params, img, out_hw, d), repeats),
            }
            print(f"  speed {d}: {result[d]}", flush=True)
    return result


def peak_memory_child(decoder: str, small: bool, photo_path: str | None) -> None:
    model, params = load_model("pretrained:edsr-baseline-liif")
    img, out_hw = speed_input(load_photo(photo_path, small), small)
    with jax.default_matmul_precision("tensorfloat32"):
        render.upscale(model, params, img, out_hw, tile=0, decoder=decoder)
    stats = jax.devices()[0].memory_stats() or {}
    print(json.dumps({"peak_bytes": stats.get("peak_bytes_in_use"), "failed": decoders.failed(jax.devices()[0])}))


def variants_step(model, params, photo: np.ndarray, small: bool, deadline: float) -> dict[str, Any]:
    img, out_hw = speed_input(photo, small)
    rows, defaults = [], (fused_query.BLOCK_ROWS, fused_query.NUM_WARPS)
    try:
        for block_rows, warps in VARIANTS:
            if time.monotonic() > deadline:
                break
            fused_query.BLOCK_ROWS, fused_query.NUM_WARPS = block_rows, warps
            jax.clear_caches()
            with jax.default_matmul_precision("tensorfloat32"):
                ms = mean_ms(query_program(model, params, img, out_hw, "pallas"), 3)
            rows.append({"block_rows": block_rows, "num_warps": warps, "query_program_ms": ms})
    finally:
        fused_query.BLOCK_ROWS, fused_query.NUM_WARPS = defaults
    return {"variants": rows}


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python experiments/first_contact.py", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("experiments/results"))
    p.add_argument("--small", action="store_true", help="the CPU dry run: tiny sizes")
    p.add_argument("--photo", help="photograph (default: scikit-image's chelsea)")
    p.add_argument("--budget", type=float, default=sum(LIMITS.values()), help="seconds; variants run only within it")
    p.add_argument("--child", help=argparse.SUPPRESS)  # kernel_once | peak_memory:DECODER
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.out / "jax_cache"
    jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    if args.child == "kernel_once":
        with jax.default_matmul_precision("tensorfloat32"):
            run_kernel(kernel_case(small=True))
        return 0
    if args.child and args.child.startswith("peak_memory:"):
        peak_memory_child(args.child.split(":")[1], args.small, args.photo)
        return 0

    t0 = time.monotonic()
    dev = jax.devices()[0]
    slug = re.sub(r"[^a-z0-9]+", "_", f"{dev.platform} {dev.device_kind}".lower()).strip("_")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=SCRIPT.parent).stdout
    report = Report(
        args.out / f"first_contact_{slug}.json",
        {
            "command": shlex.join(["python", "experiments/first_contact.py", *argv]),
            "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "commit": commit.strip() or None,
        },
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SCRIPT.parent.parent), os.environ.get("PYTHONPATH", "")])}
    child = lambda what: [
        sys.executable,
        str(SCRIPT),
        "--out",
        str(args.out),
        *(["--small"] if args.small else []),
        *(["--photo", args.photo] if args.photo else []),
        "--child",
        what,
    ]
    env_info = report.step("environment", LIMITS["environment"], environment)
    report.step("kernel", LIMITS["kernel"], lambda: kernel_step(args.small))
    tools = env_info.get("tools", {})
    report.step(
        "memcheck",
        LIMITS["memcheck"],
        lambda: memcheck_step(tools.get("compute-sanitizer"), child, LIMITS["memcheck"], env),
    )
    model, params = load_model("pretrained:edsr-baseline-liif")
    photo = load_photo(args.photo, args.small)
    report.step("photo", LIMITS["photo"], lambda: photo_step(model, params, photo, args.small))
    report.step("speed", LIMITS["speed"], lambda: speed_step(model, params, photo, args.small, 1 if args.small else 5))

    def peak() -> dict[str, Any]:
        out = {}
        for d in render.DECODERS:
            proc = subprocess_step(child(f"peak_memory:{d}"), LIMITS["peak_memory"] / 2, env)
            out[d] = (
                json.loads(proc.stdout.strip().splitlines()[-1])
                if proc.returncode == 0
                else {"error": proc.stderr[-800:]}
            )
        return {**out, "ok": all("error" not in v for v in out.values())}

    report.step("peak_memory", LIMITS["peak_memory"], peak)
    report.step("ncu", LIMITS["ncu"], lambda: ncu_step(tools.get("ncu"), child, LIMITS["ncu"], env))
    left = args.budget - (time.monotonic() - t0)
    if left > 20:
        report.step(
            "variants", left, lambda: variants_step(model, params, photo, args.small, time.monotonic() + left - 15)
        )
    report.data["total_s"] = round(time.monotonic() - t0, 1)
    report.data["passed"] = all(s["status"] in ("pass", "skip") for s in report.data["steps"].values())
    report.write()
    print(f"{'PASS' if report.data['passed'] else 'FAIL'}: {report.path} ({report.data['total_s']} s)", flush=True)
    return 0 if report.data["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
