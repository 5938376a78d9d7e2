"""A fused Pallas kernel for the query side of an implicit image function: gather, MLP, ensemble.

    out[:, q] = sum_k weights[k, q] * MLP(table[index[k, q]] + b0 + terms[k, :, q] @ w_terms)

for n neighbours k (LIIF's local ensemble: 4), where MLP is ReLU, then (dense, ReLU) per hidden
layer, then a last dense layer. This is LIIF's decoder after `latent_grid` (the table is the latent
grid's rows; the terms are the relative coordinate and cell), and any model whose per-query work is
"gather rows, add per-query terms times a small matrix, run an MLP, weight the results" can use it.

For a block of queries the kernel gathers the rows, runs every layer and the weighted sum, and
writes only the outputs; between layers the activations of a block stay in a small scratch buffer
of its program (an extra output, read back from L2), not in one tensor per layer for every query.
On an NVIDIA GPU it is a Triton kernel; on a CPU the same kernel runs in Pallas interpret mode
(slow: for tests); elsewhere (TPU) the same sums run as XLA operations (`reference`): Mosaic cannot
gather rows by a vector of indices.

Triton needs power-of-two blocks whose weights fit in shared memory, and Pallas' Triton backend
has no shared-memory scratch; so the kernel
- stacks the n neighbours of `block_rows // n` queries as one block of rows, each weight tile being
  read once per block (a loop over neighbours would keep every tile of a layer in shared memory);
- runs each layer as loops (not unrolled) over output column chunks of `chunk` (32 or 16)
  channels and, inside, over input chunks: chunk x chunk weight tiles times the previous layer's
  activations read back from the scratch. Only one accumulator chunk and two operand tiles are live,
  so ptxas spills no registers (experiments/results/ptxas_fused_query.md); unrolled chunks with the
  activations held as values spilled in every block shape tried;
- keeps two slots of scratch per program (the layer read, the layer written), with a barrier
  between layers, and runs at most `PROGRAMS` programs, each looping over blocks, so the scratch
  is bounded whatever the number of queries;
- computes the last layer (few outputs) as reductions and writes the output transposed, (out, Q),
  so that no store needs a power-of-two number of channels.
Hidden widths must be multiples of 16 (`supports`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

Layer = tuple[jax.Array, jax.Array]  # (kernel (in, out), bias (out,))

BLOCK_ROWS = 64  # neighbour rows per program: 16 queries of a 4-neighbour ensemble
NUM_WARPS = 4
PROGRAMS = 512  # programs at most (about 4 per SM of an H100), each looping over blocks: 2 scratch blocks each
_CHUNKS = (32, 16)  # 64: 3xTF32 ("highest") spills on sm_80 and sm_89


def supports(widths: Sequence[int], n_neighbours: int) -> bool:
    """Whether the kernel runs an MLP whose table and hidden layers have these widths."""
    return all(w % _CHUNKS[-1] == 0 for w in widths) and n_neighbours in (1, 2, 4)


def flops(widths: Sequence[int], out_dim: int, n_terms: int, n_neighbours: int) -> int:
    """Multiply-add FLOPs (2 per multiply-add) of one query: per neighbour, the terms' product,
    the hidden layers (`widths`: the table's, then each hidden layer's) and the last layer."""
    per_row = 2 * n_terms * widths[0] + sum(2 * a * b for a, b in zip(widths, widths[1:])) + 2 * widths[-1] * out_dim
    return n_neighbours * per_row


def _chunk(widths: Sequence[int]) -> int:
    return next(c for c in _CHUNKS if all(w % c == 0 for w in widths))


def _cols(j, chunk: int) -> pl.Slice:
    """Columns [j * chunk, (j + 1) * chunk) for a loop index j."""
    return pl.ds(pl.multiple_of(j * chunk, chunk), chunk)


def _kernel(
    n_ref,
    index_ref,
    terms_ref,
    weights_ref,
    table_ref,
    w_terms_ref,
    b0_ref,
    *refs,
    queries: int,
    chunk: int,
    widths: tuple[int, ...],
    n_terms: int,
    out_dim: int,
    dot,
    barrier,
):
    layer_refs, (out_ref, act_ref) = refs[:-2], refs[-2:]
    n_nb, n_blocks = index_ref.shape[0], index_ref.shape[1] // queries
    rows, program, programs = n_nb * queries, pl.program_id(0), pl.num_programs(0)

    def first(o, q_cols):  # the gathered rows plus the per-query terms
        cols = _cols(o, chunk)
        p = table_ref[index_ref[:, q_cols].reshape(rows), cols] + b0_ref[cols][None, :]
        for e in range(n_terms):
            p = p + terms_ref[:, e, q_cols].reshape(rows)[:, None] * w_terms_ref[e, cols][None, :]
        return jnp.maximum(p, 0)

    def hidden(i: int):
        w_ref, b_ref = layer_refs[2 * i], layer_refs[2 * i + 1]

        def columns(o, q_cols):  # the previous layer's activations from the scratch, K chunk by K chunk
            cols = _cols(o, chunk)
            step = lambda j, s: s + dot(act_ref[0, i % 2, :, _cols(j, chunk)], w_ref[_cols(j, chunk), cols])
            s = jnp.broadcast_to(b_ref[cols][None, :], (rows, chunk))
            return jnp.maximum(jax.lax.fori_loop(0, widths[i] // chunk, step, s), 0)

        return columns

    producers = [first] + [hidden(i) for i in range(len(widths) - 1)]
    w_ref, b_ref = layer_refs[-2], layer_refs[-1]  # last layer, (out, in): one reduction per output

    def store(i: int, q_cols):
        """Layer i's activations to the scratch, whose other slot holds layer i - 1's."""

        @pl.loop(0, widths[i] // chunk)
        def _(o):
            act_ref[0, i % 2, :, _cols(o, chunk)] = producers[i](o, q_cols).astype(act_ref.dtype)

        barrier()  # written before any thread reads them, read before the next layer overwrites them

    @pl.loop(0, pl.cdiv(n_blocks, programs))
    def _(t):
        block = t * programs + program

        @pl.when(block * queries < n_ref[0])  # blocks past the valid queries do nothing
        def _():
            q_cols = pl.ds(pl.multiple_of(block * queries, queries), queries)
            for i in range(len(producers) - 1):
                store(i, q_cols)

            def last(o, sums):
                h, cols = producers[-1](o, q_cols), _cols(o, chunk)
                return tuple(s + jnp.sum(h * w_ref[k, cols][None, :], axis=1) for k, s in enumerate(sums))

            sums = tuple(jnp.full((rows,), b_ref[k], jnp.float32) for k in range(out_dim))
            sums = jax.lax.fori_loop(0, widths[-1] // chunk, last, sums)
            weights = weights_ref[:, q_cols].reshape(rows)
            for k, s in enumerate(sums):
                out_ref[k, q_cols] = jnp.sum((s * weights).reshape(n_nb, queries), axis=0)
            barrier()  # the last layer's reads done before the next block's first layer writes


def _dot(compute_dtype, precision):
    def dot(a, b):
        return jnp.dot(a.astype(compute_dtype), b, preferred_element_type=jnp.float32, precision=precision)

    return dot


def _pallas(
    n_valid,
    index,
    terms,
    weights,
    table,
    w_terms,
    b0,
    layers,
    *,
    compute_dtype,
    precision,
    interpret,
    block_rows: int,
    num_warps: int,
    triton: bool = True,
):
    n_nb, q = index.shape
    queries = block_rows // n_nb
    widths = (table.shape[1], *(w.shape[1] for w, _ in layers[:-1]))
    out_dim = layers[-1][0].shape[1]
    flat = [a for w, b in layers[:-1] for a in (w.astype(compute_dtype), b)] + [layers[-1][0].T, layers[-1][1]]
    whole = lambda a: pl.BlockSpec(a.shape, lambda i: (0,) * a.ndim)
    kernel = functools.partial(
        _kernel,
        queries=queries,
        chunk=_chunk(widths),
        widths=widths,
        n_terms=terms.shape[1],
        out_dim=out_dim,
        dot=_dot(compute_dtype, precision),
        barrier=plgpu.debug_barrier if triton and not interpret else lambda: None,
    )
    programs = min(PROGRAMS, q // queries)
    act_width = max(widths[:-1], default=_CHUNKS[-1])
    out, _ = pl.pallas_call(
        kernel,
        out_shape=(
            jax.ShapeDtypeStruct((out_dim, q), jnp.float32),
            jax.ShapeDtypeStruct((programs, 2, block_rows, act_width), compute_dtype),
        ),
        grid=(programs,),
        in_specs=[whole(a) for a in (n_valid, index, terms, weights, table, w_terms, b0, *flat)],
        out_specs=(
            whole(jax.ShapeDtypeStruct((out_dim, q), jnp.float32)),
            pl.BlockSpec((1, 2, block_rows, act_width), lambda i: (i, 0, 0, 0)),
        ),
        interpret=interpret,
        compiler_params=plgpu.CompilerParams(num_warps=num_warps, num_stages=1) if triton else None,
        name="ensemble_mlp",
    )(n_valid, index, terms, weights, table, w_terms, b0, *flat)
    return out


def reference(index, terms, weights, table, w_terms, b0, layers, compute_dtype=jnp.float32) -> jax.Array:
    """The kernel's sums as XLA operations: (out, Q)."""
    pre = table[index] + b0
    for e in range(terms.shape[1]):
        pre = pre + terms[:, e, :, None] * w_terms[e]
    h = jnp.maximum(pre, 0)
    for w, b in layers[:-1]:
        h = jnp.maximum(
            jnp.dot(h.astype(compute_dtype), w.astype(compute_dtype), preferred_element_type=jnp.float32) + b, 0
        )
    out = h @ layers[-1][0] + layers[-1][1]
    return jnp.sum(out * weights[..., None], axis=0).T


def _gpu_precision(compute_dtype) -> jax.lax.Precision | jax.lax.DotAlgorithmPreset | None:
    """Triton's dot for the configured matmul precision: float32 at "highest" runs as three TF32
    products (about float32 accuracy; an exact float32 dot of these sizes takes Triton minutes to
    compile), the default as one TF32 product, as XLA's GPU matmuls do."""
    if compute_dtype != jnp.float32:
        return None
    if jax.config.jax_default_matmul_precision in ("highest", "float32"):
        return jax.lax.DotAlgorithmPreset.TF32_TF32_F32_X3
    return jax.lax.Precision.DEFAULT


def ensemble_mlp(
    table: jax.Array,
    index: jax.Array,
    terms: jax.Array,
    weights: jax.Array,
    w_terms: jax.Array,
    b0: jax.Array,
    layers: Sequence[Layer],
    n_valid: jax.Array | None = None,
    compute_dtype=None,
    block_rows: int | None = None,
    num_warps: int | None = None,
) -> jax.Array:
    """out (out_dim, Q) float32, as the module docstring's sum.

    table (N, D) float32 rows; index (n, Q) int32 rows of the table per neighbour; terms (n, E, Q)
    float32 per-query inputs; weights (n, Q); w_terms (E, D); b0 (D,); layers: the hidden layers
    (D_i, D_i+1) and the last (D_last, out_dim), each with its bias. `n_valid` (int32 scalar):
    only the first n_valid queries are computed (the rest of the output is undefined).
    `compute_dtype` (e.g. bfloat16): the hidden layers' matmul inputs (float32 accumulation).
    `block_rows`, `num_warps`: the GPU kernel's block (default `BLOCK_ROWS`, `NUM_WARPS`).
    """
    block_rows, num_warps = block_rows or BLOCK_ROWS, num_warps or NUM_WARPS
    n_nb, q = index.shape
    widths = (table.shape[1], *(w.shape[1] for w, _ in layers[:-1]))
    if not supports(widths, n_nb) or block_rows < 16 or block_rows & (block_rows - 1):
        raise ValueError(
            f"ensemble_mlp: widths {widths} must be multiples of 16, 1, 2 or 4 neighbours "
            f"(got {n_nb}), block_rows a power of two >= 16 (got {block_rows})"
        )
    compute_dtype = jnp.dtype(compute_dtype or jnp.float32)
    queries = block_rows // n_nb
    pad = -q % queries
    if pad:
        index, terms, weights = (jnp.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, pad)]) for a in (index, terms, weights))
    n_valid = jnp.reshape(jnp.minimum(q, jnp.asarray(q if n_valid is None else n_valid, jnp.int32)), (1,))
    layers = [tuple(layer) for layer in layers]
    args = (n_valid, index, terms, weights, table, w_terms, b0, layers)
    kw = dict(compute_dtype=compute_dtype, block_rows=block_rows, num_warps=num_warps)
    out = jax.lax.platform_dependent(
        *args,
        cpu=functools.partial(_pallas, precision=None, interpret=True, **kw),
        cuda=functools.partial(_pallas, precision=_gpu_precision(compute_dtype), interpret=False, **kw),
        default=lambda n_valid, *rest: reference(*rest, compute_dtype=compute_dtype),
    )
    return out[:, :q]
