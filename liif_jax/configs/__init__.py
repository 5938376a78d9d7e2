"""The shipped configs, as data: one module per config, whose `get_config()` returns an
`ml_collections.ConfigDict` (the fields of the official YAML configs, see `common`).

`load(value)` is what `--config VALUE` means everywhere: a shipped config's name (`quickstart`,
`edsr_baseline_liif`; hyphens as in the official file names work too), the path of a config file
(`my_config.py`, or `my_config.py:ARG` to pass ARG to its `get_config`), or an official training
YAML (`train_edsr-baseline-liif.yaml`, converted by `official.from_official_yaml`).
`apply_overrides` then applies `--config.KEY=VALUE` flags to the result.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import pathlib
from collections.abc import Mapping, Sequence

import ml_collections

_HERE = pathlib.Path(__file__).resolve().parent
_NOT_CONFIGS = {"__init__", "common", "official"}


def names() -> list[str]:
    """The shipped configs' names."""
    return sorted(p.stem for p in _HERE.glob("*.py") if p.stem not in _NOT_CONFIGS)


def module_name(name: str) -> str:
    """`edsr-baseline-liif` or `edsr_baseline_liif` -> `edsr_baseline_liif`, if shipped."""
    module = name.replace("-", "_")
    if module not in names():
        close = difflib.get_close_matches(module, names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"no config named {name!r}{hint}; the shipped configs are {', '.join(names())} "
            "(or give the path of a .py config or of an official .yaml)"
        )
    return module


def get(name: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """A shipped config by name."""
    module = importlib.import_module(f"{__name__}.{module_name(name)}")
    return module.get_config(*([arg] if arg is not None else []))


def _from_file(path: str, arg: str | None) -> ml_collections.ConfigDict:
    file = pathlib.Path(path)
    if not file.is_file():
        raise ValueError(f"--config {path}: no such file (a shipped config's name, a .py config or an official .yaml)")
    spec = importlib.util.spec_from_file_location(f"liif_config_{file.stem.replace('-', '_')}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"--config {path}: a config file defines get_config()")
    return module.get_config(*([arg] if arg is not None else []))


def load(value: str) -> ml_collections.ConfigDict:
    """`--config VALUE`: a shipped name, `FILE.py[:ARG]` or an official `FILE.yaml`."""
    if value.endswith((".yaml", ".yml")):
        from liif_jax.configs import official

        return official.from_official_yaml(value)
    path, _, arg = value.partition(":")
    if "/" in path or "\\" in path or path.endswith(".py"):
        return _from_file(path, arg or None)
    return get(path, arg or None)


def _parse_value(text: str, current: object, key: str) -> object:
    """A command-line value for a field that holds `current` (its type decides how to read it)."""
    if isinstance(current, str):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if current is None:
            return text  # a placeholder field: a plain string
        raise ValueError(f"--config.{key}={text}: not a Python literal ({type(current).__name__} expected)") from None
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    return value


def _field(config: ml_collections.ConfigDict, key: str, flag: str) -> tuple[ml_collections.ConfigDict, str]:
    """(group, name) of the dotted `key`'s field; an unknown key is named (as `flag`) with the keys at its level."""
    node, path = config, key.split(".")
    for depth, part in enumerate(path):
        where = "config" + "".join(f".{k}" for k in path[:depth])
        if not isinstance(node, ml_collections.ConfigDict):
            raise ValueError(f"{flag}: {where} is a {type(node).__name__}, not a group of keys")
        if part not in node:
            close = difflib.get_close_matches(part, list(node.keys()), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{flag}: {where} has no key {part!r}{hint}; it has: {', '.join(sorted(node.keys()))}")
        if depth < len(path) - 1:
            node = node[part]
    return node, path[-1]


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[tuple[str, str]]) -> None:
    """Sets `KEY=VALUE` pairs (dotted keys) on `config`, each checked against its keys and types;
    an unknown key is named with the keys at its level."""
    for key, text in overrides:
        node, field = _field(config, key, f"--config.{key}")
        value = _parse_value(text, node[field], key)
        try:
            node[field] = value
        except TypeError as e:  # the field's type is fixed (ConfigDict's type safety)
            raise ValueError(f"--config.{key}={text}: {e}") from None


def set_values(config: ml_collections.ConfigDict, values: Mapping[str, object]) -> None:
    """`apply_overrides` for Python values (`liif_jax.train`'s overrides): {"num_steps": 10,
    "final_eval.scales": (4,)}, the same checks; a list for a tuple field becomes a tuple."""
    for key, value in values.items():
        node, field = _field(config, key, f"overrides[{key!r}]")
        if isinstance(node[field], tuple) and isinstance(value, list):
            value = tuple(value)
        try:
            node[field] = value
        except TypeError as e:  # the field's type is fixed (ConfigDict's type safety)
            raise ValueError(f"overrides[{key!r}] = {value!r}: {e}") from None
