"""The files the package ships beside its code: the experiment configs (with their split files)
and the trained model, reachable by name wherever the package is installed.

In a clone they are `experiments/configs/` and `experiments/pretrained/`, where a user reads and
copies them. A wheel (or `pip install .`) carries the same files as `liif_jax/_shipped/configs/`
and `liif_jax/_shipped/pretrained/`: setup.cfg maps those folders into the package, so the
repository holds one copy of each file. This module finds whichever of the two is there.

Names: `--config quickstart` is `configs/quickstart.py`; the model `pretrained:edsr-baseline-liif`
is `pretrained/edsr-baseline-liif/` (the prefix keeps a name from being read as a path).
"""

from __future__ import annotations

import os
import pathlib

PRETRAINED_PREFIX = "pretrained:"
_PACKAGE = pathlib.Path(__file__).resolve().parent


def root() -> pathlib.Path:
    """`liif_jax/_shipped/` of an installed wheel, else the clone's `experiments/`."""
    installed = _PACKAGE / "_shipped"
    return installed if installed.is_dir() else _PACKAGE.parent / "experiments"


def configs_dir() -> pathlib.Path:
    return root() / "configs"


def pretrained_dir() -> pathlib.Path:
    return root() / "pretrained"


def config_names() -> list[str]:
    return sorted(p.stem for p in configs_dir().glob("*.py"))


def is_config_name(text: str) -> bool:
    """A bare name such as `edsr-baseline-liif`, not a path (no folder, no suffix, no `:args`)."""
    return bool(text) and not any(c in text for c in "/\\:") and pathlib.PurePath(text).suffix not in (".py", ".yaml", ".yml")


def config_path(name: str) -> pathlib.Path:
    """The shipped config file called `name`."""
    names = config_names()
    if name not in names:
        raise ValueError(f"no config named {name!r}; the shipped configs are {', '.join(names) or '(none found)'} "
                         "(or give the path of a .py config or of an official .yaml)")
    return configs_dir() / f"{name}.py"


def pretrained_names() -> list[str]:
    folder = pretrained_dir()
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def model_path(model: str | os.PathLike) -> str | os.PathLike:
    """`pretrained:NAME` -> the shipped model's checkpoint folder; any other value is a path, unchanged."""
    if not (isinstance(model, str) and model.startswith(PRETRAINED_PREFIX)):
        return model
    name, names = model.removeprefix(PRETRAINED_PREFIX), pretrained_names()
    if name not in names:
        shipped = ", ".join(PRETRAINED_PREFIX + n for n in names) or "none"
        raise FileNotFoundError(f"{model}: no such shipped model (shipped: {shipped})")
    return pretrained_dir() / name
