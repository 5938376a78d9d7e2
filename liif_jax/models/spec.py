"""The schema of official model specs, checked before any module is built.

A spec comes from files (a `.pth`'s `model` entry, our checkpoints' meta, a config), so it is
untrusted: `check_spec` accepts only the keys the official model factories take (`models/*.py`
of the official LIIF code: `liif`, `metasr`, `mlp`, `edsr-baseline`, `edsr`, `rdn`, `rcan`; of
LTE's: `lte` and `swinir`, whose args may also be SwinIR's constructor arguments, for compact
models), each of its type and within a range that builds in seconds, and a model of at most
`MAX_PARAMS` parameters. It says which key is wrong and why, never echoing more than a short repr.
"""

from __future__ import annotations

import math
import numbers
import reprlib
from collections.abc import Callable, Mapping
from typing import Any

MAX_PARAMS = 200_000_000  # about 4x the largest official encoder (EDSR, 43 M)

_SHORT = reprlib.Repr(maxlevel=2, maxstring=40, maxother=40, maxlist=4, maxtuple=4, maxdict=4)


class SpecError(ValueError):
    """A model spec that does not fit the schema; the message names the key."""


Check = Callable[[Any], "str | None"]  # None when the value is fine, else what is wrong


def _int(lo: int, hi: int) -> Check:
    def check(v: Any) -> str | None:
        if type(v) is not int or not lo <= v <= hi:
            return f"must be an integer in [{lo}, {hi}]"
        return None

    return check


def _number(lo: float, hi: float) -> Check:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or not lo <= v <= hi:
            return f"must be a number in [{lo:g}, {hi:g}]"
        return None

    return check


def _bool(v: Any) -> str | None:
    return None if type(v) is bool else "must be true or false"


def _choice(*values: str) -> Check:
    return lambda v: None if type(v) is str and v in values else f"must be one of {', '.join(values)}"


def _odd(lo: int, hi: int) -> Check:
    in_range = _int(lo, hi)
    return lambda v: in_range(v) or (None if v % 2 else "must be odd")


def _int_list(lo: int, hi: int, max_len: int, min_len: int = 0) -> Check:
    def check(v: Any) -> str | None:
        if (
            type(v) not in (list, tuple)
            or not min_len <= len(v) <= max_len
            or any(type(x) is not int or not lo <= x <= hi for x in v)
        ):
            count = f"at most {max_len}" if min_len == 0 else f"{min_len} to {max_len}"
            return f"must be a list of {count} integers in [{lo}, {hi}]"
        return None

    return check


def _even(lo: int, hi: int) -> Check:
    in_range = _int(lo, hi)
    return lambda v: in_range(v) or (None if v % 2 == 0 else "must be even")


_UPSAMPLING = {"scale": _int(1, 16), "no_upsampling": _bool}
_EDSR = {
    "n_resblocks": _int(1, 256),
    "n_feats": _int(1, 1024),
    "res_scale": _number(-100, 100),
    "rgb_range": _number(1e-6, 1e6),
    **_UPSAMPLING,
}
ENCODER_ARGS: dict[str, dict[str, Check]] = {
    "edsr-baseline": _EDSR,
    "edsr": _EDSR,
    "rdn": {"G0": _int(1, 1024), "RDNkSize": _odd(1, 9), "RDNconfig": _choice("A", "B"), **_UPSAMPLING},
    "rcan": {
        "n_resgroups": _int(1, 64),
        "n_resblocks": _int(1, 256),
        "n_feats": _int(1, 1024),
        "reduction": _int(1, 1024),
        "rgb_range": _number(1e-6, 1e6),
        **_UPSAMPLING,
    },
    # LTE's factory takes only no_upsampling (and ignores it); the rest are SwinIR's constructor's.
    "swinir": {
        "no_upsampling": _bool,
        "img_size": _int(1, 4096),
        "embed_dim": _int(1, 1024),
        "depths": _int_list(1, 64, 16, 1),
        "num_heads": _int_list(1, 64, 16, 1),
        "window_size": _int(1, 64),
        "mlp_ratio": _number(0.01, 16),
        "drop_path_rate": _number(0, 0.99),
    },
}
MLP_ARGS = {"in_dim": _int(1, 1 << 20), "out_dim": _int(1, 64), "hidden_list": _int_list(1, 4096, 16)}
LIIF_FLAGS = {"local_ensemble": _bool, "feat_unfold": _bool, "cell_decode": _bool}
LTE_ARGS = {"hidden_dim": _even(2, 4096)}
# Official defaults, for the parameter count.
_ENCODER_DEFAULTS = {
    "edsr-baseline": {"n_resblocks": 16, "n_feats": 64},
    "edsr": {"n_resblocks": 32, "n_feats": 256},
    "rdn": {"G0": 64, "RDNkSize": 3, "RDNconfig": "B"},
    "rcan": {"n_resgroups": 10, "n_resblocks": 20, "n_feats": 64, "reduction": 16},
    "swinir": {
        "img_size": 48,
        "embed_dim": 180,
        "depths": [6] * 6,
        "num_heads": [6] * 6,
        "window_size": 8,
        "mlp_ratio": 2.0,
    },
}
_RDN_CONFIGS = {"A": (20, 6, 32), "B": (16, 8, 64)}  # (blocks, convs per block, growth), as encoders.RDN


def _short(v: Any) -> str:
    return _SHORT.repr(v)


def _mapping(value: Any, where: str, known: Mapping[str, Any], required: tuple[str, ...] = ()) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(f"{where} must be a mapping, got {_short(value)}")
    unknown = [k for k in value if k not in known]
    if unknown:
        raise SpecError(f"{where}: unknown key {_short(unknown[0])} (known: {', '.join(known)})")
    missing = [k for k in required if k not in value]
    if missing:
        raise SpecError(f"{where}: missing {missing[0]!r}")
    return value


def _args(value: Any, where: str, checks: Mapping[str, Check]) -> dict[str, Any]:
    args = dict(_mapping({} if value is None else value, where, checks))
    for key, val in args.items():
        problem = checks[key](val)
        if problem:
            raise SpecError(f"{where}.{key} {problem}, got {_short(val)}")
    return args


def _named(value: Any, where: str, names: Mapping[str, Any]) -> tuple[str, dict[str, Any] | None]:
    spec = _mapping(value, where, {"name": None, "args": None}, required=("name",))
    name = spec["name"]
    if type(name) is not str or name not in names:
        raise SpecError(f"{where}.name must be one of {', '.join(names)}, got {_short(name)}")
    return name, spec.get("args")


def _encoder_params(name: str, args: Mapping[str, Any]) -> tuple[int, int]:
    """(parameter count, output channels) of an encoder; the upsampling tail counted roughly."""
    a = {**_ENCODER_DEFAULTS[name], **args}
    scale = a.get("scale", 2)
    if name == "swinir":
        return _swinir_params(a), 64
    if name == "rdn":
        g0, k = a["G0"], a["RDNkSize"]
        d, c, g = _RDN_CONFIGS[a["RDNconfig"]]
        block = sum((g0 + i * g) * g * k * k + g for i in range(c)) + (g0 + c * g) * g0 + g0
        n = 3 * k * k * g0 + g0 * g0 * k * k + d * block + d * g0 * g0 + g0 * g0 * k * k + 4 * g0
        feats = g0
    else:
        f, blocks = a["n_feats"], a["n_resblocks"]
        conv = 9 * f * f + f
        if name == "rcan":
            mid = max(f // a["reduction"], 1)
            group = blocks * (2 * conv + 2 * f * mid + mid + f) + conv
            body = a["n_resgroups"] * group
        else:
            body = blocks * 2 * conv
        n = 27 * f + f + body + conv
        feats = f
    if not a.get("no_upsampling", False):
        return n + 9 * feats * feats * scale * scale + 27 * feats, 3
    return n, feats


def _swinir_params(a: Mapping[str, Any]) -> int:
    """Parameters of LTE's SwinIR (its 64-channel output conv included, buffers not)."""
    d, w = a["embed_dim"], min(a["window_size"], a["img_size"])
    m = int(d * a["mlp_ratio"])
    conv = 9 * d * d + d
    blocks = sum(
        depth * (4 * d + (2 * w - 1) ** 2 * heads + 3 * d * d + 3 * d + d * d + d + 2 * d * m + m + d)
        for depth, heads in zip(a["depths"], a["num_heads"])
    )
    return 27 * d + d + 2 * d + blocks + len(a["depths"]) * conv + 2 * d + conv + 9 * d * 64 + 64


def _mlp_params(in_dim: int, hidden: list[int] | tuple[int, ...], out_dim: int) -> int:
    dims = [in_dim, *hidden, out_dim]
    return sum(a * b + b for a, b in zip(dims, dims[1:]))


def _check_swinir(args: Mapping[str, Any], where: str) -> None:
    a = {**_ENCODER_DEFAULTS["swinir"], **args}
    if len(a["depths"]) != len(a["num_heads"]):
        raise SpecError(
            f"{where}: depths and num_heads must have one entry per RSTB, got {len(a['depths'])} and {len(a['num_heads'])}"
        )
    if any(a["embed_dim"] % h for h in a["num_heads"]):
        raise SpecError(
            f"{where}.embed_dim {a['embed_dim']} must be a multiple of every num_heads {list(a['num_heads'])}"
        )
    if int(a["embed_dim"] * a["mlp_ratio"]) < 1:
        raise SpecError(f"{where}.mlp_ratio {a['mlp_ratio']} leaves the MLP no hidden units")


def check_spec(spec: Any, where: str = "model spec") -> None:
    """Raises `SpecError` unless `spec` is an official `{'name', 'args'}` model spec we can build."""
    name, args = _named(spec, where, {"liif": None, "metasr": None, "lte": None})
    known = {
        "encoder_spec": None,
        **{"liif": {"imnet_spec": None, **LIIF_FLAGS}, "metasr": {}, "lte": {"imnet_spec": None, **LTE_ARGS}}[name],
    }
    args = _mapping(
        args, f"{where}.args", known, required=("encoder_spec",) + (("imnet_spec",) if name == "lte" else ())
    )
    enc_name, enc_args = _named(args["encoder_spec"], f"{where}.args.encoder_spec", ENCODER_ARGS)
    enc_args = _args(enc_args, f"{where}.args.encoder_spec.args", ENCODER_ARGS[enc_name])
    if enc_name == "rcan" and enc_args.get("reduction", 16) > enc_args.get("n_feats", 64):
        raise SpecError(f"{where}.args.encoder_spec.args.reduction must not exceed n_feats")
    if enc_name == "swinir":
        _check_swinir(enc_args, f"{where}.args.encoder_spec.args")
    n_params, feat_dim = _encoder_params(enc_name, enc_args)
    if name == "metasr":
        n_params += _mlp_params(3, [256], feat_dim * 9 * 3)
    elif name == "lte":
        hidden = _args({"hidden_dim": args.get("hidden_dim", 256)}, f"{where}.args", LTE_ARGS)["hidden_dim"]
        _named(args["imnet_spec"], f"{where}.args.imnet_spec", {"mlp": None})
        im_args = _args(args["imnet_spec"].get("args"), f"{where}.args.imnet_spec.args", MLP_ARGS)
        n_params += 2 * (9 * feat_dim * hidden + hidden) + hidden  # coef, freq, phase
        n_params += _mlp_params(hidden, im_args.get("hidden_list", [256] * 4), im_args.get("out_dim", 3))
    else:
        flags = _args({k: v for k, v in args.items() if k in LIIF_FLAGS}, f"{where}.args", LIIF_FLAGS)
        imnet = args.get("imnet_spec")
        if imnet is not None:
            _named(imnet, f"{where}.args.imnet_spec", {"mlp": None})
            im_args = _args(imnet.get("args"), f"{where}.args.imnet_spec.args", MLP_ARGS)
            in_dim = (
                feat_dim * (9 if flags.get("feat_unfold", True) else 1)
                + 2
                + (2 if flags.get("cell_decode", True) else 0)
            )
            n_params += _mlp_params(in_dim, im_args.get("hidden_list", [256] * 4), im_args.get("out_dim", 3))
    if n_params > MAX_PARAMS:
        raise SpecError(
            f"{where} describes a model of about {n_params / 1e6:.0f} M parameters (limit {MAX_PARAMS / 1e6:.0f} M)"
        )
