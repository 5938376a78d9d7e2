"""The app's ASGI server (starlette): one static page (`static/`) and a small JSON and PNG API.

Every model call runs on one worker thread, in arrival order: the models use every core already,
and one thread keeps device memory to one render's. At most `max_queue` calls wait; beyond that a
request is refused at once with a message (503), so that many tabs slow each other down but never
exhaust the process. A view that a newer view of the same tab replaced is dropped unrun, or between
its chunks (204). Every error is a JSON `{"error": message}` that the page shows; the server keeps
serving.

Routes: GET /api/models; POST /api/images (the raw file as the body) -> id and size;
POST /api/upscale {image, model, scale | size} -> a job; GET /api/jobs/ID (progress),
/api/jobs/ID/liif.png (the demo's PNG), /api/jobs/ID/bicubic.png (the same size);
GET /api/view?image&model&kind&scale&top&left&height&width&client&seq -> RGBA PNG (`views`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import io
import pathlib
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import numpy as np
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from liif_jax.api import Upscaler
from liif_jax.app import sessions, views
from liif_jax.data import imaging
from liif_jax.render import render

STATIC = pathlib.Path(__file__).resolve().parent / "static"
DEFAULT_MAX_UPLOAD_BYTES = 20 * 2**20
DEFAULT_MAX_PIXELS = 1 << 22  # 4.2 megapixels in: the whole image is encoded at once for the explorer
DEFAULT_MAX_OUTPUT_PIXELS = 1 << 26  # 67 megapixels out: an upscale that a browser can still show
DEFAULT_MAX_QUEUE = 8


class Busy(Exception):
    """More model calls are waiting than the queue's bound."""


class Worker:
    """One thread for every model call, with at most `max_queue` calls waiting or running."""

    def __init__(self, max_queue: int) -> None:
        self.max_queue = max_queue
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="liif-app")
        self._pending = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable[[], Any]) -> concurrent.futures.Future:
        with self._lock:
            if self._pending >= self.max_queue:
                raise Busy(
                    f"the server is busy ({self._pending} renders queued, its --max-queue); try again in a moment"
                )
            self._pending += 1
        future = self._pool.submit(fn)
        future.add_done_callback(lambda _: self._done())
        return future

    def _done(self) -> None:
        with self._lock:
            self._pending -= 1

    async def run(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.wrap_future(self.submit(fn))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@dataclasses.dataclass
class Job:
    """An upscale: its progress while it runs, its PNGs once done."""

    name: str
    out_hw: tuple[int, int]
    state: str = "queued"  # queued, running, done, error
    done: int = 0
    total: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)
    error: str | None = None
    liif_png: bytes | None = None
    bicubic_png: bytes | None = None

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "done": self.done,
            "total": self.total,
            "seconds": round(time.monotonic() - self.started, 2),
            "height": self.out_hw[0],
            "width": self.out_hw[1],
            "name": self.name,
            "error": self.error,
        }


def png_bytes(pixels: np.ndarray, compress_level: int = 6) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(
    models: dict[str, Upscaler],
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_output_pixels: int = DEFAULT_MAX_OUTPUT_PIXELS,
    max_queue: int = DEFAULT_MAX_QUEUE,
    tmp_root: str | None = None,
) -> Starlette:
    """The app serving `models` ({name: Upscaler}, the first the default). Uploads pass through a
    temporary folder under `tmp_root` (default: the system's) that is removed when the app stops."""
    if not models:
        raise ValueError("the app needs at least one model")
    store = sessions.Sessions(models)
    worker = Worker(max_queue)
    jobs = sessions.LRU(64)
    latest_seq = sessions.LRU(1024)  # each tab's newest view

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        folder = pathlib.Path(tempfile.mkdtemp(prefix="liif_app_", dir=tmp_root))
        app.state.upload_dir = folder
        try:
            yield
        finally:
            worker.close()
            shutil.rmtree(folder, ignore_errors=True)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def list_models(request: Request) -> Response:
        return JSONResponse({"models": list(models), "default": next(iter(models))})

    async def upload(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_upload_bytes:
            return error(too_large(int(declared)), 413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_upload_bytes:
                return error(too_large(len(body)), 413)
        if not body:
            return error("the upload is empty; pick an image file")
        name = request.query_params.get("name", "image")[:200]
        try:
            image = await asyncio.to_thread(
                sessions.decode_upload, bytes(body), name, request.app.state.upload_dir, max_pixels
            )
        except imaging.ImageError as err:
            return error(str(err))
        image_id = sessions.new_id()
        store.images.put(image_id, image)
        h, w = image.rgb.shape[:2]
        return JSONResponse({"id": image_id, "name": name, "height": h, "width": w})

    def too_large(n: int) -> str:
        return f"the upload is {n / 2**20:.1f} MiB, over this server's limit of {max_upload_bytes / 2**20:.1f} MiB"

    async def upscale(request: Request) -> Response:
        try:
            body = await request.json()
            image, name = store.image(str(body.get("image"))), str(body.get("model"))
            up = store.model(name)
            scale, size = body.get("scale"), body.get("size")
            if size is not None:
                size = tuple(size) if isinstance(size, list) and len(size) == 2 else size
            out_hw = render.output_size(up.model, image.rgb.shape[:2], scale, size)
        except KeyError as err:
            return error(err.args[0], 404)
        except (ValueError, TypeError, AttributeError) as err:
            return error(f"cannot upscale: {err}")
        refused = sessions.output_limit_message(out_hw, max_output_pixels)
        if refused:
            return error(refused)
        stem = pathlib.Path(image.name).stem or "image"
        suffix = f"x{scale:.2f}" if size is None else f"{out_hw[0]}x{out_hw[1]}"
        job = Job(f"{stem}_{suffix}.png", out_hw)

        def run() -> None:
            job.state = "running"

            def progress(done: int, total: int) -> None:
                job.done, job.total = done, total

            try:
                img01 = imaging.to_float01(image.rgb)
                pixels = render.upscale_image(up.model, up.params, img01, scale, size, progress=progress)
                job.liif_png = png_bytes(pixels)
                job.bicubic_png = png_bytes(imaging.resize_bicubic(image.rgb, out_hw), compress_level=1)
                job.state = "done"
            except Exception as err:  # the page shows it; the server goes on
                job.state, job.error = "error", f"the render failed: {type(err).__name__}: {err}"

        job_id = sessions.new_id()
        try:
            worker.submit(run)
        except Busy as err:
            return error(str(err), 503)
        jobs.put(job_id, job)
        return JSONResponse({"job": job_id, **job.status()})

    def find_job(request: Request) -> Job:
        job = jobs.get(request.path_params["job"])
        if job is None:
            raise KeyError("no such render on the server (it keeps the latest ones); render it again")
        return job

    async def job_status(request: Request) -> Response:
        try:
            return JSONResponse(find_job(request).status())
        except KeyError as err:
            return error(err.args[0], 404)

    async def job_png(request: Request) -> Response:
        try:
            job = find_job(request)
        except KeyError as err:
            return error(err.args[0], 404)
        if request.path_params["kind"] not in ("liif", "bicubic"):
            return error("no such image: liif.png or bicubic.png", 404)
        if job.state != "done":
            return error(f"the render is {job.state}" + (f": {job.error}" if job.error else ""), 409)
        data = job.liif_png if request.path_params["kind"] == "liif" else job.bicubic_png
        disposition = "attachment" if "download" in request.query_params else "inline"
        return Response(
            data, media_type="image/png", headers={"Content-Disposition": f'{disposition}; filename="{job.name}"'}
        )

    async def view(request: Request) -> Response:
        q = request.query_params
        try:
            v = views.View(float(q["scale"]), float(q["top"]), float(q["left"]), int(q["height"]), int(q["width"]))
            image, model, kind = q["image"], q["model"], q.get("kind", "liif")
            client, seq = q.get("client", ""), int(q.get("seq", "0"))
            v.check()
            if kind not in ("liif", "bicubic"):
                raise ValueError(f"kind must be liif or bicubic, got {kind!r}")
        except KeyError as err:
            return error(f"the view needs the parameter {err.args[0]!r}")
        except ValueError as err:
            return error(f"bad view: {err}")
        try:
            upload = store.image(image)
            store.model(model)
        except KeyError as err:
            return error(err.args[0], 404)
        if client:
            latest_seq.put(client, max(seq, latest_seq.get(client) or 0))
        superseded = lambda: bool(client) and (latest_seq.get(client) or 0) > seq

        def run() -> bytes | None:
            try:
                if superseded():
                    return None
                if kind == "bicubic":
                    pixels = views.bicubic_view(upload.rgb, v)
                else:
                    pixels = views.render_view(store.encoded(image, model), v, superseded)
            except views.Superseded:
                return None
            return png_bytes(pixels, compress_level=1)

        try:
            data = await worker.run(run)
        except Busy as err:
            return error(str(err), 503)
        except Exception as err:  # the page shows it; the server goes on
            return error(f"the view failed: {type(err).__name__}: {err}", 500)
        if data is None:
            return Response(status_code=204)
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})

    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/models", list_models),
            Route("/api/images", upload, methods=["POST"]),
            Route("/api/upscale", upscale, methods=["POST"]),
            Route("/api/jobs/{job}", job_status),
            Route("/api/jobs/{job}/{kind:str}.png", job_png),
            Route("/api/view", view),
            Mount("/static", StaticFiles(directory=STATIC)),
        ],
        lifespan=lifespan,
    )


@contextlib.contextmanager
def running(app: Starlette, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """The app served by uvicorn on a thread of this process (tests, scripts): yields its URL, and
    stops it, with its lifespan (the upload folder removed), when the block ends."""
    import uvicorn

    srv = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        if not thread.is_alive():
            raise RuntimeError(f"the app did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{srv.servers[0].sockets[0].getsockname()[1]}"
    finally:
        srv.should_exit = True
        thread.join(30)
