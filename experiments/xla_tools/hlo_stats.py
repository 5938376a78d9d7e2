"""What an optimized XLA program runs, read from its HLO text: kernels, FLOPs, HBM bytes, a time.

`analyze(compiled.as_text())` walks the program from its entry computation: every instruction
that launches work on the device is a kernel (a fusion, a library call such as cuBLAS/cuDNN, a
collective, a copy, a Pallas/Mosaic custom call); control flow is followed, and the kernels of a
while loop count once per iteration (the trip count XLA states in `known_trip_count`, else read
from the loop's counter: a constant start, a constant step, a compare with a constant).

Per kernel:
- FLOPs: 2 x multiply-adds of its matrix products and convolutions (the full window, padding
  included); elementwise arithmetic is not counted, nor anything inside an opaque custom call
  (`Kernel.opaque`).
- bytes: what it reads and writes in device memory (HBM): its operands and results, less what a
  fusion only slices (the slice is read) or updates in place (the update is written), less
  buffers XLA placed on chip (TPU memory space S(1) and up). TPU tiled layouts count their padding.

The text is parsed by `xla_tools.hlo_text`.

`Roofline` turns these into a time: per kernel max(flops / (e x peak), bytes / (e x bandwidth)) +
t_launch, summed over what runs. It is an estimate fitted to measurements
(`experiments/results/archive/42e58ae/aot_fit_h200.md`), good for ranking programs and counting bytes, not a
measurement.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping

from xla_tools.hlo_text import (
    Computation,
    Instruction,
    array_bytes,
    arrays,
    constant,
    dims,
    param_index,
    parse,
    shape_bytes,
    through_views,
)

# No kernel and no memory traffic: views, tuples, values known at compile time, async halves.
FREE = {
    "parameter",
    "constant",
    "get-tuple-element",
    "tuple",
    "bitcast",
    "after-all",
    "add-dependency",
    "opt-barrier",
    "partition-id",
    "replica-id",
}
COLLECTIVES = {
    "all-reduce",
    "all-gather",
    "reduce-scatter",
    "all-to-all",
    "collective-permute",
    "collective-broadcast",
    "ragged-all-to-all",
}
SLICING = {"slice", "dynamic-slice", "gather"}
KINDS = ("fusion", "gemm", "convolution", "collective", "custom-call", "copy", "other")


@dataclasses.dataclass
class Kernel:
    """One kernel of the program, and how often one run of the program launches it."""

    name: str
    kind: str  # one of KINDS
    detail: str  # fusion kind, custom-call target, or opcode
    flops: float  # per launch
    bytes: float  # per launch
    launches: int  # per run of the program (loops' trip counts multiplied)
    flops_class: str | None  # "bf16", "f32" or "f32_highest": which peak its products run at
    opaque: bool = False  # a custom call whose FLOPs cannot be read


@dataclasses.dataclass
class ProgramStats:
    kernels: list[Kernel]
    unknown_trip_counts: list[str]  # while loops whose trip count could not be read (counted once)

    @property
    def launches(self) -> int:
        return sum(k.launches for k in self.kernels)

    @property
    def flops(self) -> float:
        return sum(k.flops * k.launches for k in self.kernels)

    @property
    def bytes(self) -> float:
        return sum(k.bytes * k.launches for k in self.kernels)

    def by_kind(self) -> dict[str, dict[str, float]]:
        """Per kind: distinct kernels, launches per run, FLOPs and bytes per run."""
        out = {k: {"kernels": 0, "launches": 0, "flops": 0.0, "bytes": 0.0} for k in KINDS}
        for k in self.kernels:
            row = out[k.kind]
            row["kernels"] += 1
            row["launches"] += k.launches
            row["flops"] += k.flops * k.launches
            row["bytes"] += k.bytes * k.launches
        return {k: v for k, v in out.items() if v["kernels"]}


# ---------------------------------------------------------------------------------------------
# FLOPs
# ---------------------------------------------------------------------------------------------


def _flops_class(comp: Computation, instr: Instruction) -> str:
    dtypes = {
        arrays(comp.instructions[o].shape)[0][0]
        for o in instr.operands[:2]
        if o in comp.instructions and arrays(comp.instructions[o].shape)
    }
    if dtypes and dtypes <= {"bf16", "f16", "f8e4m3fn", "f8e5m2", "s8", "u8"}:
        return "bf16"
    return "f32_highest" if "highest" in (instr.attr("operand_precision") or "") else "f32"


def _conv_flops(out_dims: tuple[int, ...], kernel_dims: tuple[int, ...], dim_labels: str) -> float:
    """2 x output elements x (kernel window x kernel input features), from `dim_labels`."""
    rhs = dim_labels.split("_")[1].split("->")[0]
    if len(rhs) != len(kernel_dims):
        return 0.0
    per_output = math.prod(n for label, n in zip(rhs, kernel_dims) if label != "o")
    return 2.0 * math.prod(out_dims) * per_output


def _dot_flops(comp: Computation, instr: Instruction) -> float:
    lhs = comp.instructions.get(instr.operands[0])
    contracting = instr.attr("lhs_contracting_dims") or "{}"
    axes = [int(x) for x in re.findall(r"\d+", contracting)]
    if lhs is None:
        return 0.0
    lhs_dims = dims(lhs.shape)
    return 2.0 * math.prod(dims(instr.shape)) * math.prod(lhs_dims[a] for a in axes)


def _instr_flops(comp: Computation, instr: Instruction) -> tuple[float, str | None]:
    if instr.opcode == "dot":
        return _dot_flops(comp, instr), _flops_class(comp, instr)
    if instr.opcode == "convolution":
        kernel = comp.instructions.get(instr.operands[1])
        if kernel is None:
            return 0.0, None
        return _conv_flops(dims(instr.shape), dims(kernel.shape), instr.attr("dim_labels") or ""), _flops_class(
            comp, instr
        )
    return 0.0, None


def _cudnn_flops(comp: Computation, instr: Instruction) -> tuple[float, str | None]:
    """cuDNN convolutions keep the forward convolution's window and dim_labels; which operand is
    the forward output and which the kernel depends on the direction."""
    target = instr.attr("custom_call_target") or ""
    shapes = [comp.instructions[o].shape for o in instr.operands if o in comp.instructions]
    result = arrays(instr.shape)[0][1]
    if "BackwardFilter" in target:
        out, kernel = dims(shapes[1]), result
    elif "BackwardInput" in target:
        out, kernel = dims(shapes[0]), dims(shapes[1])
    else:
        out, kernel = result, dims(shapes[1])
    return _conv_flops(out, kernel, instr.attr("dim_labels") or ""), _flops_class(comp, instr)


def _cublas_flops(comp: Computation, instr: Instruction) -> tuple[float, str | None]:
    m = re.search(r'"lhs_contracting_dimensions":\[([^\]]*)\]', instr.attrs)
    lhs = comp.instructions.get(instr.operands[0])
    if not m or lhs is None:
        return 0.0, None
    axes = [int(x) for x in re.findall(r"\d+", m.group(1))]
    lhs_dims = dims(lhs.shape)
    out = arrays(instr.shape)[0][1]
    return 2.0 * math.prod(out) * math.prod(lhs_dims[a] for a in axes), _flops_class(comp, instr)


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------


class _Walker:
    def __init__(self, comps: dict[str, Computation]):
        self.comps = comps
        self.kernels: list[Kernel] = []
        self.unknown: list[str] = []

    # -- what a fused computation does ------------------------------------------------------

    def _fused_flops(self, comp_name: str) -> tuple[float, str | None, bool, bool]:
        """(flops, class, has a matrix product, has a spatial convolution) of a fused computation
        and the computations it calls."""
        flops, cls, matmul, conv = 0.0, None, False, False
        for instr in self.comps[comp_name].instructions.values():
            f, c = _instr_flops(self.comps[comp_name], instr)
            flops, cls = flops + f, c or cls
            spatial = instr.opcode == "convolution" and _conv_labels_spatial(instr)
            matmul |= instr.opcode == "dot" or (instr.opcode == "convolution" and not spatial)
            conv |= spatial
            for callee in instr.attr_computations("calls"):
                f2, c2, m2, v2 = self._fused_flops(callee)
                flops, cls, matmul, conv = flops + f2, c2 or cls, matmul or m2, conv or v2
        return flops, cls, matmul, conv

    def _read_bytes(self, fused: Computation, index: int, full: float) -> float:
        """Bytes a fusion reads of its operand `index`: all of it, or only the slices taken."""
        param = next(
            (i for i in fused.instructions.values() if i.opcode == "parameter" and param_index(i) == index), None
        )
        if param is None:
            return full
        frontier, sliced = [param], 0.0
        while frontier:
            node = frontier.pop()
            for user in fused.users(node.name):
                if user.opcode == "bitcast":
                    frontier.append(user)
                elif user.opcode in SLICING and user.operands[0] == node.name:
                    sliced += shape_bytes(user.shape, hbm_only=False)
                elif user.opcode == "dynamic-update-slice" and user.operands[0] == node.name:
                    continue  # updated in place: the buffer is not read
                else:
                    return full
        return min(full, sliced)

    def _written_bytes(self, fused: Computation, out_bytes: float) -> float:
        """Bytes a fusion writes: its results, or the updates of those it updates in place."""
        root = fused.instructions[fused.root]
        parts = [fused.instructions[o] for o in root.operands] if root.opcode == "tuple" else [root]
        written = 0.0
        for p in parts:
            while p.opcode == "bitcast" and p.operands[0] in fused.instructions:
                p = fused.instructions[p.operands[0]]
            if p.opcode == "dynamic-update-slice":
                written += shape_bytes(fused.instructions[p.operands[1]].shape, hbm_only=False)
            else:
                written += shape_bytes(p.shape, hbm_only=False)
        return min(out_bytes, written) if written else out_bytes

    # -- one kernel -------------------------------------------------------------------------

    def _operand_bytes(self, comp: Computation, instr: Instruction) -> list[float]:
        return [shape_bytes(comp.instructions[o].shape) if o in comp.instructions else 0.0 for o in instr.operands]

    def kernel(self, comp: Computation, instr: Instruction, launches: int) -> None:
        op = instr.opcode
        operand_bytes = self._operand_bytes(comp, instr)
        out_bytes = shape_bytes(instr.shape, skip_u8=op == "custom-call")
        flops, cls, opaque = 0.0, None, False
        if op == "fusion":
            fused = self.comps[instr.attr_computations("calls")[0]]
            flops, cls, matmul, conv = self._fused_flops(fused.name)
            backend = re.search(r'"kind":"(__[\w$]+)"', instr.attrs)
            detail = backend.group(1) if backend else (instr.attr("kind") or "fusion")
            kind = "convolution" if conv else "gemm" if matmul else "fusion"
            read = sum(self._read_bytes(fused, i, b) for i, b in enumerate(operand_bytes))
            written = self._written_bytes(fused, out_bytes) if out_bytes else 0.0
            total = read + written
        elif op == "custom-call":
            detail = instr.attr("custom_call_target") or "custom-call"
            if detail.startswith("__cudnn$conv"):
                kind = "convolution"
                flops, cls = _cudnn_flops(comp, instr)
            elif detail.startswith("__cublas"):
                kind = "gemm"
                flops, cls = _cublas_flops(comp, instr)
            else:
                kind, opaque = "custom-call", True
            total = sum(operand_bytes) + out_bytes
        elif op in ("dot", "convolution"):
            kind, detail = ("gemm" if op == "dot" or not _conv_labels_spatial(instr) else "convolution"), op
            flops, cls = _instr_flops(comp, instr)
            total = sum(operand_bytes) + out_bytes
        elif op.removesuffix("-start") in COLLECTIVES:
            kind, detail = "collective", op.removesuffix("-start")
            total = sum(operand_bytes) + out_bytes
        elif op in ("copy", "copy-start"):
            kind, detail = "copy", op
            out = arrays(instr.shape)[:1] if op == "copy-start" else arrays(instr.shape)
            total = sum(operand_bytes) + sum(array_bytes(*a) for a in out)
        else:
            kind, detail = "other", op
            total = sum(operand_bytes) + out_bytes
        self.kernels.append(Kernel(instr.name, kind, detail, flops, total, launches, cls, opaque))

    # -- control flow -----------------------------------------------------------------------

    def trip_count(self, comp: Computation, instr: Instruction) -> int | None:
        m = re.search(r'"known_trip_count":\{"n":"(\d+)"\}', instr.attrs)
        if m:
            return int(m.group(1))
        return _counted_loop_trips(self.comps, comp, instr)

    def walk(self, comp_name: str, launches: int) -> None:
        comp = self.comps[comp_name]
        for instr in comp.instructions.values():
            op = instr.opcode
            if op in FREE or op.endswith("-done") or op == "async-update":
                continue
            if op == "while":
                n = self.trip_count(comp, instr)
                if n is None:
                    self.unknown.append(instr.name)
                    n = 1
                self.walk(instr.attr_computations("condition")[0], launches * (n + 1))
                self.walk(instr.attr_computations("body")[0], launches * n)
            elif op == "conditional":
                self._walk_costliest(
                    instr.attr_computations("branch_computations")
                    or instr.attr_computations("true_computation") + instr.attr_computations("false_computation"),
                    launches,
                )
            elif op in ("call", "async-start"):
                for callee in instr.attr_computations("to_apply") + instr.attr_computations("calls"):
                    self.walk(callee, launches)
            else:
                self.kernel(comp, instr, launches)

    def _walk_costliest(self, branches: list[str], launches: int) -> None:
        """A conditional: the branch that moves the most bytes (the one that runs is not known)."""
        best = None
        for b in branches:
            sub = _Walker(self.comps)
            sub.walk(b, launches)
            if best is None or sum(k.bytes * k.launches for k in sub.kernels) > sum(
                k.bytes * k.launches for k in best.kernels
            ):
                best = sub
        if best is not None:
            self.kernels += best.kernels
            self.unknown += best.unknown


def _conv_labels_spatial(instr: Instruction) -> bool:
    """A convolution with a spatial window (not a matrix product written as one: `bf_io->bf`)."""
    labels = instr.attr("dim_labels") or ""
    return any(ch.isdigit() for ch in labels)


def _fused_root(comps: dict[str, Computation], instr: Instruction | None) -> Instruction | None:
    """The instruction itself, or the root of the fusion it is (a compare or add fused with its constant)."""
    if instr is not None and instr.opcode == "fusion":
        fused = comps[instr.attr_computations("calls")[0]]
        return fused.instructions[fused.root]
    return instr


def _counted_loop_trips(comps: dict[str, Computation], comp: Computation, loop: Instruction) -> int | None:
    """Trip count of `while i < N: i += s` with constant start, step and bound, read from the
    condition (compare of tuple element k with a constant), the body (element k plus a constant)
    and the initial tuple (element k a constant)."""
    cond = comps[loop.attr_computations("condition")[0]]
    body = comps[loop.attr_computations("body")[0]]
    root = cond.instructions[cond.root]
    compare = _fused_root(comps, root)
    where = comps[root.attr_computations("calls")[0]] if root.opcode == "fusion" else cond
    if compare is None or compare.opcode != "compare":
        return None
    direction = compare.attr("direction")
    a, b = (where.instructions.get(o) for o in compare.operands)
    bound = constant(through_views(where, b.name)) if b is not None else None
    if bound is None:
        return None
    # which tuple element is the counter: follow the non-constant side to a get-tuple-element
    side = through_views(where, a.name) if a is not None else None
    if side is not None and side.opcode == "parameter" and root.opcode == "fusion":
        side = through_views(cond, root.operands[param_index(side)])
    if side is None or side.opcode != "get-tuple-element":
        return None
    k = int(side.attr("index"))
    init_tuple = comp.instructions.get(loop.operands[0])
    if init_tuple is None or init_tuple.opcode != "tuple":
        return None
    start = constant(through_views(comp, init_tuple.operands[k]))
    body_root = body.instructions[body.root]
    if start is None or body_root.opcode != "tuple":
        return None
    nxt = body.instructions.get(body_root.operands[k])
    add = _fused_root(comps, nxt)
    scope = comps[nxt.attr_computations("calls")[0]] if nxt is not None and nxt.opcode == "fusion" else body
    if add is None or add.opcode != "add":
        return None
    step = next((c for c in (constant(through_views(scope, o)) for o in add.operands) if c is not None), None)
    if not step:
        return None
    span = {"LT": bound - start, "LE": bound - start + 1, "NE": bound - start}.get(direction)
    if span is None or step < 0:
        return None
    return max(0, -(-span // step))


def analyze(hlo_text: str) -> ProgramStats:
    """The kernels one run of an optimized HLO module launches (`compiled.as_text()`)."""
    comps = parse(hlo_text)
    walker = _Walker(comps)
    walker.walk(next(c.name for c in comps.values() if c.entry), 1)
    return ProgramStats(walker.kernels, walker.unknown)


# ---------------------------------------------------------------------------------------------
# Time
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Roofline:
    """t = sum over kernel launches of max(flops / (e x peak), bytes / (e x bandwidth)) + t_launch."""

    efficiency: float
    launch_s: float

    def kernel_seconds(self, k: Kernel, peak_flops: Mapping[str, float], bandwidth: float) -> float:
        compute = k.flops / (self.efficiency * peak_flops[k.flops_class]) if k.flops else 0.0
        return max(compute, k.bytes / (self.efficiency * bandwidth)) + self.launch_s

    def seconds(self, stats: ProgramStats, peak_flops: Mapping[str, float], bandwidth: float) -> float:
        return sum(k.launches * self.kernel_seconds(k, peak_flops, bandwidth) for k in stats.kernels)


def top_kernels(
    stats: ProgramStats, roofline: Roofline, peak_flops: Mapping[str, float], bandwidth: float, n: int = 10
) -> list[dict]:
    """The n kernels that take the most estimated time per run, as rows for a table."""
    rows = [
        {
            "name": k.name,
            "kind": k.kind,
            "detail": k.detail,
            "launches": k.launches,
            "flops": k.flops * k.launches,
            "bytes": k.bytes * k.launches,
            "est_s": k.launches * roofline.kernel_seconds(k, peak_flops, bandwidth),
        }
        for k in stats.kernels
    ]
    return sorted(rows, key=lambda r: -r["est_s"])[:n]


def to_json(stats: ProgramStats) -> dict:
    return {
        "launches": stats.launches,
        "flops": stats.flops,
        "bytes": stats.bytes,
        "by_kind": stats.by_kind(),
        "unknown_trip_counts": stats.unknown_trip_counts,
    }
