"""Loads the official reference vectors (../shared/reference) as (model, params, arrays)."""

from __future__ import annotations

import functools
import json
import pathlib

import numpy as np

from conftest import REFERENCE_DIR
from liif_jax.state_dict import params_from_state_dict
from liif_jax.models import build_model


@functools.cache
def manifest() -> dict[str, dict]:
    return {e["name"]: e for e in json.loads((REFERENCE_DIR / "MANIFEST.json").read_text())}


def arrays(name: str) -> dict[str, np.ndarray]:
    with np.load(pathlib.Path(REFERENCE_DIR) / f"{name}.npz") as d:
        return {k: d[k] for k in d.files}


def state_dict(arrs: dict[str, np.ndarray], prefix: str = "param/") -> dict[str, np.ndarray]:
    return {k[len(prefix):]: v.astype(np.float32) for k, v in arrs.items() if k.startswith(prefix)}


def load(name: str):
    """(model, params, arrays) for one reference file."""
    arrs = arrays(name)
    model = build_model(manifest()[name]["model_spec"])
    return model, params_from_state_dict(model, state_dict(arrs), name), arrs


def nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
