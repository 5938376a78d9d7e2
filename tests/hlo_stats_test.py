"""Reading optimized HLO: kernels, FLOPs, HBM bytes and loop trip counts of programs checked by hand."""

import jax
import jax.numpy as jnp
import pytest

from xla_tools import hlo_stats, hlo_text

S = jax.ShapeDtypeStruct

# A matrix product in a counted loop: i = 2, 5, 8, 11 (4 trips), no trip count stated.
LOOP = """
HloModule loop

%body (p: (s32[], f32[64,128], f32[128,128])) -> (s32[], f32[64,128], f32[128,128]) {
  %p = (s32[], f32[64,128]{1,0}, f32[128,128]{1,0}) parameter(0)
  %i = s32[] get-tuple-element(%p), index=0
  %step = s32[] constant(3)
  %next = s32[] add(%i, %step)
  %x = f32[64,128]{1,0} get-tuple-element(%p), index=1
  %w = f32[128,128]{1,0} get-tuple-element(%p), index=2
  %y = f32[64,128]{1,0} dot(%x, %w), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  ROOT %t = (s32[], f32[64,128]{1,0}, f32[128,128]{1,0}) tuple(%next, %y, %w)
}

%cond (q: (s32[], f32[64,128], f32[128,128])) -> pred[] {
  %q = (s32[], f32[64,128]{1,0}, f32[128,128]{1,0}) parameter(0)
  %j = s32[] get-tuple-element(%q), index=0
  %n = s32[] constant(12)
  ROOT %lt = pred[] compare(%j, %n), direction=LT
}

ENTRY %main (a: f32[64,128], b: f32[128,128]) -> f32[64,128] {
  %a = f32[64,128]{1,0} parameter(0)
  %b = f32[128,128]{1,0} parameter(1)
  %start = s32[] constant(2)
  %init = (s32[], f32[64,128]{1,0}, f32[128,128]{1,0}) tuple(%start, %a, %b)
  %loop = (s32[], f32[64,128]{1,0}, f32[128,128]{1,0}) while(%init), condition=%cond, body=%body
  ROOT %out = f32[64,128]{1,0} get-tuple-element(%loop), index=1
}
"""

# A fusion reading 10 rows of a 1000-row operand, and one writing 10 rows into it in place.
SLICES = """
HloModule slices

%read (p0: f32[1000,256], p1: s32[]) -> f32[10,256] {
  %p0 = f32[1000,256]{1,0} parameter(0)
  %p1 = s32[] parameter(1)
  %z = s32[] constant(0)
  %ds = f32[10,256]{1,0} dynamic-slice(%p0, %p1, %z), dynamic_slice_sizes={10,256}
  ROOT %e = f32[10,256]{1,0} exponential(%ds)
}

%write (p0: f32[1000,256], p1: f32[10,256], p2: s32[]) -> f32[1000,256] {
  %p0 = f32[1000,256]{1,0} parameter(0)
  %p1 = f32[10,256]{1,0} parameter(1)
  %p2 = s32[] parameter(2)
  %z = s32[] constant(0)
  ROOT %dus = f32[1000,256]{1,0} dynamic-update-slice(%p0, %p1, %p2, %z)
}

ENTRY %main (x: f32[1000,256], i: s32[]) -> f32[1000,256] {
  %x = f32[1000,256]{1,0} parameter(0)
  %i = s32[] parameter(1)
  %rows = f32[10,256]{1,0} fusion(%x, %i), kind=kLoop, calls=%read
  ROOT %updated = f32[1000,256]{1,0} fusion(%x, %rows, %i), kind=kLoop, calls=%write
}
"""

DOT_FLOPS = 2 * 64 * 128 * 128  # 64 x 128 outputs, 128 multiply-adds each
DOT_BYTES = 4 * (64 * 128 + 128 * 128 + 64 * 128)  # both operands read, the result written


def kernel(stats: hlo_stats.ProgramStats, name: str) -> hlo_stats.Kernel:
    return next(k for k in stats.kernels if k.name == name)


def test_a_counted_loop_runs_its_kernels_once_per_trip():
    stats = hlo_stats.analyze(LOOP)
    dot = kernel(stats, "y")
    assert (dot.kind, dot.flops, dot.bytes, dot.launches) == ("gemm", DOT_FLOPS, DOT_BYTES, 4)
    assert kernel(stats, "lt").launches == 5  # the condition runs once more than the body
    assert stats.flops == 4 * DOT_FLOPS
    assert stats.unknown_trip_counts == []


def test_a_stated_trip_count_wins_and_an_unreadable_loop_is_reported():
    stated = LOOP.replace(
        "condition=%cond, body=%body", 'condition=%cond, body=%body, backend_config={"known_trip_count":{"n":"9"}}'
    )
    assert kernel(hlo_stats.analyze(stated), "y").launches == 9
    unreadable = LOOP.replace("%n = s32[] constant(12)", "%n = s32[] get-tuple-element(%q), index=0")
    stats = hlo_stats.analyze(unreadable)
    assert stats.unknown_trip_counts == ["loop"] and kernel(stats, "y").launches == 1


def test_fusions_count_the_slices_they_read_and_the_rows_they_update():
    stats = hlo_stats.analyze(SLICES)
    rows = 10 * 256 * 4
    assert kernel(stats, "rows").bytes == rows + 4 + rows  # slice read, index, result
    assert kernel(stats, "updated").bytes == rows + 4 + rows  # update read, index, in-place write
    assert stats.by_kind()["fusion"] == {"kernels": 2, "launches": 2, "flops": 0.0, "bytes": 2 * (2 * rows + 4)}


def test_tpu_layouts_pad_to_tiles_and_on_chip_buffers_cost_no_hbm_bytes():
    assert hlo_text.shape_bytes("f32[2,3]{1,0:T(8,128)}") == 8 * 128 * 4
    assert hlo_text.shape_bytes("f32[16,256]{1,0:T(8,128)}") == 16 * 256 * 4
    assert hlo_text.shape_bytes("f32[16,256]{1,0:T(8,128)S(1)}") == 0
    assert hlo_text.shape_bytes("(f32[4]{0}, bf16[2,2]{1,0})") == 16 + 8


def test_a_compiled_matmul_loop_and_convolution():
    """A real compiled program (XLA:CPU): FLOPs of a product repeated by a fori_loop, and of a
    3x3 convolution, as counted by hand."""

    def f(a, b, x, w):
        y = jax.lax.fori_loop(0, 7, lambda i, c: jnp.tanh(c @ b), a)
        return y, jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    args = (
        S((64, 128), jnp.float32),
        S((128, 128), jnp.float32),
        S((2, 32, 32, 8), jnp.float32),
        S((3, 3, 8, 16), jnp.float32),
    )
    stats = hlo_stats.analyze(jax.jit(f).lower(*args).compile().as_text())
    conv_flops = 2 * (2 * 32 * 32 * 16) * (3 * 3 * 8)
    assert stats.flops == 7 * DOT_FLOPS + conv_flops
    assert stats.by_kind()["convolution"]["flops"] == conv_flops
    assert stats.unknown_trip_counts == []


def test_roofline_takes_the_slower_of_compute_and_memory_plus_a_launch():
    compute_bound = hlo_stats.Kernel("k", "gemm", "dot", flops=2e12, bytes=1e9, launches=3, flops_class="bf16")
    stats = hlo_stats.ProgramStats([compute_bound], [])
    roof = hlo_stats.Roofline(efficiency=0.5, launch_s=1e-6)
    # 2e12 FLOP at 0.5 x 1e15 FLOP/s = 4 ms (the 1 GB at 0.5 x 1e12 B/s would take 2 ms)
    assert roof.seconds(stats, {"bf16": 1e15}, 1e12) == pytest.approx(3 * (4e-3 + 1e-6))
    memory_bound = hlo_stats.Kernel("m", "fusion", "kLoop", flops=0.0, bytes=1e9, launches=1, flops_class=None)
    assert roof.seconds(hlo_stats.ProgramStats([memory_bound], []), {}, 1e12) == pytest.approx(2e-3 + 1e-6)


def test_text_that_is_not_a_module_is_refused():
    with pytest.raises(ValueError, match="ENTRY"):
        hlo_stats.analyze("HloModule empty\n")
