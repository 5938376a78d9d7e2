"""Outputs written whole: a file or folder under the name asked for is complete or absent, never
half written by an error or Ctrl-C (renders, evaluation results and plots, checkpoints exported)."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
from collections.abc import Iterator


@contextlib.contextmanager
def written_whole(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """A temporary name beside `path`, with its suffix (writers choose the format by it), renamed
    to `path` when the block ends normally and removed when it does not (an error, Ctrl-C): the
    name asked for holds a whole output or nothing new, never half a file or folder."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    _remove(tmp)  # left by a process that was killed outright
    try:
        yield tmp
        os.replace(tmp, path)  # also over an empty folder given as the output
    finally:
        _remove(tmp)


def _remove(path: pathlib.Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
