"""The screenshots of docs/app.md: the app with the shipped model in headless Chromium (Debian's).

    python experiments/app_screenshots.py [--out docs/images]

Upscale: scikit-image's chelsea at half size (150x226) rendered at x3.3 beside bicubic; Explore: the
full photograph zoomed to x12 at the cat's eye. Writes app_upscale.png and app_explore.png.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import tempfile

import skimage.data
from PIL import Image
from playwright.sync_api import sync_playwright

import liif_jax
from liif_jax.app import server

MODEL = "pretrained:edsr-baseline-liif"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="docs/images")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp())
    photo = skimage.data.chelsea()
    Image.fromarray(photo[::2, ::2]).save(tmp / "chelsea_half.png")
    Image.fromarray(photo).save(tmp / "chelsea.png")
    app = server.create_app({MODEL: liif_jax.load(MODEL)})
    with server.running(app) as url, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp / "profile"),
            executable_path="/usr/bin/chromium",
            args=ARGS,
            headless=True,
            viewport={"width": 1100, "height": 720},
        )
        page = context.new_page()
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']")
        page.set_input_files("#file", str(tmp / "chelsea_half.png"))
        page.wait_for_function("document.querySelector('#image-info').dataset.id")
        page.fill("#scale", "3.3")
        page.click("#render")
        page.wait_for_selector("#download:not([hidden])", timeout=600_000)
        page.screenshot(path=out / "app_upscale.png")

        page.set_input_files("#file", str(tmp / "chelsea.png"))
        page.wait_for_function("document.querySelector('#image-info').textContent.startsWith('chelsea.png')")
        page.click("#tab-explore")
        page.wait_for_selector("#view[data-rendered='full']", timeout=600_000)
        fit = page.evaluate("liifApp.view.s")
        # The cat's left eye (on the left of the picture), near input pixel (y 116, x 178), under the mouse.
        cy, cx = page.evaluate(
            "[(116 * liifApp.view.s - liifApp.view.top), (178 * liifApp.view.s - liifApp.view.left)]"
        )
        box = page.locator("#view").bounding_box()
        page.mouse.move(box["x"] + cx, box["y"] + cy)
        page.mouse.wheel(0, -math.log(12 / fit) / 0.002)
        page.wait_for_selector("#view[data-rendered='full']", timeout=600_000)
        page.screenshot(path=out / "app_explore.png")
        context.close()


if __name__ == "__main__":
    main()
