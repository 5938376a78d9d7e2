"""MetaSR computes what the official PyTorch MetaSR computes (float32, highest precision).

The vectors (tests/data/metasr_reference.npz) come from the official code with random weights:
experiments/reference/make_metasr_reference.py says how they were made and what they hold.
"""

import functools
import json
import pathlib

import jax.numpy as jnp
import numpy as np

from liif_jax.formats.state_dict import params_from_state_dict
from liif_jax.models import MetaSR, build_model

import reference

DATA = pathlib.Path(__file__).resolve().parent / "data" / "metasr_reference.npz"
ATOL = 1e-5


@functools.cache
def load():
    """(model, params, arrays): our model built from the stored official spec, weights converted."""
    with np.load(DATA) as d:
        arrs = {k: d[k] for k in d.files}
    model = build_model(json.loads(str(arrs["model_spec"])))
    return model, params_from_state_dict(model, reference.state_dict(arrs), DATA.name), arrs


def test_official_spec_builds_metasr():
    """The official config's spec (no imnet_spec: MetaSR's imnet is fixed) builds our MetaSR."""
    model, _, ref = load()
    assert isinstance(model, MetaSR)
    assert model.imnet.in_dim == 3 and model.imnet.out_dim == ref["feat"].shape[1] * 9 * 3


def test_encoder_features_match_official():
    """Isolates the encoder, so a decoder mismatch below is the decoder's."""
    model, params, ref = load()
    feat = model.encode(params, jnp.asarray(reference.nhwc(ref["inp"])))
    np.testing.assert_allclose(np.asarray(feat), reference.nhwc(ref["feat"]), atol=ATOL, rtol=0)


def test_decoder_output_matches_official():
    """Every scale, border and corner query: nearest latent, relative coordinate, filter layout."""
    model, params, ref = load()
    out = model.apply(params, jnp.asarray(reference.nhwc(ref["inp"])), ref["coord"], ref["cell"])
    np.testing.assert_allclose(np.asarray(out), ref["out"], atol=ATOL, rtol=0)


def test_encode_once_query_per_scale_equals_one_pass():
    """Rendering encodes once and queries in chunks; each chunk here is one scale's queries."""
    model, params, ref = load()
    feat = model.encode(params, jnp.asarray(reference.nhwc(ref["inp"])))
    for s in np.unique(ref["scale"], axis=0):
        sel = (ref["scale"] == s).all(-1)
        out = model.query(params, feat, ref["coord"][:, sel], ref["cell"][:, sel])
        np.testing.assert_allclose(np.asarray(out), ref["out"][:, sel], atol=ATOL, rtol=0, err_msg=f"scale {s}")
