"""Shared test setup: float32 at highest matmul precision, as the reference vectors were made."""

import importlib.util
import os
import pathlib
import types

import jax
import pytest

jax.config.update("jax_default_matmul_precision", "highest")

REFERENCE_DIR = pathlib.Path(
    os.environ.get("LIIF_REFERENCE_DIR", pathlib.Path(__file__).resolve().parents[1] / ".." / "shared" / "reference")
).resolve()
DATA_DIR = REFERENCE_DIR.parent / "data"
REPO = pathlib.Path(__file__).resolve().parents[1]


def load_module(path: pathlib.Path) -> types.ModuleType:
    """A Python file that is not in a package (experiments/*.py, experiments/configs/*.py) as a module."""
    spec = importlib.util.spec_from_file_location(path.stem.replace("-", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def reference_dir() -> pathlib.Path:
    if not REFERENCE_DIR.is_dir():
        pytest.fail(f"reference vectors not found at {REFERENCE_DIR}; set LIIF_REFERENCE_DIR")
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def shared_data_dir() -> pathlib.Path:
    return DATA_DIR
