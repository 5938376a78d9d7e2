"""Estimates from a deviceless compile: the optimized HLO's kernels, FLOPs and bytes
(`hlo_stats`) and a roofline time. Analysis tooling for experiments/, not part of liif_jax."""

from __future__ import annotations

import dataclasses
import math
import re
import time
from typing import Any

import jax

from liif_jax import aot
from liif_jax.kernels import fused_query
from liif_jax.models import Model, liif
from xla_tools import hlo_stats


def fused_kernel_flops(model: Model, out_hw: tuple[int, int], batch: int = 1) -> float:
    """FLOPs of the fused query kernel (`liif_jax.kernels.fused_query`) in one render: a Pallas kernel is
    opaque to `hlo_stats`, so `read` takes them from here (`opaque_flops`)."""
    n = len(liif.neighbour_signs(model.local_ensemble))
    return (
        batch
        * out_hw[0]
        * out_hw[1]
        * fused_query.flops(model.imnet.hidden_list, model.imnet.out_dim, 4 if model.cell_decode else 2, n)
    )


# Inferred, not measured: Hopper's L2 bandwidth (H100 and H200 share the chip), for the fused
# kernel's weight and scratch re-reads; the registers a thread has and the warps an SM holds.
L2_BANDWIDTH = 5.5e12
REGISTERS_PER_SM, MAX_WARPS_PER_SM = 65536, 64
# ptxas on sm_90a (experiments/results/ptxas_fused_query.md): the kernel at 64 rows x 4 warps, TF32, no spills.
KERNEL_REGISTERS = 96
# Renders came out 10-49% below their measured times when the roofline was fitted: measured <= est / 0.51.
RENDER_UNDERESTIMATE = 0.51


def fused_kernel_l2_bytes(
    model: Model,
    out_hw: tuple[int, int],
    block_rows: int = fused_query.BLOCK_ROWS,
    weight_bytes_per_value: int = 4,
    activation_bytes_per_value: int = 4,
) -> float:
    """L2 bytes of the fused kernel in one render that the HLO's HBM bytes miss: every block reads
    every weight, writes each hidden layer's activations but the last to its scratch, and reads them
    back once per column chunk of the next layer."""
    n = len(liif.neighbour_signs(model.local_ensemble))
    blocks = math.ceil(out_hw[0] * out_hw[1] * n / block_rows)
    hidden = list(model.imnet.hidden_list)
    widths = [*hidden, model.imnet.out_dim]
    weights = (4 if model.cell_decode else 2) * widths[0] + sum(a * b + b for a, b in zip(widths, widths[1:]))
    chunk = fused_query._chunk(hidden)
    scratch = block_rows * sum(a * (1 + b // chunk) for a, b in zip(hidden, hidden[1:]))
    return blocks * (weights * weight_bytes_per_value + scratch * activation_bytes_per_value)


def occupancy(registers: int = KERNEL_REGISTERS, num_warps: int = fused_query.NUM_WARPS) -> float:
    """Active warps per SM over the most it holds, as registers per thread allow."""
    blocks = REGISTERS_PER_SM // (registers * 32 * num_warps)
    return min(blocks * num_warps, MAX_WARPS_PER_SM) / MAX_WARPS_PER_SM


def render_range(est_s: float, model: Model, out_hw: tuple[int, int], decoder: str) -> tuple[float, float]:
    """An estimated render time as the range it is (seconds): the roofline at the low end; at the
    high end the roofline's largest miss on renders and, for the fused kernel, its L2 traffic
    (`fused_kernel_l2_bytes`) at `L2_BANDWIDTH` slowed by low occupancy (below a quarter of the warps,
    latency is not hidden)."""
    high = est_s / RENDER_UNDERESTIMATE
    if decoder == "pallas":
        high += fused_kernel_l2_bytes(model, out_hw) / L2_BANDWIDTH * max(1.0, 0.25 / occupancy())
    return est_s, high


def ms_range(low_s: float, high_s: float) -> str:
    return f"{1e3 * low_s:.1f}-{1e3 * high_s:.1f}"


# Fitted to measured H200 training steps (experiments/aot_fit.py; results/archive/42e58ae/aot_fit_h200.md says which).
H200_FIT = hlo_stats.Roofline(efficiency=0.402, launch_s=1.16e-6)
ESTIMATE_NOTE = (
    "estimated, not measured (a roofline fitted to measured H200 training steps): it ranks training "
    "steps and counts bytes; it does not predict render times (renders came out 10-49% below their "
    "measured times when it was fitted)"
)


@dataclasses.dataclass
class ProgramReport:
    """What a program would use and do on a target, read from its deviceless compile."""

    target: str
    compile_s: float  # wall-clock
    compile_cpu_s: float  # CPU time of this process (all threads) while compiling
    memory: dict[str, int] | None  # memory_analysis() fields, bytes (None: the compiler refused it)
    fits: bool
    error: str | None
    stats: hlo_stats.ProgramStats | None
    est_s: float | None

    @property
    def total_bytes(self) -> int | None:
        return None if self.memory is None else aot.total_bytes(self.memory)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "compile_s": self.compile_s,
            "compile_cpu_s": self.compile_cpu_s,
            "memory": self.memory,
            "total_bytes": self.total_bytes,
            "fits": self.fits,
            "error": self.error,
            "est_s": self.est_s,
            "hlo": None if self.stats is None else hlo_stats.to_json(self.stats),
        }


def read(
    lowered: jax.stages.Lowered,
    name: str | aot.Target,
    roofline: hlo_stats.Roofline = H200_FIT,
    opaque_flops: float = 0.0,
    opaque_class: str = "f32",
) -> ProgramReport:
    """Compiles a lowered program for its target and reads it. A program the compiler refuses for
    lack of memory is reported as not fitting (with the compiler's message), not raised.
    `opaque_flops`: FLOPs per run of the program's opaque kernels (custom calls whose work the HLO
    does not show, e.g. `fused_kernel_flops`), at the `opaque_class` peak, spread over their launches."""
    t = aot.target(name)
    start, cpu = time.perf_counter(), time.process_time()
    try:
        compiled = lowered.compile()
    except jax.errors.JaxRuntimeError as err:
        if "RESOURCE_EXHAUSTED" not in str(err):
            raise
        return ProgramReport(
            t.name,
            time.perf_counter() - start,
            time.process_time() - cpu,
            None,
            False,
            _first_line(str(err)),
            None,
            None,
        )
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    mem = aot.memory(compiled)
    stats = hlo_stats.analyze(compiled.as_text())
    opaque = [k for k in stats.kernels if k.opaque]
    for k in opaque:
        k.flops, k.flops_class = opaque_flops / sum(o.launches for o in opaque), opaque_class
    if opaque_flops and not opaque:
        raise ValueError("opaque_flops given for a program without opaque kernels")
    report = ProgramReport(
        t.name, seconds, cpu, mem, True, None, stats, roofline.seconds(stats, t.peak_flops, t.hbm_bandwidth)
    )
    report.fits = report.total_bytes <= t.memory_bytes
    return report


def _first_line(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().splitlines()[0])[:300]
