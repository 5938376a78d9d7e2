"""What the app keeps between requests: uploaded images (decoded, in memory), their latent grids
per model, and finished renders, each in a bounded least-recently-used store, so that many
uploads or zooms never grow the process without limit. The image is encoded once per model: every
view of it queries the cached grid."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from liif_jax import cli_checks
from liif_jax.api import Latents, Upscaler
from liif_jax.data import imaging


class LRU:
    """A dict of at most `size` entries that forgets the least recently used; thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


@dataclasses.dataclass(frozen=True)
class Upload:
    name: str
    rgb: np.ndarray  # uint8 (h, w, 3), as the demo reads the file


def new_id() -> str:
    return secrets.token_urlsafe(9)


def decode_upload(data: bytes, name: str, folder: pathlib.Path, max_pixels: int) -> Upload:
    """The image in `data`, read as the demo reads a file (`imaging.load_rgb`: only the formats it
    knows, the size checked from the header before decoding, the whole file decoded). The bytes are
    written to `folder` under a random name for that and removed at once, whatever happens."""
    path = folder / f"{new_id()}.upload"
    try:
        path.write_bytes(data)
        h, w = imaging.read_size(path)
        if h * w > max_pixels:
            raise imaging.ImageError(
                f"the image is {h}x{w} = {h * w} pixels, over this app's limit of {max_pixels} "
                "(the server's --max-pixels); use a smaller image"
            )
        rgb = imaging.load_rgb(path)
    except imaging.ImageError as err:
        raise imaging.ImageError(str(err).replace(repr(os.fspath(path)), repr(name))) from None
    finally:
        path.unlink(missing_ok=True)
    return Upload(name, rgb)


class Sessions:
    """The models by name and the bounded stores of images, latents and finished renders."""

    def __init__(self, models: dict[str, Upscaler], images: int = 16, latents: int = 4, renders: int = 8) -> None:
        self.models = models
        self.images = LRU(images)
        self.latents = LRU(latents)
        self.renders = LRU(renders)
        self._encode_lock = threading.Lock()

    def model(self, name: str) -> Upscaler:
        if name not in self.models:
            raise KeyError(f"no model {name!r} on this server; it has {', '.join(self.models)}")
        return self.models[name]

    def image(self, image_id: str) -> Upload:
        upload = self.images.get(image_id)
        if upload is None:
            raise KeyError("that image is no longer on the server (it keeps the latest uploads); upload it again")
        return upload

    def encoded(self, image_id: str, model: str, on_encode: Callable[[], None] = lambda: None) -> Latents:
        """The latents of an uploaded image under a model, encoded on first use only."""
        key = (image_id, model)
        with self._encode_lock:
            latents = self.latents.get(key)
            if latents is None:
                on_encode()
                latents = self.model(model).encode(self.image(image_id).rgb)
                self.latents.put(key, latents)
            return latents


def output_limit_message(out_hw: tuple[int, int], max_pixels: int) -> str | None:
    """Why an upscale of this size is refused (the app's pixel limit, the host's memory), or None."""
    h, w = out_hw
    if h * w > max_pixels:
        return (
            f"an output of {h}x{w} = {h * w} pixels is over this app's limit of {max_pixels} "
            "(the server's --max-output-pixels); ask for a smaller scale or size"
        )
    try:
        cli_checks.check_render_size(out_hw, "the requested size")
    except ValueError as err:
        return str(err)
    return None
