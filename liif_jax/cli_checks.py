"""Checks the CLIs run on flags, paths and sizes before loading a model or data, so that a mistake
costs seconds and one line, not a render or an evaluation that then fails at the end; and the program name as typed.
Outputs are written whole by `liif_jax.formats.atomic.written_whole`."""

from __future__ import annotations

import math
import os
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

from liif_jax.data import imaging

IMAGE_OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# Host bytes per output pixel of a render: the float32 RGB result and its uint8 image.
RENDER_BYTES_PER_PIXEL = 3 * 4 + 3


def check_output_file(path: str | os.PathLike, flag: str, suffixes: Sequence[str], makes_folder: bool = False) -> None:
    """A file we can create or overwrite: a supported extension, in a writable folder that exists
    (or, when the writer makes it, `makes_folder`, can be made)."""
    p = pathlib.Path(path)
    if p.is_dir():
        raise ValueError(f"{flag} {path} is a folder; give a file name")
    if p.suffix.lower() not in suffixes:
        raise ValueError(
            f"{flag} {path}: unsupported file type {p.suffix or '(none)'!r}; use one of {', '.join(suffixes)}"
        )
    folder = p.absolute().parent
    if makes_folder:
        check_output_dir(folder, f"{flag} {path}: folder")
    elif not folder.is_dir():
        raise ValueError(f"{flag} {path}: folder {folder} does not exist; create it first")
    if (folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK)) or (p.exists() and not os.access(p, os.W_OK)):
        raise ValueError(f"{flag} {path}: not writable")


def check_output_dir(path: str | os.PathLike, flag: str) -> None:
    """A folder that exists or can be made: its nearest existing ancestor is a writable folder."""
    p = pathlib.Path(path).absolute()
    if p.exists() and not p.is_dir():
        raise ValueError(f"{flag} {path} exists and is not a folder")
    existing = next(a for a in (p, *p.parents) if a.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: {existing} is not a writable folder")


def scaled_size(size: tuple[int, int], scale: float, flag: str = "--scale") -> tuple[int, int]:
    """round(scale x) an (H, W) size, at least 1 each; refuses a scale that is not a positive number
    or that asks for more pixels than the limit."""
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"{flag} must be a positive number, got {scale}")
    h, w = size
    if (h * scale) * (w * scale) > imaging.max_pixels():
        raise ValueError(
            f"{flag} {scale:g} of a {h}x{w} image asks for about {h * scale:.0f}x{w * scale:.0f} pixels, over the "
            f"limit of {imaging.max_pixels()}; raise it with --max-pixels if you mean it"
        )
    return max(1, round(h * scale)), max(1, round(w * scale))


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_render_size(size: tuple[int, int], flag: str) -> None:
    """An output size within --max-pixels whose host buffers fit in the available memory."""
    h, w = size
    try:
        imaging.check_pixels(h, w, f"{flag}: the output")
    except imaging.ImageError as err:
        raise ValueError(str(err)) from None
    need, free = h * w * RENDER_BYTES_PER_PIXEL, available_memory()
    if free is not None and need > free:
        raise ValueError(
            f"{flag}: an output of {h}x{w} pixels needs about {need / 2**30:.1f} GiB of memory, and "
            f"{free / 2**30:.1f} GiB is available; ask for a smaller output"
        )


def check_step(step: int | None) -> None:
    if step is not None and step < 0:
        raise ValueError(f"--step must be a checkpoint step (>= 0), got {step}")


def source_files(source: Any) -> list[pathlib.Path]:
    """The image files an evaluation source reads (folders and paired folders; none for TFDS)."""
    inner = getattr(source, "source", None)  # evaluator.CenterCropped
    if inner is not None:
        return source_files(inner)
    if hasattr(source, "pairs"):
        return [f for pair in source.pairs for f in pair]
    return list(getattr(source, "files", []))


def check_image_headers(source: Any) -> int:
    """Reads every image's header (format, size, pixel limit) before any is decoded; returns the count."""
    files = source_files(source)
    for f in files:
        try:
            imaging.read_size(f)
        except imaging.ImageError as err:
            raise imaging.in_folder(err, f) from None
    return len(files)


INTERRUPTED = 130  # the exit status of a program stopped by Ctrl-C (128 + SIGINT), as shells report it


def program_name(module: str, script: str) -> str:
    """The name to show in usage and errors: the console script (`liif-demo`) when that is what
    runs, else `python -m MODULE`, so that a message names the command the person typed."""
    return script if sys.argv and os.path.basename(sys.argv[0]) == script else f"python -m {module}"
