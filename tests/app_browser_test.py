"""The app's page in a real browser (headless Chromium driven by Playwright): the upscale's
downloaded PNG is the demo's, pixel for pixel; the explorer at x12 shows on its canvas what a
direct query of the same coordinates gives; a bad upload shows its message and the next one works.

Chromium is Debian's (`/usr/bin/chromium`, or LIIF_CHROMIUM); Playwright downloads no browser.
Skipped without Playwright, the app extra or Chromium; LIIF_REQUIRE_APP=1 (CI) makes that a failure.
"""

import base64
import io
import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from liif_jax import demo

from app_test import MAX_PIXELS, photo, require_app, tiny_checkpoint

require_app()
CHROMIUM = pathlib.Path(os.environ.get("LIIF_CHROMIUM", "/usr/bin/chromium"))
try:
    from playwright.sync_api import sync_playwright
except ImportError as err:
    if os.environ.get("LIIF_REQUIRE_APP"):
        raise
    pytest.skip(f"Playwright is not installed (the test extra): {err}", allow_module_level=True)
if not CHROMIUM.is_file():
    if os.environ.get("LIIF_REQUIRE_APP"):
        raise FileNotFoundError(f"LIIF_REQUIRE_APP is set but there is no Chromium at {CHROMIUM} (.ci/run installs it)")
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set LIIF_CHROMIUM)", allow_module_level=True)

from liif_jax.app import server  # noqa: E402

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 800, "height": 520}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def url(tiny):
    with server.running(server.create_app({tiny[0]: tiny[1]}, max_pixels=MAX_PIXELS)) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium_profile")),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            accept_downloads=True,
            viewport=VIEWPORT,
            device_scale_factor=1,
        )
        yield context
        context.close()


@pytest.fixture
def page(browser, url):
    page = browser.new_page()
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']")
    yield page
    page.close()


@pytest.fixture(scope="module")
def photo_file(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("photos") / "photo.png"
    Image.fromarray(photo(40, 56)).save(path)
    return path


def upload(page, path: pathlib.Path) -> None:
    page.set_input_files("#file", str(path))
    page.wait_for_function("document.querySelector('#image-info').dataset.id")


def test_upscale_x3_3_downloads_the_demos_png_and_compares_with_bicubic(page, photo_file, tiny, tmp_path):
    upload(page, photo_file)
    page.fill("#scale", "3.3")
    page.click("#render")
    page.wait_for_selector("#download:not([hidden])", timeout=60_000)
    with page.expect_download() as download:
        page.click("#download")
    assert download.value.suggested_filename == "photo_x3.30.png"
    got = tmp_path / "app.png"
    download.value.save_as(got)
    want = tmp_path / "demo.png"
    argv = ["--input", str(photo_file), "--model", tiny[0], "--scale", "3.3", "--output", str(want)]
    assert demo.main(argv) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(got)), np.asarray(Image.open(want)))
    sizes = page.evaluate(
        "['#before', '#after'].map(s => [document.querySelector(s).naturalHeight, document.querySelector(s).naturalWidth])"
    )
    assert sizes == [[132, 185], [132, 185]]  # round(40 x 3.3), round(56 x 3.3)


def canvas_state(page) -> tuple[dict, np.ndarray]:
    """The explorer's view and its canvas's pixels, RGBA (a PNG of the canvas: lossless)."""
    view, url = page.evaluate("[liifApp.view, document.querySelector('#view').toDataURL('image/png')]")
    return view, np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGBA"))


def test_the_explorer_at_x12_shows_the_latents_query_of_its_screen_pixels(page, photo_file, tiny):
    upload(page, photo_file)
    page.click("#tab-explore")
    page.wait_for_selector("#view[data-rendered='full']", timeout=60_000)
    fit = page.evaluate("liifApp.view.s")
    box = page.locator("#view").bounding_box()
    x, y = box["x"] + 300, box["y"] + 200  # a point of the image, off the canvas's centre
    before = page.evaluate("[(liifApp.view.top + 200) / liifApp.view.s, (liifApp.view.left + 300) / liifApp.view.s]")
    page.mouse.move(x, y)
    page.mouse.wheel(0, -np.log(12 / fit) / 0.002)  # the page zooms by exp(-deltaY / 500)
    page.wait_for_selector("#view[data-rendered='full']", timeout=60_000)
    assert page.text_content("#zoom") == "x12.00"
    v, rgba = canvas_state(page)
    assert np.allclose(before, [(v["top"] + 200) / v["s"], (v["left"] + 300) / v["s"]])  # the point stayed put
    h, w = 40, 56
    ys = -1 + 2 * (v["top"] + np.arange(rgba.shape[0]) + 0.5) / (h * v["s"])
    xs = -1 + 2 * (v["left"] + np.arange(rgba.shape[1]) + 0.5) / (w * v["s"])
    inside = (np.abs(ys)[:, None] <= 1) & (np.abs(xs)[None] <= 1)
    assert inside.mean() > 0.5
    coords = np.stack(np.meshgrid(ys, xs, indexing="ij"), -1)[inside]
    want = tiny[1].encode(photo(40, 56)).query(coords, cell=(2 / (h * v["s"]), 2 / (w * v["s"])))
    assert np.abs(rgba[inside][:, :3] / 255 - want).max() <= 1 / 255
    assert (rgba[inside][:, 3] == 255).all() and (rgba[~inside][:, 3] == 0).all()

    page.check("#bicubic")  # the same view, by bicubic
    page.wait_for_selector("#view[data-rendered='full']", timeout=60_000)
    view, bicubic = canvas_state(page)
    assert view == v and not np.array_equal(bicubic, rgba)


def test_a_bad_upload_shows_its_message_and_the_next_good_one_works(page, photo_file, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#message.error:not([hidden])")
    assert "cannot read image 'notes.png'" in page.text_content("#message")
    upload(page, photo_file)
    assert page.is_hidden("#message") and page.text_content("#image-info") == "photo.png: 40 x 56"
