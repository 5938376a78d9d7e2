"""The trained models that ship inside the package, one orbax checkpoint folder each, named
`pretrained:NAME` wherever a model is taken (`pretrained:edsr-baseline-liif`; the prefix keeps a
name from being read as a path). README.md beside this file says how each was trained."""

from __future__ import annotations

import os
import pathlib

PREFIX = "pretrained:"
_HERE = pathlib.Path(__file__).resolve().parent


def names() -> list[str]:
    return sorted(p.name for p in _HERE.iterdir() if p.is_dir() and not p.name.startswith("_"))


def model_path(model: str | os.PathLike) -> str | os.PathLike:
    """`pretrained:NAME` -> the shipped model's checkpoint folder; any other value is a path, unchanged."""
    if not (isinstance(model, str) and model.startswith(PREFIX)):
        return model
    name = model.removeprefix(PREFIX)
    if name not in names():
        shipped = ", ".join(PREFIX + n for n in names()) or "none"
        raise FileNotFoundError(f"{model}: no such shipped model (shipped: {shipped})")
    return _HERE / name
