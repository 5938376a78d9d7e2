"""The browser app's server (`python -m liif_jax.app`), over HTTP: bad input gets a message and the
server goes on, uploads are bounded and leave nothing behind, the queue is bounded, a stale view is
dropped, the explorer's views are the latents' values at the screen's pixel centres, and the command
serves the shipped model. The page itself is tested in a browser in app_browser_test.py.

Skipped without the `app` extra (starlette, uvicorn); LIIF_REQUIRE_APP=1 (CI) makes that a failure.
"""

import concurrent.futures
import io
import json
import os
import pathlib
import re
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib

import numpy as np
import pytest
from PIL import Image

import liif_jax
from liif_jax.data import imaging
from liif_jax.formats.checkpoints import save_model

from api_test import TINY_SPECS, tiny_upscaler
from conftest import REPO


def require_app() -> None:
    """Skips the module without the app extra; LIIF_REQUIRE_APP=1 turns that into a failure."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as err:
        if os.environ.get("LIIF_REQUIRE_APP"):
            raise ImportError(
                f'LIIF_REQUIRE_APP is set but the app extra is missing: pip install -e ".[app]" ({err})'
            ) from err
        pytest.skip(f'the app extra is not installed (pip install -e ".[app]"): {err}', allow_module_level=True)


require_app()

from liif_jax.app import server, sessions, views  # noqa: E402

MAX_UPLOAD = 200_000
MAX_PIXELS = 1 << 16


def png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def photo(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    """A smooth random image: latents and colours that vary, as a photograph's."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC))


def bomb_header(h: int, w: int) -> bytes:
    """A PNG whose header claims h x w pixels (and whose data does not follow): what a
    decompression bomb looks like before decoding."""
    data = bytearray(png(np.zeros((1, 1, 3), np.uint8)))
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr : ihdr + 8] = struct.pack(">II", w, h)
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13])))
    return bytes(data)


def call(url: str, path: str, body: bytes | dict | None = None, **params) -> tuple[int, bytes]:
    """(status, body) of a GET, or a POST of raw bytes or JSON."""
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    headers = {"Content-Type": "application/json"} if isinstance(body, dict) else {}
    req = urllib.request.Request(
        url + path + query, data=data, headers=headers, method="GET" if body is None else "POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def error_of(answer: tuple[int, bytes]) -> str:
    return json.loads(answer[1])["error"]


def tiny_checkpoint(folder: pathlib.Path) -> tuple[str, liif_jax.Upscaler]:
    """The tiny LIIF as a checkpoint the demo can read, and loaded from it."""
    ckpt = folder / "tiny"
    save_model(ckpt, TINY_SPECS["liif"], tiny_upscaler("liif").params)
    return str(ckpt), liif_jax.load(ckpt)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[str, liif_jax.Upscaler]:
    return tiny_checkpoint(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("app_tmp")


@pytest.fixture(scope="module")
def url(tiny, tmp_root):
    app = server.create_app(
        {tiny[0]: tiny[1]}, max_upload_bytes=MAX_UPLOAD, max_pixels=MAX_PIXELS, max_queue=3, tmp_root=str(tmp_root)
    )
    with server.running(app) as url:
        yield url
    assert not any(tmp_root.iterdir()), "the upload folder outlived the server"


def upload(url: str, data: bytes, name: str = "photo.png") -> dict:
    status, body = call(url, "/api/images", data, name=name)
    assert status == 200, body
    return json.loads(body)


def test_a_non_image_a_truncated_file_and_a_decompression_bomb_get_a_message_and_the_next_upload_works(url):
    good = png(photo())
    for data, name, said in [
        (b"just text, no image", "notes.png", "cannot read image 'notes.png'"),
        (good[: len(good) // 2], "cut.png", "image file is truncated"),
        (bomb_header(50_000, 50_000), "bomb.png", "2500000000 pixels, over the limit"),
        (png(np.zeros((300, 300, 3), np.uint8)), "big.png", "over this app's limit of 65536"),
        (b"", "empty.png", "the upload is empty"),
    ]:
        answer = call(url, "/api/images", data, name=name)
        assert answer[0] == 400 and said in error_of(answer), answer
    assert upload(url, good)["height"] == 24


def test_an_upload_over_the_size_limit_is_refused_before_it_is_read(url):
    answer = call(url, "/api/images", bytes(MAX_UPLOAD + 1), name="huge.png")
    assert answer[0] == 413 and "over this server's limit of 0.2 MiB" in error_of(answer)


def test_uploads_pass_through_a_temporary_folder_and_are_removed_at_once(url, tmp_root):
    upload(url, png(photo()))
    call(url, "/api/images", b"not an image", name="bad.png")
    [folder] = tmp_root.iterdir()  # removed with the server (the `url` fixture checks)
    assert folder.name.startswith("liif_app_") and not any(folder.iterdir())


def test_a_huge_size_a_bad_scale_and_a_bad_view_are_refused_with_a_message(url, tiny):
    image = upload(url, png(photo()))["id"]
    for body, said in [
        ({"scale": 1000.0}, "is over this app's limit"),
        ({"size": [100_000, 100_000]}, "is over this app's limit"),
        ({"scale": -2}, "scale must be a positive number"),
        ({"scale": 2, "size": [4, 4]}, "give exactly one of scale and size"),
        ({"scale": 2, "model": "nope"}, "no model 'nope'"),
    ]:
        answer = call(url, "/api/upscale", {"image": image, "model": tiny[0], **body})
        assert answer[0] in (400, 404) and said in error_of(answer), answer
    view = {"image": image, "model": tiny[0], "scale": 2, "top": 0, "left": 0, "height": 10, "width": 10}
    for change, said in [
        ({"height": 10_000, "width": 10_000}, "a view is 1 to"),
        ({"scale": "nan"}, "finite"),
        ({"kind": "sharp"}, "kind must be liif or bicubic"),
        ({"image": "gone"}, "no longer on the server"),
    ]:
        answer = call(url, "/api/view", **{**view, **change})
        assert answer[0] in (400, 404) and said in error_of(answer), answer
    assert call(url, "/api/view", **view)[0] == 200


def test_renders_beyond_the_queue_bound_are_refused_at_once_and_the_server_goes_on(url, tiny):
    image = upload(url, png(photo()))["id"]
    view = {"image": image, "model": tiny[0], "scale": 40, "top": 0, "left": 0, "height": 700, "width": 900}
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda i: call(url, "/api/view", **{**view, "left": i}), range(12)))
    statuses = [status for status, _ in answers]
    assert set(statuses) == {200, 503}, statuses
    assert all("the server is busy" in error_of(a) for a in answers if a[0] == 503)
    assert call(url, "/api/view", **view)[0] == 200


def test_a_view_older_than_the_latest_of_its_tab_is_dropped(url, tiny):
    image = upload(url, png(photo()))["id"]
    view = {"image": image, "model": tiny[0], "scale": 3, "top": 0, "left": 0, "height": 20, "width": 20}
    assert call(url, "/api/view", **view, client="tab1", seq=5)[0] == 200
    assert call(url, "/api/view", **view, client="tab1", seq=4)[0] == 204
    assert call(url, "/api/view", **view, client="tab2", seq=1)[0] == 200


def test_the_upscale_job_reports_progress_and_gives_the_png_and_bicubic_at_its_size(url, tiny):
    rgb = photo()
    image = upload(url, png(rgb), name="cat.jpeg.png")["id"]
    job = json.loads(call(url, "/api/upscale", {"image": image, "model": tiny[0], "size": [50, 70]})[1])["job"]
    deadline = time.monotonic() + 120
    while (status := json.loads(call(url, f"/api/jobs/{job}")[1]))["state"] not in ("done", "error"):
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    assert status["state"] == "done" and status["done"] == status["total"] >= 1
    assert status["name"] == "cat.jpeg_50x70.png"
    liif = np.asarray(Image.open(io.BytesIO(call(url, f"/api/jobs/{job}/liif.png")[1])))
    bicubic = np.asarray(Image.open(io.BytesIO(call(url, f"/api/jobs/{job}/bicubic.png")[1])))
    np.testing.assert_array_equal(liif, tiny[1].upscale(rgb, size=(50, 70)))
    np.testing.assert_array_equal(bicubic, imaging.resize_bicubic(rgb, (50, 70)))


def test_a_view_is_the_latents_query_at_its_screen_pixel_centres_and_transparent_off_the_image(tiny):
    rgb = photo()
    latents = tiny[1].encode(rgb)
    view = views.View(scale=7.3, top=-5.5, left=100.25, height=40, width=50)
    got = views.render_view(latents, view)
    i, j = np.arange(40), np.arange(50)
    y, x = -1 + 2 * (view.top + i + 0.5) / (24 * 7.3), -1 + 2 * (view.left + j + 0.5) / (32 * 7.3)
    inside = (np.abs(y)[:, None] <= 1) & (np.abs(x)[None] <= 1)
    assert inside.any() and not inside.all()
    coords = np.stack(np.meshgrid(y, x, indexing="ij"), -1)[inside]
    want = latents.query(coords, cell=(2 / (24 * 7.3), 2 / (32 * 7.3)))
    assert np.abs(got[inside][:, :3] / 255 - want).max() <= 0.5 / 255 + 1e-6
    assert (got[inside][:, 3] == 255).all() and (got[~inside] == 0).all()


def test_a_bicubic_view_at_a_whole_scale_is_pils_bicubic_upscale_and_any_view_is_on_the_image_only():
    rgb = photo()
    got = views.bicubic_view(rgb, views.View(scale=3, top=0, left=0, height=72, width=96))
    np.testing.assert_array_equal(got[..., :3], imaging.resize_bicubic(rgb, (72, 96)))
    assert (got[..., 3] == 255).all()
    got = views.bicubic_view(rgb, views.View(scale=7.3, top=-5.5, left=100.25, height=40, width=50))
    opaque = got[..., 3] == 255  # the pixels wholly on the image: rows 6.., columns ..132 (233.6 - 100.25)
    assert opaque[6:, :133].all() and not opaque[:6].any() and not opaque[:, 133:].any()


def test_a_view_that_is_superseded_stops_between_chunks(tiny, monkeypatch):
    monkeypatch.setattr(views, "CHUNK_ROWS_PIXELS", 100)
    asked = []
    with pytest.raises(views.Superseded):
        views.render_view(
            tiny[1].encode(photo()), views.View(4, 0, 0, 30, 30), lambda: asked.append(1) or len(asked) > 2
        )
    assert len(asked) == 3


def test_an_image_is_encoded_once_per_model_and_the_stores_are_bounded(tiny):
    counted = []

    class Counting:
        def encode(self, image):
            counted.append(1)
            return tiny[1].encode(image)

    store = sessions.Sessions({"a": Counting(), "b": Counting()}, images=2, latents=2)
    for i in range(3):
        store.images.put(f"img{i}", sessions.Upload("x.png", photo(seed=i)))
    assert store.images.get("img0") is None and len(store.images) == 2
    for model in ("a", "a", "b", "a"):
        store.encoded("img1", model)
    assert len(counted) == 2
    store.encoded("img2", "a")  # a third grid: the least recently used one goes
    assert len(store.latents) == 2 and store.latents.get(("img1", "b")) is None


def test_python_m_liif_jax_app_serves_the_shipped_model_on_localhost(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "liif_jax.app", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        line = proc.stdout.readline()
        found = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        assert found and "pretrained:edsr-baseline-liif" in line, line
        url = found.group(1)
        assert b"<canvas" in call(url, "/")[1] and call(url, "/static/app.js")[0] == 200
        assert json.loads(call(url, "/api/models")[1]) == {
            "models": ["pretrained:edsr-baseline-liif"],
            "default": "pretrained:edsr-baseline-liif",
        }
        image = upload(url, png(photo(12, 16)))["id"]
        view = {"image": image, "model": "pretrained:edsr-baseline-liif", "scale": 2.5, "top": 0, "left": 0}
        status, body = call(url, "/api/view", **view, height=30, width=40)
        assert status == 200 and Image.open(io.BytesIO(body)).size == (40, 30)
    finally:
        proc.terminate()
        proc.wait(30)


def test_the_app_command_without_its_extra_says_how_to_install_it(tmp_path):
    blocker = tmp_path / "starlette.py"  # an import of starlette that fails, as when it is not installed
    blocker.write_text("raise ImportError('No module named starlette')\n")
    out = subprocess.run(
        [sys.executable, "-m", "liif_jax.app"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])},
        timeout=60,
    )
    assert out.returncode == 1 and 'pip install "liif_jax[app]"' in out.stderr
