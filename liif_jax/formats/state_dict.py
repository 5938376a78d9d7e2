"""Official LIIF state dicts <-> liif_jax params, and official `.pth` checkpoints in and out.

One rule maps every name: split the official name at dots, join each numeric index to the name
before it, and rename `weight` to `kernel` (transposed from OIHW to HWIO, or (out, in) to (in, out)),
or to `scale` for a LayerNorm (SwinIR). `encoder.body.3.body.0.weight` -> `encoder/body_3/body_0/kernel`.
Entries that the official modules hold but that are not learned weights (EDSR's and RCAN's unused
mean shifts; SwinIR's buffers, computed from its configuration) are checked by shape and not loaded,
and written back on export (`extra_entries`).

`save_official` writes what the official test.py and demo.py load
(`models.make(torch.load(OUT)['model'], load_sd=True)`).
"""

from __future__ import annotations

import collections
import copy
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import traverse_util

from liif_jax.formats.pth import CheckpointError, load_pth, save_pth
from liif_jax.models import Model, Spec, build_model, swinir
from liif_jax.models.spec import SpecError, check_spec

# Encoders whose official module holds unused mean shifts, and the DIV2K RGB mean they shift by.
MEAN_SHIFT_ENCODERS = ("edsr-baseline", "edsr", "rcan")
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


class CheckpointMismatchError(CheckpointError):
    """A state dict does not fit the model its spec describes."""


def flax_path(official_name: str) -> tuple[str, ...]:
    parts: list[str] = []
    for seg in official_name.split("."):
        if seg.isdigit() and parts:
            parts[-1] = f"{parts[-1]}_{seg}"
        else:
            parts.append(seg)
    if parts[-1] == "weight":
        parts[-1] = "kernel"
    return tuple(parts)


def official_name(path: tuple[str, ...]) -> str:
    segs = []
    for p in path:
        indices = []
        head, _, tail = p.rpartition("_")
        while head and tail.isdigit():  # `tail_0_2` -> tail.0.2
            indices.insert(0, tail)
            p = head
            head, _, tail = p.rpartition("_")
        segs.extend([p, *indices])
    if segs[-1] in ("kernel", "scale"):
        segs[-1] = "weight"
    return ".".join(segs)


def _to_flax(value: np.ndarray, kernel: bool) -> np.ndarray:
    value = np.asarray(value, dtype=np.float32)
    if kernel and value.ndim == 4:  # conv OIHW -> HWIO
        return value.transpose(2, 3, 1, 0)
    if kernel and value.ndim == 2:  # linear (out, in) -> (in, out)
        return value.T
    return value


def _to_official(value: np.ndarray, kernel: bool) -> np.ndarray:
    if kernel and value.ndim == 4:
        return value.transpose(3, 2, 0, 1)
    return value.T if kernel and value.ndim == 2 else value


def extra_entries(model: Model) -> collections.OrderedDict[str, np.ndarray]:
    """State-dict entries of the official module that are not params here: EDSR's and RCAN's
    mean shifts (never used by the forward; values as the official MeanShift sets them, std 1)
    and SwinIR's buffers (`swinir.buffers`)."""
    extra = collections.OrderedDict()
    enc_spec = model.spec["args"]["encoder_spec"]
    if enc_spec["name"] in MEAN_SHIFT_ENCODERS:
        rgb_range = (enc_spec.get("args") or {}).get("rgb_range", 1)
        for name, sign in (("sub_mean", -1), ("add_mean", 1)):
            extra[f"encoder.{name}.weight"] = np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1)
            extra[f"encoder.{name}.bias"] = sign * rgb_range * np.array(DIV2K_RGB_MEAN, np.float32)
    if isinstance(model.encoder, swinir.SwinIR):
        extra.update(swinir.buffers(model.encoder))
    return extra


def params_from_state_dict(model: Model, state_dict: Mapping[str, Any], source: str = "state dict") -> Any:
    """Params pytree from an official state dict; names what is missing, unexpected or misshapen."""
    expected = traverse_util.flatten_dict(jax.eval_shape(model.init, jax.random.key(0)))
    extra = extra_entries(model)
    got, unexpected, misshapen = {}, [], {}
    for name, value in state_dict.items():
        if name in extra:
            if np.shape(value) != extra[name].shape:
                misshapen[name] = f"{name}: file {tuple(np.shape(value))}, model {extra[name].shape}"
            continue
        path = flax_path(name)
        if path not in expected and path[-1] == "kernel" and path[:-1] + ("scale",) in expected:
            path = path[:-1] + ("scale",)  # a LayerNorm's weight
        if path not in expected:
            unexpected.append(name)
            continue
        if not isinstance(value, np.ndarray):
            misshapen[name] = f"{name}: not a tensor but {type(value).__name__}"
            continue
        kernel = path[-1] == "kernel"
        arr = _to_flax(value, kernel)
        if arr.shape != expected[path].shape:
            official_shape = tuple(_to_official(np.zeros(expected[path].shape), kernel).shape)
            misshapen[name] = f"{name}: file {tuple(np.shape(value))}, model {official_shape}"
            continue
        got[path] = arr
    missing = [official_name(p) for p in expected if p not in got and official_name(p) not in misshapen]
    if missing or unexpected or misshapen:
        lines = [f"{source} does not fit the model {model.spec.get('name')!r} its spec describes:"]
        for title, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", list(misshapen.values())),
        ):
            if items:
                lines.append(
                    f"  {title} ({len(items)}): " + ", ".join(items[:20]) + (" ..." if len(items) > 20 else "")
                )
        lines.append(
            "Check that the checkpoint's model args (encoder, hidden_list, feat_unfold, cell_decode, hidden_dim) match."
        )
        raise CheckpointMismatchError("\n".join(lines))
    return traverse_util.unflatten_dict(got)


def state_dict_from_params(params: Any) -> dict[str, np.ndarray]:
    """Inverse mapping (official names, PyTorch layouts): for exporting back and for tests."""
    flat = traverse_util.flatten_dict(params)
    return {official_name(p): _to_official(np.asarray(v), p[-1] == "kernel") for p, v in flat.items()}


def official_state_dict(model: Model, params: Any) -> collections.OrderedDict[str, np.ndarray]:
    """The state dict the official model's strict `load_state_dict` takes (float32 weights), with
    its `extra_entries`."""
    sd = extra_entries(model)
    sd.update((k, np.asarray(v, np.float32)) for k, v in state_dict_from_params(params).items())
    return sd


def save_official(path: str | os.PathLike, model: Model, params: Any) -> None:
    """Writes `{'model': {'name', 'args', 'sd'}}`, all that the official test.py and demo.py read."""
    entry = {**copy.deepcopy(model.spec), "sd": official_state_dict(model, params)}
    save_pth(path, {"model": entry})


def model_spec_of(model_entry: Mapping[str, Any], source: str) -> Spec:
    """The `{'name', 'args'}` spec of an official checkpoint's `model` entry, checked by the schema."""
    if not isinstance(model_entry, Mapping) or not {"name", "args", "sd"} <= set(model_entry):
        raise CheckpointError(
            f"{source}: expected the official train_liif.py format {{'model': {{'name', 'args', 'sd'}}, ...}}"
        )
    if not isinstance(model_entry["sd"], Mapping) or not all(isinstance(k, str) for k in model_entry["sd"]):
        raise CheckpointError(f"{source}: model.sd is not a state dict (a mapping of tensor names to tensors)")
    spec = {"name": model_entry["name"], "args": model_entry["args"]}
    try:
        check_spec(spec)
    except SpecError as err:
        raise CheckpointError(f"{source}: {err}") from None
    return spec


def load_official(path: str | os.PathLike, dtype=None) -> tuple[Model, Any]:
    """(model, params) from an official `.pth` checkpoint, honouring the model args it stores."""
    path = os.fspath(path)
    ckpt = load_pth(path)
    if not isinstance(ckpt, Mapping) or "model" not in ckpt:
        raise CheckpointError(f"{path}: no 'model' entry; not a checkpoint saved by the official train_liif.py")
    spec = model_spec_of(ckpt["model"], path)
    model = build_model(spec, dtype)
    return model, params_from_state_dict(model, ckpt["model"]["sd"], path)
