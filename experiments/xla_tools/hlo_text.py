"""The text of an optimized XLA program (`compiled.as_text()`), parsed: its computations, their
instructions (name, opcode, result type, operands, attributes), and the bytes of a type.

Only what `xla_tools.hlo_stats` needs is read: the text format is XLA's, not a stable interface, so
anything this parser cannot place is left in `Instruction.attrs` rather than guessed.
"""

from __future__ import annotations

import dataclasses
import math
import re

DTYPE_BYTES = {
    "pred": 1,
    "s8": 1,
    "u8": 1,
    "f8e4m3fn": 1,
    "f8e5m2": 1,
    "f8e4m3b11fnuz": 1,
    "f8e4m3fnuz": 1,
    "f8e5m2fnuz": 1,
    "s16": 2,
    "u16": 2,
    "f16": 2,
    "bf16": 2,
    "s32": 4,
    "u32": 4,
    "f32": 4,
    "s64": 8,
    "u64": 8,
    "f64": 8,
    "c64": 8,
    "c128": 16,
    "s4": 0.5,
    "u4": 0.5,
    "s2": 0.25,
    "u2": 0.25,
    "token": 0,
}

_ARRAY = re.compile(r"\b([a-z]+[0-9]*[a-z0-9]*)\[([0-9,]*)\](?:\{([^}]*)\})?")
_INSTR = re.compile(r"^\s*(ROOT\s+)?%([^\s=]+)\s*=\s*")
_HEADER = re.compile(r"^(ENTRY\s+)?%([^\s(]+)\s*\(.*\{\s*$")
_NAME = re.compile(r"%([\w.\-]+)")


@dataclasses.dataclass
class Instruction:
    name: str
    opcode: str
    shape: str  # the result type as printed: an array or a tuple
    operands: list[str]
    args: str  # the text between the opcode's parentheses: operands, or a constant's value
    attrs: str  # everything after the operand list
    root: bool = False

    def attr_computations(self, key: str) -> list[str]:
        """Computations an attribute names: calls=%a, body=%b, branch_computations={%a, %b}."""
        m = re.search(rf"\b{key}=(\{{[^}}]*\}}|%[\w.\-]+)", self.attrs)
        return _NAME.findall(m.group(1)) if m else []

    def attr(self, key: str) -> str | None:
        m = re.search(rf"\b{key}=(\{{[^}}]*\}}|\"[^\"]*\"|[^,\s]+)", self.attrs)
        return m.group(1).strip('"') if m else None


@dataclasses.dataclass
class Computation:
    name: str
    instructions: dict[str, Instruction]
    root: str
    entry: bool = False

    def users(self, name: str) -> list[Instruction]:
        return [i for i in self.instructions.values() if name in i.operands]


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


def _balanced(text: str, start: int) -> int:
    """Index just past the bracket group opening at text[start]."""
    pairs = {"(": ")", "{": "}", "[": "]"}
    stack, i, quoted = [], start, False
    while i < len(text):
        ch = text[i]
        if ch == '"' and text[i - 1] != "\\":
            quoted = not quoted
        elif not quoted:
            if ch in pairs:
                stack.append(pairs[ch])
            elif stack and ch == stack[-1]:
                stack.pop()
                if not stack:
                    return i + 1
        i += 1
    raise ValueError(f"unbalanced brackets in HLO line: {text[:120]}")


def parse_instruction(line: str) -> Instruction | None:
    m = _INSTR.match(line)
    if not m:
        return None
    pos = m.end()
    if line[pos] == "(":  # a tuple type
        end = _balanced(line, pos)
    else:
        end = line.index(" ", pos)
    shape = line[pos:end]
    rest = line[end:].lstrip()
    op = re.match(r"([\w\-]+)\(", rest)
    if not op:
        raise ValueError(f"cannot read the opcode of HLO instruction %{m.group(2)}: {rest[:80]}")
    close = _balanced(rest, op.end() - 1)
    args = rest[op.end() : close - 1]
    return Instruction(m.group(2), op.group(1), shape, _NAME.findall(args), args, rest[close:], root=bool(m.group(1)))


def parse(text: str) -> dict[str, Computation]:
    """The computations of an HLO module's text, by name."""
    comps: dict[str, Computation] = {}
    current: Computation | None = None
    for line in text.splitlines():
        if current is None:
            h = _HEADER.match(line)
            if h:
                current = Computation(h.group(2), {}, "", entry=bool(h.group(1)))
            continue
        if line.strip() == "}":
            if not current.root and current.instructions:
                current.root = next(reversed(current.instructions))
            comps[current.name] = current
            current = None
            continue
        instr = parse_instruction(line)
        if instr is not None:
            current.instructions[instr.name] = instr
            if instr.root:
                current.root = instr.name
    if not any(c.entry for c in comps.values()):
        raise ValueError("no ENTRY computation in the HLO text")
    return comps


# ---------------------------------------------------------------------------------------------
# Shapes and bytes
# ---------------------------------------------------------------------------------------------


def arrays(shape: str) -> list[tuple[str, tuple[int, ...], str]]:
    """(dtype, dims, layout) of every array in a (tuple) type."""
    out = []
    for dtype, dims, layout in _ARRAY.findall(shape):
        if dtype in DTYPE_BYTES:
            out.append((dtype, tuple(int(d) for d in dims.split(",") if d), layout or ""))
    return out


def array_bytes(dtype: str, dims: tuple[int, ...], layout: str = "", hbm_only: bool = True) -> float:
    """Bytes of one array in device memory: its tiled size (TPU `T(a,b)` tiles pad the minor
    dimensions), 0 if it lives on chip (memory space `S(n)`, n >= 1) and `hbm_only`."""
    if hbm_only and re.search(r"S\([1-9]\d*\)", layout):
        return 0.0
    dims = list(dims)
    tile = re.search(r":T\((\d+(?:,\d+)*)\)", layout)
    if tile and dims:
        minor_to_major = [int(x) for x in layout.split(":")[0].split(",") if x.strip().isdigit()]
        sizes = [int(x) for x in tile.group(1).split(",")]
        if len(minor_to_major) == len(dims):
            for t, d in zip(reversed(sizes), minor_to_major):  # the tile's last size is the minor-most dim
                dims[d] = -(-dims[d] // t) * t
    return math.prod(dims) * DTYPE_BYTES[dtype]


def shape_bytes(shape: str, hbm_only: bool = True, skip_u8: bool = False) -> float:
    return sum(array_bytes(d, s, lay, hbm_only) for d, s, lay in arrays(shape) if not (skip_u8 and d == "u8"))


def dims(shape: str) -> tuple[int, ...]:
    a = arrays(shape)
    return a[0][1] if a else ()


def param_index(instr: Instruction) -> int:
    """N of `parameter(N)`; -1 for any other instruction."""
    return int(instr.args) if instr.opcode == "parameter" and instr.args.strip().isdigit() else -1


def constant(instr: Instruction | None) -> int | None:
    """The value of an integer scalar constant; None for anything else."""
    if instr is None or instr.opcode != "constant":
        return None
    return int(instr.args) if re.fullmatch(r"-?\d+", instr.args.strip()) else None


def through_views(comp: Computation, name: str) -> Instruction | None:
    """The instruction a value comes from, past copies, bitcasts, converts and reshapes."""
    instr = comp.instructions.get(name)
    while instr is not None and instr.opcode in ("copy", "bitcast", "convert", "reshape") and instr.operands:
        instr = comp.instructions.get(instr.operands[0])
    return instr
