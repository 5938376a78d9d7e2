"""How much memory a device has, and how much of it a compiled program needs.

`render` picks its tile size from these: the largest tile whose programs fit `render_budget()`,
a quarter of the device's memory (the host's memory on a CPU) and at most 3 GB, so that an image is
encoded whole whenever it fits that. Why a ceiling: at 3 GB an EDSR-baseline tile is about 1000
input pixels a side, whose halo re-encodes about 14% of its pixels; larger tiles would buy back at
most that share of the encoder's time with memory the rest of the process may want (`--tile 0`
renders whole images whatever they need).
"""

from __future__ import annotations

import os
import pathlib

import jax

RENDER_SHARE = 0.25  # of the device's memory that a render's programs may use at once ...
RENDER_MAX_BYTES = 3 * 10**9  # ... and at most this


def host_memory() -> int:
    """Physical memory of this machine, or the cgroup limit of this process if lower (bytes)."""
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = pathlib.Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def device_memory(device: jax.Device | None = None) -> int:
    """Memory the device's allocator may use (bytes): `memory_stats()['bytes_limit']` on an
    accelerator, the host's memory on a CPU."""
    device = device or jax.devices()[0]
    if device.platform != "cpu" and device not in jax.devices():
        raise ValueError(
            f"{device.device_kind} is a compile-only device: its memory is not known here; give the "
            "render a tile, or its memory (liif_jax.aot.render_programs(memory_bytes=...))"
        )
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    return host_memory()


def render_budget(device: jax.Device | None = None, memory_bytes: int | None = None) -> int:
    """Bytes a render's programs may use at once on `device`, or on a device of `memory_bytes`
    (see the module docstring)."""
    return min(int(RENDER_SHARE * (memory_bytes or device_memory(device))), RENDER_MAX_BYTES)


def program_bytes(compiled: jax.stages.Compiled) -> int:
    """Device memory a compiled program needs while it runs: arguments, outputs (less those
    aliased to arguments) and temporaries, from its `memory_analysis()`."""
    m = compiled.memory_analysis()
    return m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes
