"""Shared test setup: float32 at highest matmul precision, as the reference vectors were made."""

import importlib.util
import os
import pathlib
import sys
import tempfile
import types

# The tests run on the CPU. With libtpu or the CUDA plugin installed (the aot extras) and no such
# device, JAX would otherwise try those backends first, with seconds of warnings per process.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Cached evaluations of comparison models (liif_jax.evaluation.cache) go to a folder of this run, not the user's.
os.environ.setdefault("LIIF_JAX_CACHE", tempfile.mkdtemp(prefix="liif_jax_test_cache_"))

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

TESTS = pathlib.Path(__file__).resolve().parent
# Vectors from the official PyTorch code (experiments/reference/make_reference.py). LIIF_REFERENCE_DIR
# may name another folder of the same format (e.g. one made with full-width models) as an extra check.
REFERENCE_DIR = pathlib.Path(os.environ.get("LIIF_REFERENCE_DIR") or TESTS / "data" / "reference").resolve()
TFDS_DIR = TESTS / "data" / "tfds"  # tiny_div2k_like: see tests/data/tfds/README.md
REPO = pathlib.Path(__file__).resolve().parents[1]
# The experiments' analysis tools (experiments/xla_tools), which their tests import.
sys.path.insert(0, str(REPO / "experiments"))


def pytest_configure(config: pytest.Config) -> None:
    if not REFERENCE_DIR.is_dir():
        raise pytest.UsageError(
            f"LIIF_REFERENCE_DIR={REFERENCE_DIR} is not a folder; unset it for tests/data/reference"
        )


def load_module(path: pathlib.Path) -> types.ModuleType:
    """An experiment script (experiments/*.py, experiments/reference/*.py), which is in no package, as a module."""
    spec = importlib.util.spec_from_file_location(path.stem.replace("-", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
