"""The app's explorer latency on this machine: encoding a photograph once, then the coarse and full
frames of a 1280x720 viewport (device pixels) at several scales, as the page asks for them.

    python experiments/app_latency.py [--model pretrained:edsr-baseline-liif] [--repeats 3]
        [--out experiments/results/app_latency_cpu.md]

The app is served in this process (`liif_jax.app.server`) and timed over HTTP, request to PNG, as
the page's fetches see it: a coarse frame is the viewport at a quarter of the density (320x180), a
full frame the whole 1280x720, both centred on the photograph (scikit-image's chelsea, 300x451).
Encode: `Upscaler.encode` of the photograph, first call (with compiling) and warm. Each frame's time
is the median of `--repeats` after one warm-up request per size (the first request of the session,
which also compiles, is reported apart). The page shows a full frame 200 ms after the view rests.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import pathlib
import platform
import shlex
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import jax
import numpy as np
import skimage.data
from PIL import Image

import liif_jax
from liif_jax.app import server

VIEWPORT = (720, 1280)  # device pixels: height, width
COARSE = 0.25  # the page's coarse density (liif_jax/app/static/app.js)
SCALES = ("fit", 4, 8, 12, 30)


def get(url: str) -> float:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as r:
        Image.open(io.BytesIO(r.read())).load()
    return time.perf_counter() - t0


def frame_url(base: str, image: str, model: str, in_hw: tuple[int, int], scale: float, d: float) -> str:
    h, w = VIEWPORT
    top, left = (in_hw[0] * scale - h) / 2, (in_hw[1] * scale - w) / 2  # centred, as the page's fit
    params = {
        "image": image,
        "model": model,
        "scale": scale * d,
        "top": top * d,
        "left": left * d,
        "height": int(np.ceil(h * d)),
        "width": int(np.ceil(w * d)),
    }
    return f"{base}/api/view?{urllib.parse.urlencode(params)}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="pretrained:edsr-baseline-liif")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="experiments/results/app_latency_cpu.md")
    args = parser.parse_args()
    photo = skimage.data.chelsea()
    in_hw = photo.shape[:2]
    up = liif_jax.load(args.model)
    t0 = time.perf_counter()
    jax.block_until_ready(up.encode(photo).grid)
    encode_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(up.encode(photo).grid)
    encode_warm = time.perf_counter() - t0

    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="PNG")
    rows = []
    with server.running(server.create_app({args.model: up})) as base:
        req = urllib.request.Request(f"{base}/api/images?name=chelsea.png", data=buf.getvalue(), method="POST")
        with urllib.request.urlopen(req) as r:
            image = json.loads(r.read())["id"]
        fit = min(VIEWPORT[0] / in_hw[0], VIEWPORT[1] / in_hw[1])
        first_request = get(frame_url(base, image, args.model, in_hw, fit, COARSE))  # encodes, compiles
        get(frame_url(base, image, args.model, in_hw, fit, 1))
        for s in SCALES:
            scale = fit if s == "fit" else float(s)
            times = {}
            for d in (COARSE, 1):
                url = frame_url(base, image, args.model, in_hw, scale, d)
                times[d] = statistics.median(get(url) for _ in range(args.repeats))
            rows.append((f"x{scale:.2f}" + (" (fit)" if s == "fit" else ""), times[COARSE], times[1]))

    load = os.getloadavg()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [
        "# The app's explorer latency on a CPU",
        "",
        f"Date: {datetime.date.today().isoformat()}. Device: {jax.devices()[0].device_kind} ({os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}), shared with other jobs (load average after the run: "
        f"{load[0]:.1f}). Code: `{commit}`, JAX {jax.__version__}, float32. Model: `{args.model}` ({up.name}).",
        "",
        "Command:",
        "",
        "```",
        "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "```",
        "",
        f"Photograph: scikit-image's chelsea, {in_hw[0]}x{in_hw[1]}. Viewport: {VIEWPORT[1]}x{VIEWPORT[0]} device "
        f"pixels; coarse frames at a quarter of the density ({int(VIEWPORT[1] * COARSE)}x{int(VIEWPORT[0] * COARSE)}).",
        "",
        f"- encode (once per image and model): {encode_first:.2f} s the first time (with compiling), "
        f"{encode_warm:.2f} s warm;",
        f"- the session's first view request (encoding, compiling the query, a coarse frame): {first_request:.2f} s.",
        "",
        f"Frames, request to decoded PNG over HTTP, median of {args.repeats} (warm):",
        "",
        "| scale | coarse frame (s) | full frame (s) |",
        "|---|---|---|",
        *(f"| {name} | {c:.2f} | {f:.2f} |" for name, c, f in rows),
        "",
    ]
    out = pathlib.Path(args.out)
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
