"""Which decoder a render's query blocks use, and the guard that keeps the fused kernel safe.

The XLA decoder is the default on every device. The fused Pallas kernel (`liif_jax.kernels.fused_query`)
becomes a GPU's default only when a measurement on that GPU generation found it faster and within
`TOLERANCE`: `KERNEL_FASTER`, keyed by compute capability, says which measurement. Until then it
runs when asked for (`--decoder pallas`, or `LIIF_JAX_DECODER=pallas`), and even then a render
checks its first block against the XLA decoder on a sample of the same queries; a mismatch, a NaN
or a compile or launch error gives one warning and the XLA decoder for the rest of the process.
Triton refuses GPUs below compute capability 8.0, so the kernel is refused there before compiling.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import jax
import numpy as np

ENV = "LIIF_JAX_DECODER"  # "xla" or "pallas": the decoder when none is given
MIN_COMPUTE_CAPABILITY = (8, 0)  # Triton's "only enabled for Ampere GPUs"
CHECK_QUERIES = 256  # queries of the first block that the XLA decoder recomputes
# Largest error allowed, relative to the largest magnitude of the XLA decoder's output, by the
# kernel's matmul precision: three TF32 products at "highest", one TF32 product, bf16 products.
TOLERANCE = {"highest": 1e-5, "tf32": 2e-3, "bf16": 3e-2}

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Measurement:
    """A measured render on one GPU that makes the kernel the default for its compute capability."""

    gpu: str  # device kind, e.g. "NVIDIA H100 80GB HBM3"
    kernel_ms: float  # x4 render (339x510 -> 1356x2040), fused kernel
    xla_ms: float  # the same render, XLA decoder
    max_rel_error: float  # kernel against float64, TF32
    source: str  # results file under experiments/results/


# Compute capability -> the measurement that made the kernel the default there. Empty: no GPU has
# measured the current kernel, so XLA's decoder is the default on every GPU.
KERNEL_FASTER: dict[tuple[int, int], Measurement] = {}


class KernelUnavailable(RuntimeError):
    """The fused kernel cannot run here: refused by the compiler (not for lack of device memory),
    failed to launch, or disagreed with the XLA decoder."""


def compute_capability(device: jax.Device | None) -> tuple[int, int] | None:
    """(major, minor) of an NVIDIA GPU, compile-only devices included; None for other devices."""
    text = getattr(device, "compute_capability", None) if device is not None else None
    if not text:
        return None
    major, _, minor = str(text).partition(".")
    return int(major), int(minor or 0)


def refusal(cc: tuple[int, int] | None) -> str | None:
    """Why the kernel cannot run on a GPU of this compute capability (one line), or None."""
    if cc is not None and cc < MIN_COMPUTE_CAPABILITY:
        return (
            f"decoder 'pallas': the fused kernel needs compute capability >= 8.0 (Triton), this GPU has "
            f"{cc[0]}.{cc[1]}; use decoder 'xla'"
        )
    return None


def forced() -> str | None:
    """The decoder `LIIF_JAX_DECODER` names, or None when it is unset or empty."""
    value = os.environ.get(ENV, "").strip().lower()
    if value and value not in ("xla", "pallas"):
        raise ValueError(f"{ENV} must be 'xla' or 'pallas', got {value!r}")
    return value or None


def default(platform: str, cc: tuple[int, int] | None) -> str:
    """The decoder for a model the kernel runs, when none is given: `forced()`, else "pallas" only
    on a GPU generation `KERNEL_FASTER` names."""
    return forced() or ("pallas" if platform == "gpu" and cc in KERNEL_FASTER else "xla")


def device_memory_error(err: BaseException) -> bool:
    """Whether a compiler error says the device's memory is too small (so a smaller tile may fit),
    rather than that the kernel cannot be built here (shared memory per block, an unsupported GPU)."""
    text = str(err)
    return "RESOURCE_EXHAUSTED" in text and "shared memory" not in text.lower()


def tolerance(mlp_dtype, precision: str | None) -> float:
    """`TOLERANCE` for a render's MLP dtype and matmul precision."""
    if mlp_dtype is not None and np.dtype(mlp_dtype) != np.float32:
        return TOLERANCE["bf16"]
    return TOLERANCE["highest"] if precision in ("highest", "float32") else TOLERANCE["tf32"]


def sample(n: int) -> np.ndarray:
    """Indices of the queries of an n-query block that the check recomputes: spread over it, both ends included."""
    return np.unique(np.linspace(0, n - 1, min(n, CHECK_QUERIES)).round().astype(np.int32))


def mismatch(kernel: np.ndarray, xla: np.ndarray, tol: float) -> str | None:
    """Why the kernel's outputs fail the check against the XLA decoder's on the same queries, or None."""
    if not np.all(np.isfinite(kernel)):
        return "non-finite output"
    err = float(np.abs(kernel - xla).max() / max(float(np.abs(xla).max()), 1e-6))
    return f"relative error {err:.2e} against the XLA decoder, above {tol:.0e}" if err > tol else None


_checked: set[tuple] = set()  # (device kind, model, dtype, precision) whose first block passed
_failed: dict[str, str] = {}  # device kind -> why the kernel fell back


def failed(device: jax.Device) -> bool:
    """Whether the kernel already fell back on this kind of device in this process."""
    return device.device_kind in _failed


def needs_check(key: tuple) -> bool:
    return key not in _checked


def passed(key: tuple) -> None:
    _checked.add(key)


def fall_back(device: jax.Device, why: str) -> str:
    """Remembers that the kernel failed on this kind of device, says so once, and gives "xla"."""
    if device.device_kind not in _failed:
        _failed[device.device_kind] = why
        log.warning(
            "fused query kernel unavailable on %s (%s); using the XLA decoder for this process (--decoder xla "
            "skips the kernel)",
            device.device_kind,
            why,
        )
    return "xla"


def first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:200] if lines else ''}"
