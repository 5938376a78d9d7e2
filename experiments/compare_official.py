"""The official PyTorch LIIF and liif_jax timed side by side, on the same machine, in one run.

    python experiments/compare_official.py --official PATH/TO/liif [--size full|small]
        [--torch-python PYTHON] [--steps N] [--out experiments/results]

`--official` is a checkout of yinboc/liif (nothing of it is copied here). Both sides get the same
work: EDSR-baseline-LIIF, one training step (forward, L1 loss, backward, Adam) on a fixed random
batch (batch 16, 48 px inputs, 2304 queries: the official recipe), and one x4 render in chunks of
30000 queries (the official `batched_predict` / `eval_bsize`), after warm-up. The official side
runs with PyTorch's defaults, as the official scripts do (on GPU: cuDNN convolutions may use TF32,
matmuls do not); ours in float32 with JAX's default precision (TF32 on GPU) and in bfloat16.

The official side runs in a subprocess of `--torch-python` (default: this Python), so liif_jax's
environment needs no PyTorch: on a machine whose Python has both, one command does everything.
`--size small` shrinks the batch and the render for a CPU. Writes
`<out>/official_vs_ours_<device>.json` and `.md` with the command, the device and the date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import shlex
import subprocess
import sys
import time
import types

import numpy as np

SPEC = {
    "name": "liif",
    "args": {
        "encoder_spec": {"name": "edsr-baseline", "args": {"no_upsampling": True}},
        "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [256, 256, 256, 256]}},
    },
}
SIZES = {  # batch, input side, queries, render input (H, W), render scale
    "full": {"batch": 16, "inp": 48, "queries": 2304, "render_in": (339, 510), "render_scale": 4},
    "small": {"batch": 4, "inp": 48, "queries": 2304, "render_in": (64, 96), "render_scale": 4},
}
CHUNK = 30000


def make_inputs(size: dict) -> dict[str, np.ndarray]:
    """The same random batch and render input for both sides (NCHW for the official one)."""
    rng = np.random.default_rng(0)
    b, n, q = size["batch"], size["inp"], size["queries"]
    coord = rng.uniform(-1, 1, (b, q, 2)).astype(np.float32)
    return {
        "inp": rng.uniform(-1, 1, (b, 3, n, n)).astype(np.float32),
        "coord": coord,
        "cell": np.full((b, q, 2), 2 / (n * 3), np.float32),
        "gt": rng.uniform(-1, 1, (b, q, 3)).astype(np.float32),
        "render": rng.uniform(-1, 1, (1, 3, *size["render_in"])).astype(np.float32),
    }


def timed(fn, sync, steps: int) -> dict[str, float]:
    """Mean and best wall time of `steps` calls after two warm-up calls (compilation, autotuning)."""
    for _ in range(2):
        fn()
    sync()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return {"ms": 1e3 * float(np.mean(times)), "ms_min": 1e3 * min(times), "steps": steps}


# ---------------------------------------------------------------------------------------------
# The official side (runs under PyTorch)
# ---------------------------------------------------------------------------------------------


def run_official(official: pathlib.Path, size: dict, steps: int) -> dict:
    import torch

    if not (official / "models" / "liif.py").is_file():
        raise SystemExit(f"--official {official} is not a checkout of yinboc/liif (no models/liif.py)")
    sys.modules.setdefault("tensorboardX", types.SimpleNamespace(SummaryWriter=None))  # utils.py imports it
    cuda = torch.cuda.is_available()
    if not cuda:
        torch.Tensor.cuda = lambda self, *args, **kwargs: self  # the official query_rgb calls .cuda()
    sys.path.insert(0, str(official))
    import models

    dev = torch.device("cuda" if cuda else "cpu")
    data = {k: torch.from_numpy(v).to(dev) for k, v in make_inputs(size).items()}
    torch.manual_seed(0)
    model = models.make(SPEC).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.L1Loss()
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def train_step():
        loss = loss_fn(model(data["inp"], data["coord"], data["cell"]), data["gt"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    h, w = size["render_in"][0] * size["render_scale"], size["render_in"][1] * size["render_scale"]
    from utils import make_coord

    coord = make_coord((h, w)).to(dev)[None]
    cell = torch.full_like(coord, 1.0)
    cell[..., 0] *= 2 / h
    cell[..., 1] *= 2 / w

    def render():  # the official test.py's batched_predict
        with torch.no_grad():
            model.gen_feat(data["render"])
            preds = [model.query_rgb(coord[:, i : i + CHUNK], cell[:, i : i + CHUNK]) for i in range(0, h * w, CHUNK)]
            torch.cat(preds, dim=1).cpu()

    model.train()
    result = {"train_step": timed(train_step, sync, steps)}
    model.eval()
    result["render_x4"] = timed(render, sync, max(2, steps // 2))
    result["torch_version"] = torch.__version__
    result["device"] = torch.cuda.get_device_name() if cuda else "cpu"
    return result


# ---------------------------------------------------------------------------------------------
# Our side
# ---------------------------------------------------------------------------------------------


def run_ours(size: dict, steps: int, dtype_name: str) -> dict:
    import jax
    import jax.numpy as jnp
    import optax

    from liif_jax.models import build_model
    from liif_jax.render import render
    from liif_jax.training import trainer

    model = build_model(SPEC, jnp.bfloat16 if dtype_name == "bfloat16" else None)
    data = make_inputs(size)
    batch = {
        "inp": jnp.asarray(data["inp"].transpose(0, 2, 3, 1)),
        "coord": jnp.asarray(data["coord"]),
        "cell": jnp.asarray(data["cell"]),
        "gt": jnp.asarray(data["gt"]),
    }
    params = model.init(jax.random.key(0), size["inp"])
    tx = optax.adam(1e-4, b1=0.9, b2=0.999, eps=1e-8)
    step = jax.jit(lambda s, b: trainer.train_step(model, tx, s, b), donate_argnums=0)
    holder = {"state": trainer.TrainState.create(model, tx, params), "loss": None}

    def train_step():
        holder["state"], holder["loss"] = step(holder["state"], batch)

    img01 = data["render"][0].transpose(1, 2, 0) * 0.5 + 0.5
    out_hw = (size["render_in"][0] * size["render_scale"], size["render_in"][1] * size["render_scale"])
    result = {"train_step": timed(train_step, lambda: jax.block_until_ready(holder["loss"]), steps)}
    params = holder["state"].params  # the initial params were donated to the first step
    result["render_x4"] = timed(
        lambda: render.upscale(model, params, img01, out_hw, CHUNK), lambda: None, max(2, steps // 2)
    )
    return result


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def markdown(out: dict) -> str:
    size = out["sizes"]
    (h, w), s = size["render_in"], size["render_scale"]
    lines = [
        f"# Official PyTorch LIIF vs liif_jax on {out['device_kind']} ({out['size']} run)",
        "",
        f"Command: `{out['command']}`",
        "",
        f"Date (UTC): {out['date']}. JAX {out['jax_version']}, PyTorch {out['official']['torch_version']} "
        f"(official device: {out['official']['device']}), {out['host_cpus']} host CPUs. EDSR-baseline-LIIF; "
        f"train step = forward, L1, backward, Adam on one fixed batch ({size['batch']} x {size['inp']} px, "
        f"{size['queries']} queries); render = x{s} of {h}x{w} in chunks of {CHUNK} queries. "
        "Mean over the timed calls after two warm-up calls. Speed-up = official time / ours.",
        "",
        "| Work | Official PyTorch (defaults) | ours float32 | ours bfloat16 | Speed-up float32 / bfloat16 |",
        "|---|---|---|---|---|",
    ]
    for key, label in (
        ("train_step", "train step, model only"),
        ("render_x4", f"render x{s}, {h}x{w} -> {h * s}x{w * s}"),
    ):
        o, f32, bf16 = out["official"][key]["ms"], out["ours"]["float32"][key]["ms"], out["ours"]["bfloat16"][key]["ms"]
        lines.append(f"| {label} | {o:.1f} ms | {f32:.1f} ms | {bf16:.1f} ms | {o / f32:.2f}x / {o / bf16:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python experiments/compare_official.py", description=__doc__.split("\n")[0])
    p.add_argument("--official", type=pathlib.Path, required=True, help="checkout of yinboc/liif")
    p.add_argument("--size", choices=sorted(SIZES), default="full")
    p.add_argument("--steps", type=int, default=10, help="timed training steps per side")
    p.add_argument("--torch-python", default=sys.executable, help="a Python with PyTorch, for the official side")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("experiments/results"))
    p.add_argument("--run-official", action="store_true", help=argparse.SUPPRESS)  # internal: the subprocess
    args = p.parse_args(argv)
    size = SIZES[args.size]
    if args.run_official:
        print(json.dumps(run_official(args.official, size, args.steps)))
        return 0

    cmd = [
        args.torch_python,
        __file__,
        "--official",
        str(args.official),
        "--size",
        args.size,
        "--steps",
        str(args.steps),
        "--run-official",
    ]
    print("official side ...", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(
            f"the official side failed (exit {proc.returncode}); is PyTorch importable by {args.torch_python}?"
        )
    official = json.loads(proc.stdout.strip().splitlines()[-1])

    import jax

    from liif_jax.evaluation.report import device_slug

    ours = {}
    for dtype_name in ("float32", "bfloat16"):
        print(f"ours, {dtype_name} ...", flush=True)
        ours[dtype_name] = run_ours(size, args.steps, dtype_name)
    dev = jax.devices()[0]
    out = {
        "command": shlex.join(["python", "experiments/compare_official.py", *argv]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": device_slug(dev.platform, dev.device_kind),
        "device_kind": dev.device_kind,
        "jax_version": jax.__version__,
        "host_cpus": os.cpu_count(),
        "size": args.size,
        "sizes": size,
        "official": official,
        "ours": ours,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"official_vs_ours_{out['device']}"
    stem.with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    text = markdown(out)
    stem.with_suffix(".md").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
