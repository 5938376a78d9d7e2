"""The explorer's views: which continuous coordinates a screen's pixels show, and their colours.

A view at scale S shows the image as if rendered whole at S output pixels per input pixel (an
h S x w S virtual output, not necessarily whole numbers), of which the screen holds the window
of `height` x `width` pixels whose top-left corner is at virtual pixel (`top`, `left`). Screen pixel
(i, j) is then the virtual output pixel (top + i, left + j): its centre is at LIIF's
y = -1 + 2 (top + i + 0.5) / (h S), x = -1 + 2 (left + j + 0.5) / (w S), and its cell is
(2 / (h S), 2 / (w S)), the convention of `liif_jax.Latents.query`. Pixels off the image are
transparent. A view is bounded in pixels whatever its scale, and it is queried in chunks, so the
memory a view needs does not grow with the zoom.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
from PIL import Image

from liif_jax.api import Latents
from liif_jax.render import render

MAX_VIEW_PIXELS = 4096 * 4096  # a view larger than an 8K screen is a mistake, not a request
MAX_SCALE = 1000.0
CHUNK_ROWS_PIXELS = 1 << 15  # queries between two checks that the view is still wanted


class Superseded(Exception):
    """A newer view of the same client arrived: this one is no longer worth computing."""


@dataclasses.dataclass(frozen=True)
class View:
    """A window of the image rendered at `scale`, in screen pixels (see the module's docstring)."""

    scale: float
    top: float
    left: float
    height: int
    width: int

    def check(self) -> None:
        """Refuses a view no screen shows, in a sentence for the page."""
        if not all(math.isfinite(v) for v in (self.scale, self.top, self.left)):
            raise ValueError("the view's scale and position must be finite numbers")
        if not 0 < self.scale <= MAX_SCALE:
            raise ValueError(f"the view's scale must be in (0, {MAX_SCALE:g}], got {self.scale:g}")
        if self.height <= 0 or self.width <= 0 or self.height * self.width > MAX_VIEW_PIXELS:
            raise ValueError(
                f"a view is 1 to {MAX_VIEW_PIXELS} pixels, got {self.height}x{self.width}; use a smaller window"
            )

    def centres(self, in_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """The (y, x) centres of the view's rows and columns in [-1, 1] units; NaN where off the image."""
        out = []
        for start, n, side in ((self.top, self.height, in_hw[0]), (self.left, self.width, in_hw[1])):
            c = -1 + 2 * (start + np.arange(n, dtype=np.float64) + 0.5) / (side * self.scale)
            out.append(np.where(np.abs(c) <= 1, c, np.nan))
        return out[0], out[1]

    def cell(self, in_hw: tuple[int, int]) -> tuple[float, float]:
        return 2 / (in_hw[0] * self.scale), 2 / (in_hw[1] * self.scale)


def render_view(latents: Latents, view: View, superseded: Callable[[], bool] = lambda: False) -> np.ndarray:
    """RGBA uint8 (height, width, 4) of `view` from the cached latents: colours rounded to the
    nearest uint8, alpha 0 off the image. Raises `Superseded` between chunks once `superseded()`."""
    ys, xs = view.centres(latents.in_hw)
    out = np.zeros((view.height, view.width, 4), np.uint8)
    rows, cols = np.flatnonzero(~np.isnan(ys)), np.flatnonzero(~np.isnan(xs))
    if not len(rows) or not len(cols):
        return out
    cell = view.cell(latents.in_hw)
    step = max(1, CHUNK_ROWS_PIXELS // len(cols))
    for r0 in range(0, len(rows), step):
        if superseded():
            raise Superseded
        r = rows[r0 : r0 + step]
        coords = np.stack(np.meshgrid(ys[r], xs[cols], indexing="ij"), axis=-1).astype(np.float32).reshape(-1, 2)
        n = len(coords)
        # At least one full query chunk, so that every view, coarse or not, runs the same compiled program.
        padded = np.concatenate([coords, np.repeat(coords[-1:], max(0, render.default_batch_queries() - n), axis=0)])
        rgb = latents.query(padded, cell)[:n].reshape(len(r), len(cols), 3)
        out[r[0] : r[-1] + 1, cols[0] : cols[-1] + 1, :3] = np.rint(rgb * 255).astype(np.uint8)
        out[r[0] : r[-1] + 1, cols[0] : cols[-1] + 1, 3] = 255
    return out


def bicubic_view(image: np.ndarray, view: View) -> np.ndarray:
    """RGBA uint8 of `view` by PIL's bicubic resampling of the input (uint8 (h, w, 3)) at the same
    pixel centres as `render_view`, for the comparison."""
    h, w = image.shape[:2]
    # The screen pixels wholly on the image (PIL's box cannot reach past its edges): all but at most
    # one partly covered pixel per edge, which stays transparent.
    rows = np.flatnonzero(
        (view.top + np.arange(view.height) >= 0) & (view.top + np.arange(1, view.height + 1) <= h * view.scale)
    )
    cols = np.flatnonzero(
        (view.left + np.arange(view.width) >= 0) & (view.left + np.arange(1, view.width + 1) <= w * view.scale)
    )
    out = np.zeros((view.height, view.width, 4), np.uint8)
    if not len(rows) or not len(cols):
        return out
    # Input pixel k spans [k, k + 1]: output pixel i of the window spans [(top + i) / S, (top + i + 1) / S].
    x0, y0 = (view.left + cols[0]) / view.scale, (view.top + rows[0]) / view.scale
    x1, y1 = (view.left + cols[-1] + 1) / view.scale, (view.top + rows[-1] + 1) / view.scale
    box = (max(0.0, float(x0)), max(0.0, float(y0)), min(float(w), float(x1)), min(float(h), float(y1)))
    patch = Image.fromarray(image).resize((len(cols), len(rows)), Image.BICUBIC, box=box)
    out[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1, :3] = np.asarray(patch)
    out[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1, 3] = 255
    return out
