"""The fused query kernel (Pallas, interpret mode on the CPU) computes what the XLA decoder and the
official code compute, in renders of odd sizes cut into tiles, and is used only where it applies."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from liif_jax.configs.common import liif_spec
from liif_jax.kernels import fused_query
from liif_jax.models import build_model
from liif_jax.render import decoders, render

import reference

LIIF_VARIANTS = [
    "edsr_baseline_liif",
    "edsr_baseline_liif_no_cell",
    "edsr_baseline_liif_no_unfold",
    "edsr_baseline_liif_no_ensemble",
]


@pytest.mark.parametrize("name", LIIF_VARIANTS)
def test_fused_query_matches_the_official_output_and_the_xla_decoder(name):
    model, params, ref = reference.load(name)
    grid = model.encode(params, jnp.asarray(reference.nhwc(ref["inp"])))
    fused = np.asarray(model.query_fused(params, grid, ref["coord"], ref["cell"]))
    np.testing.assert_allclose(fused, ref["out"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(
        fused, np.asarray(model.query(params, grid, ref["coord"], ref["cell"])), atol=1e-5, rtol=0
    )


def tiny(hidden=(16, 32), **flags):
    spec = liif_spec("edsr-baseline", {"n_resblocks": 1, "n_feats": 8}, hidden_list=hidden)
    spec["args"].update(flags)
    return build_model(spec)


def tiny_with_params(**flags):
    model = tiny(**flags)
    return model, jax.jit(model.init, static_argnums=1)(jax.random.key(0), 8)


@pytest.mark.parametrize("flags", [{}, {"local_ensemble": False}])
def test_fused_render_equals_the_xla_render_in_tiles(flags):
    """An odd-sized input, x1.5 rows and x1.1 columns, in 4 x 5 tiles; then a batch of two, whole."""
    model, params = tiny_with_params(**flags)
    inp = np.random.default_rng(3).uniform(-1, 1, (2, 31, 37, 3)).astype(np.float32)
    out_hw = (47, 41)
    assert render.plan(model, inp.shape[1:3], out_hw, 8, "pallas").n_tiles == 20
    xla = render.render(model, params, inp, out_hw, tile=0, decoder="xla")
    np.testing.assert_allclose(
        render.render(model, params, inp[:1], out_hw, tile=8, decoder="pallas"), xla[:1], atol=1e-5, rtol=0
    )
    np.testing.assert_allclose(
        render.render(model, params, inp, out_hw, tile=0, decoder="pallas"), xla, atol=1e-5, rtol=0
    )


def test_kernel_computes_the_documented_sum_for_the_valid_queries(monkeypatch):
    rng = np.random.default_rng(0)
    n, q, e, widths = 4, 50, 4, (32, 64, 32)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)
    layers = [(f(a, b) / np.sqrt(a), f(b)) for a, b in zip(widths, widths[1:])] + [(f(widths[-1], 3), f(3))]
    table, index = f(40, widths[0]), rng.integers(0, 40, (n, q)).astype(np.int32)
    terms, weights, w_terms, b0 = f(n, e, q), rng.random((n, q)).astype(np.float32), f(e, widths[0]), f(widths[0])
    want = np.zeros((3, q), np.float32)
    for k in range(n):
        h = np.maximum(table[index[k]] + b0 + terms[k].T @ w_terms, 0)
        for w, b in layers[:-1]:
            h = np.maximum(h @ w + b, 0)
        want += ((h @ layers[-1][0] + layers[-1][1]) * weights[k][:, None]).T
    got = np.asarray(fused_query.ensemble_mlp(table, index, terms, weights, w_terms, b0, layers, n_valid=37))
    np.testing.assert_allclose(got[:, :37], want[:, :37], atol=1e-5, rtol=1e-5)
    bf16 = np.asarray(
        fused_query.ensemble_mlp(table, index, terms, weights, w_terms, b0, layers, compute_dtype=jnp.bfloat16)
    )
    assert 1e-4 < np.abs(bf16 - want).max() < 0.1 * np.abs(want).max()  # it ran in bf16, and bf16 has 8 mantissa bits
    monkeypatch.setattr(fused_query, "PROGRAMS", 3)  # 4 blocks of 16 queries: program 0 runs blocks 0 and 3
    looped = fused_query.ensemble_mlp(table, index, terms, weights, w_terms, b0, layers)
    np.testing.assert_allclose(np.asarray(looped), want, atol=1e-5, rtol=1e-5)


def test_the_xla_decoder_is_the_default_everywhere_and_the_kernel_runs_where_it_applies(monkeypatch):
    monkeypatch.delenv(decoders.ENV, raising=False)
    liif_model = tiny()
    assert decoders.KERNEL_FASTER == {}  # no GPU generation has measured the kernel faster
    for platform, cc in [("gpu", (9, 0)), ("gpu", (8, 9)), ("gpu", (7, 5)), ("cpu", None), ("tpu", None)]:
        assert render.resolve_decoder(liif_model, None, platform, cc) == "xla"
    assert render.resolve_decoder(liif_model, "pallas", "gpu", (8, 0)) == "pallas"
    odd = tiny(hidden=(20, 20))
    metasr = build_model(
        {
            "name": "metasr",
            "args": {
                "encoder_spec": {
                    "name": "edsr-baseline",
                    "args": {"n_resblocks": 1, "n_feats": 8, "no_upsampling": True},
                }
            },
        }
    )
    for model in (odd, metasr):  # no kernel: XLA by default, a clear error when asked for
        assert render.resolve_decoder(model, None, "gpu", (9, 0)) == "xla"
        with pytest.raises(ValueError, match="decoder 'pallas'.*use decoder 'xla'"):
            render.resolve_decoder(model, "pallas")


def test_an_edge_block_computes_its_own_pixels_only():
    """A 5 x 7 block in a program for 16 x 16: 35 pixels, one chunk of 32 queries and a partial
    second; the program's other chunks are never run (left as zeros)."""
    model, params = tiny_with_params()
    inp = jnp.asarray(np.random.default_rng(4).uniform(-1, 1, (1, 9, 9, 3)).astype(np.float32))
    grid = model.encode(params, inp)
    geometry = jnp.asarray(render.output_geometry((16, 16)))
    lattice = render.liif.lattice((9, 9))
    rgb = np.asarray(
        render.query_block(
            model,
            params,
            grid,
            lattice,
            geometry,
            np.array([11, 16], np.int32),
            np.array([9, 16], np.int32),
            (16, 16),
            32,
        )
    )
    whole = render.render(model, params, np.asarray(inp), (16, 16), tile=0)
    np.testing.assert_allclose(rgb[0, :35].reshape(5, 7, 3), whole[0, 11:, 9:], atol=1e-6, rtol=0)
    assert rgb.shape == (1, 256, 3) and np.all(rgb[0, 64:] == 0) and np.any(rgb[0, 35:64] != 0)
