"""PSNR effect of faster arithmetic: float32 at highest precision vs TF32 vs bfloat16.

    python experiments/precision.py --model liif_jax/pretrained/edsr-baseline-liif \
        --hr-dir PATH/TO/mate-nature --split-file liif_jax/configs/splits/mate-nature.json \
        --split-key test [--scale 2,3,4,6,12,18,24,30] [--protocol div2k] [--out experiments/results]

Evaluates one trained model on one image set (`liif_jax.evaluation.evaluator.evaluate`, the official test
protocol) under each setting:

* `float32-highest`: float32 with full-precision matmuls and convolutions, XLA's decoder (the reference);
* `float32-highest-fused`: the same with the device's default decoder (on a GPU the fused Pallas
  kernel, whose float32 matmuls at this precision are three TF32 products);
* `float32-tf32`: float32 params and activations, TF32 matmuls and convolutions
  (`jax.default_matmul_precision('tensorfloat32')`; GPUs since Ampere; no effect on CPU);
* `bfloat16`: the model built with bf16 compute (`build_model(spec, jnp.bfloat16)`), float32 params.

All but the reference render with the device's default decoder (`render.resolve_decoder`), or
`--decoder`.

and reports, per scale, the mean PSNR and the largest per-image PSNR change against the reference
(TF32 is acceptable when every change is under 0.01 dB). Writes `<out>/precision_<device>.json` and `.md`
with the command, device and date. Run it on the machine whose arithmetic you want to know: the
TF32 row means something only on a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import pathlib
import shlex
import sys

import jax
import jax.numpy as jnp
import numpy as np

from liif_jax.data import sources
from liif_jax.evaluation import evaluator, report
from liif_jax.formats.checkpoints import load_model
from liif_jax.render import render

# name -> (compute dtype, matmul precision, decoder: None for --decoder or the device's default)
SETTINGS = {
    "float32-highest": (None, "highest", "xla"),
    "float32-highest-fused": (None, "highest", None),
    "float32-tf32": (None, "tensorfloat32", None),
    "bfloat16": (jnp.bfloat16, None, None),
}
REFERENCE = "float32-highest"


def run_setting(name: str, args: argparse.Namespace, source, scales) -> list[report.ImageResult]:
    dtype, matmul, decoder = SETTINGS[name]
    model, params = load_model(args.model, dtype=dtype)
    ctx = jax.default_matmul_precision(matmul) if matmul else contextlib.nullcontext()
    with ctx:
        return evaluator.evaluate(
            model,
            params,
            source,
            scales,
            args.protocol,
            args.batch_queries,
            progress=False,
            decoder=decoder or args.decoder,
        )


def compare(results: dict[str, list[report.ImageResult]]) -> list[dict]:
    """Per setting and scale: mean PSNR, mean and largest |change| per image against the reference."""
    ref = {(r.name, r.scale): r.psnr for r in results[REFERENCE]}
    rows = []
    for name, res in results.items():
        for row in report.aggregate(res):
            deltas = np.array([r.psnr - ref[(r.name, r.scale)] for r in res if r.scale == row.scale])
            rows.append(
                {
                    "setting": name,
                    "scale": row.scale,
                    "psnr": row.psnr,
                    "bicubic_psnr": row.bicubic_psnr,
                    "mean_delta_db": float(deltas.mean()),
                    "max_abs_delta_db": float(np.abs(deltas).max()),
                    "n_images": row.n_images,
                }
            )
    return rows


def markdown(out: dict) -> str:
    lines = [
        f"# PSNR under float32 (highest), TF32 and bfloat16 on {out['device_kind']}",
        "",
        f"Command: `{out['command']}`",
        "",
        f"Date (UTC): {out['date']}. JAX {out['jax_version']}, {out['device_kind']} ({out['platform']}). "
        f"Model `{out['model']}`, {out['n_images']} images, protocol `{out['protocol']}`. "
        f"Decoder `{out['decoder']}` (the reference: `xla`). "
        "Change = PSNR under the setting minus PSNR under float32-highest, per image.",
        "",
        "| Setting | Scale | PSNR (dB) | Mean change (dB) | Largest change on one image (dB) |",
        "|---|---|---|---|---|",
    ]
    for r in out["rows"]:
        lines.append(
            f"| {r['setting']} | x{r['scale']:g} | {r['psnr']:.4f} | {r['mean_delta_db']:+.4f} | "
            f"{r['max_abs_delta_db']:.4f} |"
        )
    lines += [
        "",
        "Largest change over all scales: "
        + ", ".join(f"{k} {v:.4f} dB" for k, v in out["max_abs_delta_db"].items())
        + ".",
    ]
    if out["platform"] == "cpu":
        lines += ["", "On CPU, TF32 does not exist: that row equals the reference; measure it on a GPU."]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python experiments/precision.py", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="liif_jax checkpoint (or official .pth) of a trained model")
    p.add_argument("--hr-dir", required=True, help="folder of evaluation images (held out from training)")
    p.add_argument("--split-file", help="JSON {split: [file names]} selecting images of --hr-dir")
    p.add_argument("--split-key", help="split of --split-file")
    p.add_argument("--scale", default="2,3,4,6,12,18,24,30", help="scales, comma separated")
    p.add_argument("--protocol", default="div2k", choices=["div2k", "benchmark", "plain"])
    p.add_argument("--batch-queries", type=int, default=render.DEFAULT_BATCH_QUERIES)
    p.add_argument(
        "--decoder",
        choices=render.DECODERS,
        help="decoder of the settings other than the reference (default: the device's, `render.resolve_decoder`)",
    )
    p.add_argument("--out", default="experiments/results", help="folder for precision_<device>.{json,md}")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    scales = evaluator.parse_scales(args.scale)
    evaluator.check_scales(scales, args.protocol)
    source = sources.ImageFolder(args.hr_dir, split_file=args.split_file, split_key=args.split_key)
    results = {}
    for name in SETTINGS:
        print(f"{name} ...", flush=True)
        results[name] = run_setting(name, args, source, scales)
    rows = compare(results)
    dev = jax.devices()[0]
    out = {
        "command": shlex.join(["python", "experiments/precision.py", *argv]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": report.device_slug(dev.platform, dev.device_kind),
        "device_kind": dev.device_kind,
        "platform": dev.platform,
        "jax_version": jax.__version__,
        "model": os.fspath(args.model),
        "protocol": args.protocol,
        "decoder": render.resolve_decoder(load_model(args.model)[0], args.decoder),
        "n_images": len(source),
        "rows": rows,
        "max_abs_delta_db": {
            name: max(r["max_abs_delta_db"] for r in rows if r["setting"] == name) for name in SETTINGS
        },
    }
    folder = pathlib.Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"precision_{out['device']}.json").write_text(json.dumps(out, indent=2) + "\n")
    text = markdown(out)
    (folder / f"precision_{out['device']}.md").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
