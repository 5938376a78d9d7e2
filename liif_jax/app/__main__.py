"""`python -m liif_jax.app [--model MODEL ...] [--host 127.0.0.1] [--port 8000]`: serves the app
(upscale and explore, `liif_jax.app.server`) and prints its local URL."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from liif_jax import cli_checks

DEFAULT_MODEL = "pretrained:edsr-baseline-liif"
EXTRA_MISSING = 'the app needs its extra: pip install "liif_jax[app]" (starlette and uvicorn)'


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from liif_jax.app import server

    parser = argparse.ArgumentParser(
        prog=cli_checks.program_name("liif_jax.app", "liif-app"),
        description="Upscale and explore photographs at any scale with LIIF, in a browser.",
    )
    parser.add_argument(
        "--model",
        action="append",
        help=f"a model to offer (repeat for several): the shipped model by name, a liif_jax workdir or "
        f"checkpoint directory, or an official .pth; the first is the default (default: {DEFAULT_MODEL})",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    parser.add_argument(
        "--max-upload-mb", type=float, default=server.DEFAULT_MAX_UPLOAD_BYTES / 2**20, help="largest upload, MiB"
    )
    parser.add_argument(
        "--max-pixels", type=int, default=server.DEFAULT_MAX_PIXELS, help="largest uploaded image, in pixels"
    )
    parser.add_argument(
        "--max-output-pixels",
        type=int,
        default=server.DEFAULT_MAX_OUTPUT_PIXELS,
        help="largest upscale, in pixels",
    )
    parser.add_argument(
        "--max-queue", type=int, default=server.DEFAULT_MAX_QUEUE, help="renders that may wait; more are refused"
    )
    args = parser.parse_args(argv)
    for flag in ("max_upload_mb", "max_pixels", "max_output_pixels", "max_queue"):
        if not getattr(args, flag) > 0:
            parser.error(f"--{flag.replace('_', '-')} must be positive, got {getattr(args, flag)}")
    if not 0 <= args.port < 65536:
        parser.error(f"--port must be in 0..65535, got {args.port}")
    return args


def url(host: str, srv: Any) -> str:
    """The URL to open on this machine for a `uvicorn.Server` that has started on `host`."""
    port = srv.servers[0].sockets[0].getsockname()[1]
    host = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else host
    return f"http://{f'[{host}]' if ':' in host and not host.startswith('[') else host}:{port}/"


def main(argv: list[str] | None = None) -> int:
    try:
        import uvicorn

        from liif_jax.app import server
    except ImportError as err:
        print(f"error: {EXTRA_MISSING} ({err})", file=sys.stderr)
        return 1
    args = parse_args(argv)
    from liif_jax.api import load

    models = {}
    for name in args.model or [DEFAULT_MODEL]:
        try:
            models[name] = load(name)
        except (OSError, ValueError) as err:
            print(f"error: --model {name}: {err}", file=sys.stderr)
            return 1
    app = server.create_app(
        models,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_pixels=args.max_pixels,
        max_output_pixels=args.max_output_pixels,
        max_queue=args.max_queue,
    )
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=2)
    srv = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.create_task(srv.serve())
        while not (srv.started or task.done()):  # the port is bound (also for --port 0) before the URL is printed
            await asyncio.sleep(0.05)
        if srv.started:
            print(f"liif_jax app: {url(args.host, srv)}  (models: {', '.join(models)}; Ctrl-C stops)", flush=True)
        await task

    asyncio.run(serve())
    return 0 if srv.started else 1


if __name__ == "__main__":
    sys.exit(main())
