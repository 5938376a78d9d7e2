"""LTE's own demo.py and `python -m liif_jax.demo` on checkpoints written by LTE's code: the same PNG?

Two steps, in two environments (liif_jax has no torch; LTE's code needs it):

    python experiments/reference/check_lte_demo.py make DIR --official PATH/TO/lte --photos PATH/TO/skimage/data  # torch venv
    python experiments/reference/check_lte_demo.py compare DIR [--results experiments/results/lte_demo_check.md]  # liif_jax venv

`make` builds the full-size EDSR-baseline-LTE and SwinIR-LTE of LTE's training configs with random
weights (`torch.manual_seed`), saves each as LTE's train.py saves a checkpoint, crops an input from
a photograph (60x45: not a multiple of SwinIR's window, so its padding and LTE's input-size
`feat_coord` are exercised) and runs LTE's demo.py, unchanged (`runpy`), at x3 and x6 (the cell
clamp acts above x4). LTE's demo.py never calls `model.eval()`: SwinIR's stochastic depth (drop
path up to 0.1) stays on, so its SwinIR output changes from run to run. `make` therefore also runs
demo.py's lines with the model in evaluation mode (as LTE's test.py has it), keeping the float
prediction before `mul(255).byte()` and the encoder's features. `compare` runs our demo with the
same flags and compares it with both.
LTE's code is imported with the stand-ins of `lte_official.py` (no CUDA, timm or torchvision).
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform
import subprocess
import sys
import time

import numpy as np
from PIL import Image

MODELS = ("edsr-baseline-lte", "swinir-lte")
SCALES = (3, 6)
PHOTO, CORNER, SIZE = "chelsea.png", (90, 150), (60, 45)  # (row, col), (h, w)


def make(out: pathlib.Path, official: pathlib.Path, photos: pathlib.Path) -> None:
    import torch
    import yaml

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    from lte_official import files_digest, import_lte
    from make_lte_reference import run_demo, save_pth

    models, utils = import_lte(official)
    out.mkdir(parents=True, exist_ok=True)
    img = np.asarray(Image.open(photos / PHOTO).convert("RGB"))
    (y, x), (h, w) = CORNER, SIZE
    Image.fromarray(img[y : y + h, x : x + w]).save(out / "input.png")
    timings = {}
    for i, name in enumerate(MODELS):
        spec = yaml.safe_load((official / "configs" / "train-div2k" / f"train_{name}.yaml").read_text())["model"]
        torch.manual_seed(i)
        model = models.make(spec)
        save_pth(utils, model, spec, out / f"{name}.pth")
        for s in SCALES:
            t = time.perf_counter()
            run_demo(official, out / "input.png", out / f"{name}.pth", s, out / f"lte_{name}_x{s}.png")
            timings[f"{name}_x{s}"] = time.perf_counter() - t
            pred = demo_prediction(models, utils, out / "input.png", out / f"{name}.pth", s)
            np.save(out / f"lte_eval_{name}_x{s}.npy", pred)
            u8 = (torch.from_numpy(pred) * 0.5 + 0.5).clamp(0, 1).mul(255).byte().numpy()  # as demo.py's ToPILImage
            Image.fromarray(u8).save(out / f"lte_eval_{name}_x{s}.png")
        with torch.no_grad():
            inp = (
                torch.from_numpy(np.asarray(Image.open(out / "input.png")).copy()).permute(2, 0, 1).float() / 255 - 0.5
            ) / 0.5
            np.save(out / f"lte_{name}_feat.npy", model.eval().gen_feat(inp[None])[0].permute(1, 2, 0).numpy())
    meta = {"torch": torch.__version__, "lte_files_sha256": files_digest(official), "lte_demo_seconds": timings}
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    print(f"wrote checkpoints and LTE demo outputs to {out}")


def demo_prediction(models, utils, inp_path: pathlib.Path, model_path: pathlib.Path, scale: int) -> np.ndarray:
    """LTE demo.py's `pred` (H, W, 3) in [-1, 1] before `* 0.5 + 0.5`, clamping and `mul(255).byte()`:
    its lines, with the same `batched_predict`, the model in evaluation mode."""
    import torch
    from test import batched_predict

    img = torch.from_numpy(np.asarray(Image.open(inp_path).convert("RGB")).copy()).permute(2, 0, 1).float().div(255)
    model = models.make(torch.load(model_path)["model"], load_sd=True).eval()
    h, w = int(img.shape[-2] * scale), int(img.shape[-1] * scale)
    coord = utils.make_coord((h, w))
    cell = torch.ones_like(coord)
    cell[:, 0] *= 2 / h
    cell[:, 1] *= 2 / w
    factor = max(h / img.shape[-2] / 4, 1)
    pred = batched_predict(
        model, ((img - 0.5) / 0.5).unsqueeze(0), coord.unsqueeze(0), factor * cell.unsqueeze(0), bsize=30000
    )[0]
    return pred.view(h, w, 3).numpy()


def ours_float(model_path: pathlib.Path, inp_path: pathlib.Path, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Our prediction in [-1, 1] (H, W, 3) with LTE's demo settings, and the encoder's features."""
    from liif_jax.data import imaging
    from liif_jax.formats import checkpoints
    from liif_jax.render import render

    model, params = checkpoints.load_model(model_path)
    img = imaging.to_float01(imaging.load_rgb(inp_path))
    h, w = img.shape[0] * scale, img.shape[1] * scale
    factor = render.lte_cell_factor(h / img.shape[0], render.LTE_SCALE_MAX)
    pred = render.render(model, params, (img[None] - 0.5) / 0.5, (h, w), cell_factor=factor)[0]
    return pred, np.asarray(model.features(params, (img[None] - 0.5) / 0.5)[0][0])


def compare(out: pathlib.Path, results: pathlib.Path | None) -> None:
    meta = json.loads((out / "meta.json").read_text())
    rows = []
    for name in MODELS:
        for s in SCALES:
            ours = out / f"ours_{name}_x{s}.png"
            cmd = [
                sys.executable,
                "-m",
                "liif_jax.demo",
                "--input",
                str(out / "input.png"),
                "--model",
                str(out / f"{name}.pth"),
                "--scale",
                str(s),
                "--output",
                str(ours),
            ]
            t = time.perf_counter()
            subprocess.run(cmd, check=True)
            seconds = time.perf_counter() - t
            a = np.asarray(Image.open(ours)).astype(int)
            diffs = []
            for theirs in (f"lte_{name}_x{s}.png", f"lte_eval_{name}_x{s}.png"):
                b = np.asarray(Image.open(out / theirs)).astype(int)
                if a.shape != b.shape:
                    raise SystemExit(f"{name} x{s}: ours {a.shape}, {theirs} {b.shape}")
                d = np.abs(a - b)
                diffs.append((int(d.max()), int((d > 0).any(-1).sum())))
            pred, feat = ours_float(out / f"{name}.pth", out / "input.png", s)
            float_diff = float(np.abs(pred - np.load(out / f"lte_eval_{name}_x{s}.npy")).max())
            feat_diff = float(np.abs(feat - np.load(out / f"lte_{name}_feat.npy")).max())
            feat_scale = float(np.abs(np.load(out / f"lte_{name}_feat.npy")).max())
            rows.append(
                (
                    name,
                    s,
                    a.shape,
                    diffs,
                    a.shape[0] * a.shape[1],
                    meta["lte_demo_seconds"][f"{name}_x{s}"],
                    seconds,
                    float_diff,
                    feat_diff,
                    feat_scale,
                )
            )
    lines = [
        "# LTE's demo.py and liif_jax's demo on checkpoints written by LTE's code",
        "",
        f"Command: `python experiments/reference/check_lte_demo.py make DIR --official PATH/TO/lte --photos "
        f"PATH/TO/skimage/data` (torch {meta['torch']}, CPU) then `python experiments/reference/check_lte_demo.py "
        f"compare DIR`. Date: {datetime.date.today()}; device: CPU ({platform.processor() or platform.machine()}), "
        "float32, both codes.",
        "",
        f"Full-size models of LTE's `train_edsr-baseline-lte.yaml` and `train_swinir-lte.yaml` (random weights, "
        f"`torch.manual_seed`), saved as LTE's train.py saves them; input: a {SIZE[0]}x{SIZE[1]} crop of "
        f"scikit-image's {PHOTO} (not a multiple of SwinIR's window 8). LTE's demo.py ran unchanged; ours: "
        "`python -m liif_jax.demo --input input.png --model MODEL.pth --scale S --output out.png` (defaults: "
        "tiles of 256, SwinIR encoded whole). LTE's files: sha256 prefixes "
        + ", ".join(
            f"`{k}` {v}"
            for k, v in meta["lte_files_sha256"].items()
            if k in ("demo.py", "models/lte.py", "models/swinir.py")
        )
        + ".",
        "",
        "| model | scale | output (H x W) | vs LTE demo.py as it is: max difference (of 255), pixels differing "
        "| vs LTE demo.py's lines in eval mode: max difference, pixels differing | float prediction vs eval mode: "
        "max abs difference (range [-1, 1]) | encoder features: max abs difference (max abs value) "
        "| LTE demo.py (s) | ours (s, incl. start-up and compile) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s, shape, diffs, total, t_lte, t_ours, fd, ed, es in rows:
        cells = " | ".join(f"{mx}, {n} of {total} ({100 * n / total:.3f}%)" for mx, n in diffs)
        lines.append(
            f"| {name} | x{s}{' (cell clamped)' if s > 4 else ''} | {shape[0]} x {shape[1]} | {cells} | "
            f"{fd:.2e} | {ed:.2e} ({es:.3g}) | {t_lte:.1f} | {t_ours:.1f} |"
        )
    lines += [
        "",
        "LTE's demo.py leaves the model in training mode (it never calls `model.eval()`), so SwinIR's stochastic "
        "depth (drop path 0 ... 0.1 over its 36 blocks, timm's `DropPath`) draws new masks on every run: its "
        "SwinIR-LTE output is random. With these random-init weights the branches it drops or rescales are small "
        "and the PNG moves by at most 1 level; with trained weights it moves more. liif_jax renders in evaluation "
        "mode (as LTE's test.py, which calls `model.eval()`), and gives demo.py's lines in that mode to float32 "
        "rounding. EDSR-baseline has nothing random, so there demo.py as it is and in eval mode agree.",
        "",
        "A PNG level is 2/255 = 7.8e-3 of the [-1, 1] range: pixels differ by 1 where float32 rounding "
        "differences of the two codes cross a level of the truncation `mul(255).byte()`.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if results is not None:
        results.write_text(text)
    if any(r[3][1][0] > 1 for r in rows):
        raise SystemExit("a pixel differs by more than 1/255 from LTE's demo in eval mode")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    m = sub.add_parser("make")
    m.add_argument("dir", type=pathlib.Path)
    m.add_argument("--official", type=pathlib.Path, required=True)
    m.add_argument("--photos", type=pathlib.Path, required=True)
    c = sub.add_parser("compare")
    c.add_argument("dir", type=pathlib.Path)
    c.add_argument("--results", type=pathlib.Path)
    args = parser.parse_args(argv)
    if args.step == "make":
        make(args.dir.resolve(), args.official.resolve(), args.photos)
    else:
        compare(args.dir.resolve(), args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
