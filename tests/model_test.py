"""The model computes what the official PyTorch LIIF computes (float32, highest precision)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from liif_jax.models import build_model, encoders

import reference

VARIANTS = [
    "edsr_baseline_liif",  # full LIIF
    "edsr_baseline_liif_no_cell",  # -c
    "edsr_baseline_liif_no_unfold",  # -u
    "edsr_baseline_liif_no_ensemble",  # -e
    "rdn_liif_small",  # RDN config A, G0=16
    "edsr_liif_small",  # EDSR (res_scale 0.1)
    "rcan_liif_small",  # RCAN (channel attention)
]


@pytest.mark.parametrize("name", VARIANTS)
def test_encoder_features_match_official(name):
    model, params, ref = reference.load(name)
    feat = model.features(params, jnp.asarray(reference.nhwc(ref["inp"])))
    np.testing.assert_allclose(np.asarray(feat), reference.nhwc(ref["feat"]), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", VARIANTS)
def test_decoder_output_matches_official(name):
    model, params, ref = reference.load(name)
    out = model.apply(params, jnp.asarray(reference.nhwc(ref["inp"])), ref["coord"], ref["cell"])
    np.testing.assert_allclose(np.asarray(out), ref["out"], atol=1e-4, rtol=0)


def test_encode_once_query_in_pieces_equals_one_pass():
    model, params, ref = reference.load("edsr_baseline_liif")
    grid = model.encode(params, jnp.asarray(reference.nhwc(ref["inp"])))
    n = ref["coord"].shape[1]
    pieces = [
        model.query(params, grid, ref["coord"][:, s : s + 70], ref["cell"][:, s : s + 70]) for s in range(0, n, 70)
    ]
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), ref["out"], atol=1e-4, rtol=0)


def test_batch_elements_are_independent():
    model, params, ref = reference.load("edsr_baseline_liif_no_cell")
    inp = reference.nhwc(ref["inp"])
    two = np.concatenate([inp, inp[:, ::-1]], axis=0)
    coord = np.concatenate([ref["coord"]] * 2)
    cell = np.concatenate([ref["cell"]] * 2)
    out = model.apply(params, jnp.asarray(two), coord, cell)
    np.testing.assert_allclose(np.asarray(out[0]), ref["out"][0], atol=1e-4, rtol=0)
    assert not np.allclose(out[0], out[1])


def _spec(encoder, **flags):
    """The official LIIF spec (its default MLP) around `encoder`."""
    imnet = {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [256, 256, 256, 256]}}
    return {"name": "liif", "args": {"encoder_spec": encoder, "imnet_spec": imnet, **flags}}


@pytest.mark.parametrize(
    "name, args, out_dim",
    [
        ("edsr", {"no_upsampling": True}, 256),
        ("rcan", {"no_upsampling": True, "n_resgroups": 2, "n_resblocks": 2}, 64),
        ("rdn", {"no_upsampling": True, "G0": 16, "RDNconfig": "B"}, 16),
    ],
)
def test_every_encoder_maps_images_to_a_same_size_feature_map(name, args, out_dim):
    enc = encoders.make_encoder(name, args)
    x = jnp.zeros((2, 9, 7, 3))
    shapes = jax.eval_shape(lambda: enc.init_with_output(jax.random.key(0), x)[0])
    assert shapes.shape == (2, 9, 7, out_dim) and enc.out_dim == out_dim


def test_edsr_defaults_are_the_official_ones():
    e = encoders.make_encoder("edsr", {"no_upsampling": True})
    assert (e.n_resblocks, e.n_feats, e.res_scale) == (32, 256, 0.1)
    b = encoders.make_encoder("edsr-baseline", {"no_upsampling": True, "scale": 4, "rgb_range": 1})
    assert (b.n_resblocks, b.n_feats, b.res_scale) == (16, 64, 1)


def test_encoder_spec_errors_are_clear():
    with pytest.raises(ValueError, match="no_upsampling"):
        encoders.make_encoder("rcan", {})
    with pytest.raises(ValueError, match="unknown encoder 'vgg'"):
        encoders.make_encoder("vgg", {"no_upsampling": True})
    with pytest.raises(ValueError, match="unknown model"):
        build_model(
            {"name": "ltep", "args": {"encoder_spec": {"name": "edsr-baseline", "args": {"no_upsampling": True}}}}
        )
    with pytest.raises(ValueError, match="lte: needs an 'mlp' imnet_spec"):
        build_model(
            {"name": "lte", "args": {"encoder_spec": {"name": "edsr-baseline", "args": {"no_upsampling": True}}}}
        )


def test_init_follows_pytorch_default_bounds():
    model = build_model(_spec({"name": "edsr-baseline", "args": {"no_upsampling": True}}))
    params = model.init(jax.random.key(0))
    w = params["imnet"]["layers_0"]["kernel"]  # Linear(580, 256)
    bound = 1 / np.sqrt(w.shape[0])
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    b = params["encoder"]["head_0"]["bias"]  # Conv2d(3, 64, 3): fan_in 27
    assert np.abs(b).max() <= 1 / np.sqrt(27) and np.abs(b).std() > 0


def test_metasr_renders_any_scale():
    spec = {
        "name": "metasr",
        "args": {
            "encoder_spec": {"name": "edsr-baseline", "args": {"no_upsampling": True, "n_resblocks": 2, "n_feats": 8}}
        },
    }
    model = build_model(spec)
    params = model.init(jax.random.key(1), 8)
    coord = jax.random.uniform(jax.random.key(2), (2, 50, 2), minval=-1, maxval=1)
    cell = jnp.full((2, 50, 2), 2 / 20)
    out = jax.jit(model.apply)(params, jnp.ones((2, 8, 8, 3)) * 0.1, coord, cell)
    assert out.shape == (2, 50, 3) and bool(jnp.all(jnp.isfinite(out)))
    assert params["imnet"]["layers_2"]["kernel"].shape == (256, 8 * 9 * 3)


def test_bfloat16_compute_keeps_float32_params_and_stays_close():
    _, params, ref = reference.load("edsr_baseline_liif")
    model = build_model(reference.manifest()["edsr_baseline_liif"]["model_spec"], jnp.bfloat16)
    out = model.apply(params, jnp.asarray(reference.nhwc(ref["inp"])), ref["coord"], ref["cell"])
    assert out.dtype == jnp.float32
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
    err = np.abs(np.asarray(out) - ref["out"])
    assert err.max() < 0.05 and err.mean() < 0.01  # bf16 has 8 mantissa bits
    assert err.max() > 1e-6  # and the computation really ran in bf16
