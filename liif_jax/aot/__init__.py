"""Compiling for accelerators this machine does not have, and checking that the programs fit.

`devices(target)` gives compile-only devices of a TPU or GPU target; `train_step`, `render_programs`
and `zoom_programs` lower our programs for them; `memory` and `fits` read the compiled result
(`compiled = lowered.compile()`). Run with `JAX_PLATFORMS=cpu`: nothing executes.
"""

from liif_jax.aot.programs import (
    batch_shapes,
    fits,
    lowering,
    memory,
    mesh,
    render_programs,
    render_tile,
    total_bytes,
    train_step,
    zoom_programs,
)
from liif_jax.aot.targets import TARGETS, Target, chip_memory, devices, target

__all__ = [
    "TARGETS",
    "Target",
    "batch_shapes",
    "chip_memory",
    "devices",
    "fits",
    "lowering",
    "memory",
    "mesh",
    "render_programs",
    "render_tile",
    "target",
    "total_bytes",
    "train_step",
    "zoom_programs",
]
