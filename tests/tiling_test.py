"""Tiled rendering gives the whole-image rendering, in programs whose memory does not grow with the image."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from liif_jax.configs.common import liif_spec
from liif_jax.models import build_model, encoders
from liif_jax.render import render, tiling

TINY_RDN = ("T", (2, 3, 4))  # RDN_CONFIGS entry: 2 blocks of 3 convs, growth 4 -> radius 3 + 6


@pytest.fixture
def tiny_rdn_config(monkeypatch):
    monkeypatch.setitem(encoders.RDN_CONFIGS, *TINY_RDN)


def tiny(encoder: str = "edsr-baseline", **flags):
    enc_args = {
        "rdn": {"G0": 4, "RDNconfig": TINY_RDN[0]},
        "rcan": {"n_resgroups": 1, "n_resblocks": 1, "n_feats": 8, "reduction": 4},
    }.get(encoder, {"n_resblocks": 2, "n_feats": 8})
    if encoder == "metasr":
        edsr = {"name": "edsr-baseline", "args": {"no_upsampling": True, "n_resblocks": 2, "n_feats": 4}}
        spec = {"name": "metasr", "args": {"encoder_spec": edsr}}
    else:
        spec = liif_spec(encoder, enc_args, hidden_list=(16, 16))
        spec["args"].update(flags)
    model = build_model(spec)
    return model, jax.jit(model.init, static_argnums=1)(jax.random.key(0), 8)


def test_radii_of_the_official_encoders():
    """Receptive-field radius + 1 (3x3 unfold) + 1 (local ensemble): 36, 68 and 133 px."""
    make = lambda name, **kw: encoders.make_encoder(name, {"no_upsampling": True, **kw})
    assert tiling.encoder_radius(make("edsr-baseline")) == 34
    assert tiling.encoder_radius(make("edsr")) == 66
    assert tiling.encoder_radius(make("rdn")) == 131
    assert tiling.encoder_radius(make("rcan")) is None  # channel attention pools the whole image


@pytest.mark.parametrize("encoder", ["edsr-baseline", "rdn"])
def test_an_input_pixel_reaches_exactly_the_radius(encoder, tiny_rdn_config):
    """Impulse test: perturbing one input pixel changes the features up to `radius` away, no further."""
    model, params = tiny(encoder)
    radius = tiling.encoder_radius(model.encoder)
    n = 2 * radius + 9
    x = np.random.default_rng(0).uniform(-1, 1, (2, n, 5, 3)).astype(np.float32)
    y = x.copy()
    y[:, n // 2] += np.random.default_rng(1).uniform(-3, 3, y[:, n // 2].shape)  # one row; ReLUs may hide a pixel
    features = jax.jit(model.features)
    diff = np.abs(np.asarray(features(params, jnp.asarray(y)) - features(params, jnp.asarray(x))))
    rows = np.nonzero(diff.max(axis=(0, 2, 3)) > 0)[0]
    assert rows.min() == n // 2 - radius and rows.max() == n // 2 + radius


CASES = [
    ("edsr-baseline", {}),
    ("edsr-baseline", {"cell_decode": False}),
    ("edsr-baseline", {"feat_unfold": False}),
    ("edsr-baseline", {"local_ensemble": False}),
    ("rdn", {}),
    ("metasr", {}),
]


@pytest.mark.parametrize("encoder, flags", CASES)
def test_tiled_render_equals_the_whole_image_render(encoder, flags, tiny_rdn_config):
    """An odd size, an integer (rows) and a non-integer (columns) scale: tile edges and borders everywhere."""
    model, params = tiny(encoder, **flags)
    inp = np.random.default_rng(1).uniform(-1, 1, (1, 37, 45, 3)).astype(np.float32)
    check_tiles(model, params, inp, (74, 58), 6)


def test_tiled_render_equals_the_whole_image_render_at_other_sizes():
    model, params = tiny()
    inp = np.random.default_rng(2).uniform(-1, 1, (2, 37, 45, 3)).astype(np.float32)
    check_tiles(model, params, inp, (100, 61), 11)  # x2.7, x1.36
    check_tiles(model, params, inp, (30, 20), 8)  # smaller than the input


def check_tiles(model, params, inp, out_hw, tile):
    plan = render.plan(model, inp.shape[1:3], out_hw, tile)
    assert len(plan.rows.outputs) > 1 and len(plan.cols.outputs) > 1
    whole = render.render(model, params, inp, out_hw, batch_queries=300, tile=0)
    tiled = render.render(model, params, inp, out_hw, batch_queries=300, tile=tile)
    np.testing.assert_allclose(tiled, whole, atol=1e-6, rtol=0, err_msg=f"{out_hw} tile {tile}")


def test_a_non_local_encoder_is_rendered_whole_with_a_log_line(caplog):
    model, params = tiny("rcan")
    inp = np.random.default_rng(2).uniform(-1, 1, (1, 20, 20, 3)).astype(np.float32)
    with caplog.at_level(logging.WARNING):
        tiled = render.render(model, params, inp, (30, 30), tile=5)
    assert "rcan encoder" in caplog.text and render.plan(model, (20, 20), (30, 30), 5).n_tiles == 1
    np.testing.assert_array_equal(tiled, render.render(model, params, inp, (30, 30), tile=0))


def test_compiled_render_memory_does_not_depend_on_the_image_size():
    """The programs of a 256x256 and a 4096x4096 input (x2) at one tile size are the same size."""
    model, _ = tiny()
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), 8))
    sizes = []
    for side in (256, 4096):
        programs = render.programs(model, params, (side, side), (2 * side, 2 * side), tile=64, batch_queries=4096)
        stats = [p.compile().memory_analysis() for p in programs.values()]
        sizes.append([(m.temp_size_in_bytes, m.argument_size_in_bytes, m.output_size_in_bytes) for m in stats])
    assert sizes[0] == sizes[1]
    assert render.plan(model, (4096, 4096), (8192, 8192), 64).n_tiles == 64 * 64


def test_the_default_tile_is_the_whole_image_when_it_fits():
    model, params = tiny()
    inp = np.random.default_rng(5).uniform(-1, 1, (1, 37, 45, 3)).astype(np.float32)
    assert render.choose_tile(model, params, (37, 45), (60, 70)) == 0
    np.testing.assert_array_equal(
        render.render(model, params, inp, (60, 70)), render.render(model, params, inp, (60, 70), tile=0)
    )


def test_the_tile_by_memory_is_the_largest_that_fits_the_budget_whatever_the_image_size():
    """Compiled, not run: a 4096 x 4096 input (x2) on a budget of the host images + 40 MB."""
    model, _ = tiny()
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), 8))
    in_hw, out_hw = (4096, 4096), (8192, 8192)
    budget = 4 * 3 * (4096**2 + 8192**2) + 40 * 2**20
    tile = render.choose_tile(model, params, in_hw, out_hw, batch_queries=4096, budget=budget)
    assert 0 < tile < 4096
    assert render.footprint(model, params, in_hw, out_hw, tile, batch_queries=4096) <= budget
    assert render.footprint(model, params, in_hw, out_hw, tile + 64, batch_queries=4096) > budget
