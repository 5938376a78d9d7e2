"""The model spec schema accepts every spec of the official configs and refuses, by key, the rest."""

import copy

import pytest

from liif_jax.models.spec import MAX_PARAMS, SpecError, check_spec

MLP = {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [256, 256, 256, 256]}}


def liif(encoder: str, enc_args: dict, **args) -> dict:
    return {"name": "liif", "args": {"encoder_spec": {"name": encoder, "args": enc_args}, **args}}


# Every `model` of the official configs/train-*/ (ablations included), the fixed-scale baselines
# (an upsampling encoder, no imnet), and every arg the official factories take.
OFFICIAL = [
    liif("edsr-baseline", {"no_upsampling": True}, imnet_spec=MLP),
    liif("rdn", {"no_upsampling": True}, imnet_spec=MLP),
    liif("edsr-baseline", {"no_upsampling": True}, imnet_spec=MLP, cell_decode=False),
    liif(
        "edsr-baseline",
        {"no_upsampling": True},
        imnet_spec={"name": "mlp", "args": {"out_dim": 3, "hidden_list": [256, 256]}},
    ),
    liif("edsr-baseline", {"no_upsampling": True}, imnet_spec=MLP, local_ensemble=False),
    liif("edsr-baseline", {"no_upsampling": True}, imnet_spec=MLP, feat_unfold=False),
    {"name": "metasr", "args": {"encoder_spec": {"name": "edsr-baseline", "args": {"no_upsampling": True}}}},
    {"name": "metasr", "args": {"encoder_spec": {"name": "rdn", "args": {"no_upsampling": True}}}},
    liif("edsr-baseline", {"scale": 2}),
    liif("rdn", {"scale": 2}),
    liif("edsr-baseline", {"scale": 8}),
    liif("edsr-baseline", {"no_upsampling": False, "scale": 2}, imnet_spec=None),
    liif(
        "edsr",
        {"n_resblocks": 32, "n_feats": 256, "res_scale": 0.1, "scale": 2, "no_upsampling": True, "rgb_range": 1},
        imnet_spec=MLP,
    ),
    liif("rdn", {"G0": 64, "RDNkSize": 3, "RDNconfig": "A", "scale": 3, "no_upsampling": True}, imnet_spec=MLP),
    liif(
        "rcan",
        {
            "n_resgroups": 10,
            "n_resblocks": 20,
            "n_feats": 64,
            "reduction": 16,
            "scale": 4,
            "no_upsampling": True,
            "rgb_range": 255,
        },
        imnet_spec={"name": "mlp", "args": {"in_dim": 580, "out_dim": 3, "hidden_list": (256,)}},
    ),
]


@pytest.mark.parametrize("spec", OFFICIAL)
def test_official_specs_pass(spec):
    check_spec(copy.deepcopy(spec))


def _with(path: str, value):
    spec = copy.deepcopy(OFFICIAL[0])
    *parents, last = path.split(".")
    node = spec
    for key in parents:
        node = node[key]
    node[last] = value
    return spec


@pytest.mark.parametrize(
    "spec, message",
    [
        (
            _with("args.encoder_spec.args.n_resblocks", 10**7),
            r"args\.n_resblocks must be an integer in \[1, 256\], got 10000000",
        ),
        (_with("args.encoder_spec.args.n_feats", "64"), r"n_feats must be an integer in \[1, 1024\], got '64'"),
        (_with("args.encoder_spec.args.n_feats", True), "n_feats must be an integer"),
        (_with("args.encoder_spec.args.res_scale", float("nan")), "res_scale must be a number"),
        (_with("args.encoder_spec.args.colour", 3), r"encoder_spec\.args: unknown key 'colour' \(known: n_resblocks"),
        (
            _with("args.encoder_spec.name", "vgg"),
            "encoder_spec.name must be one of edsr-baseline, edsr, rdn, rcan, swinir, got 'vgg'",
        ),
        (_with("args.encoder_spec.name", ["edsr"]), "encoder_spec.name must be one of"),
        (_with("args.imnet_spec.args.hidden_list", [256] * 1000), r"hidden_list must be a list of at most 16 integers"),
        (_with("args.imnet_spec.args.hidden_list", [[[256]]]), r"hidden_list must be a list"),
        (_with("args.imnet_spec.name", "siren"), "imnet_spec.name must be one of mlp"),
        (_with("args.cell_decode", "yes"), "args.cell_decode must be true or false"),
        (_with("args.extra", 1), r"model spec\.args: unknown key 'extra'"),
        (_with("name", "vdsr"), "model spec.name must be one of liif, metasr, lte"),
        (_with("args", []), r"model spec\.args must be a mapping, got \[\]"),
        ({"name": "liif", "args": {}}, "missing 'encoder_spec'"),
        (
            {"name": "metasr", "args": {"encoder_spec": OFFICIAL[0]["args"]["encoder_spec"], "imnet_spec": MLP}},
            "unknown key 'imnet_spec'",
        ),
        (liif("rdn", {"RDNkSize": 4}), "RDNkSize must be odd"),
        (liif("rcan", {"n_feats": 8, "reduction": 16}), "reduction must not exceed n_feats"),
        (
            liif("edsr", {"n_resblocks": 256, "n_feats": 1024, "no_upsampling": True}),
            r"about 4842 M parameters \(limit 200 M\)",
        ),
    ],
)
def test_hostile_specs_are_refused_naming_the_key(spec, message):
    with pytest.raises(SpecError, match=message) as info:
        check_spec(spec)
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


def test_refusal_messages_stay_short_for_huge_values():
    nested = []
    for _ in range(10_000):
        nested = [nested, nested]  # shared: 2^10000 leaves if walked
    with pytest.raises(SpecError) as info:
        check_spec(_with("args.imnet_spec.args.hidden_list", nested))
    assert len(str(info.value)) < 300
    assert MAX_PARAMS == 200_000_000
