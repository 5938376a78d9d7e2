"""Loads the official reference vectors (tests/data/reference, or LIIF_REFERENCE_DIR) as (model, params, arrays)."""

from __future__ import annotations

import functools
import json
import pathlib

import numpy as np
import pytest

from liif_jax.formats.state_dict import params_from_state_dict
from liif_jax.models import build_model

from conftest import REFERENCE_DIR, TESTS


@functools.cache
def manifest() -> dict[str, dict]:
    return {e["name"]: e for e in json.loads(path("MANIFEST.json").read_text())}


def path(name: str) -> pathlib.Path:
    """A reference file; one that an extra LIIF_REFERENCE_DIR lacks is skipped, never missing here."""
    file = REFERENCE_DIR / name
    if not file.exists() and REFERENCE_DIR != TESTS / "data" / "reference":
        pytest.skip(f"{file.name} is not in LIIF_REFERENCE_DIR={REFERENCE_DIR}")
    return file


def arrays(name: str) -> dict[str, np.ndarray]:
    with np.load(path(f"{name}.npz")) as d:
        return {k: d[k] for k in d.files}


def state_dict(arrs: dict[str, np.ndarray], prefix: str = "param/") -> dict[str, np.ndarray]:
    return {k[len(prefix) :]: v.astype(np.float32) for k, v in arrs.items() if k.startswith(prefix)}


def load(name: str):
    """(model, params, arrays) for one reference file."""
    arrs = arrays(name)
    model = build_model(manifest()[name]["model_spec"])
    return model, params_from_state_dict(model, state_dict(arrs), name), arrs


def nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
