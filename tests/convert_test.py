"""Official checkpoints load without PyTorch, safely, into the same model."""

import collections
import json
import pathlib
import pickle
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from liif_jax import convert
from liif_jax.formats import pth, state_dict
from liif_jax.formats.checkpoints import load_model, save_model
from liif_jax.models import build_model

import reference


def test_pth_gives_the_params_and_output_of_its_npz_twin():
    model, params = state_dict.load_official(reference.path("edsr_baseline_liif_seed1.pth"))
    _, twin, ref = reference.load("edsr_baseline_liif")
    jax.tree.map(np.testing.assert_array_equal, params, twin)
    out = model.apply(params, jnp.asarray(reference.nhwc(ref["inp"])), ref["coord"], ref["cell"])
    np.testing.assert_allclose(np.asarray(out), ref["out"], atol=1e-4, rtol=0)


def test_pth_keeps_optimizer_state_and_epoch():
    ckpt = pth.load_pth(reference.path("edsr_baseline_liif_seed1.pth"))
    assert set(ckpt) >= {"model", "optimizer", "epoch"}
    assert isinstance(ckpt["model"]["sd"], collections.OrderedDict)
    twin = reference.arrays("edsr_baseline_liif")["param/encoder.head.0.weight"]
    np.testing.assert_array_equal(ckpt["model"]["sd"]["encoder.head.0.weight"], twin)


@pytest.mark.parametrize("name", ["edsr-baseline-liif", "rdn-liif"])
def test_full_size_official_state_dicts_map_completely(name):
    entry = json.loads(reference.path("official_state_dict_shapes.json").read_text())[name]
    model = build_model(entry["model_spec"])
    sd = {k: np.zeros(shape, np.float32) for k, shape in entry["state_dict"].items()}
    params = state_dict.params_from_state_dict(model, sd)  # raises on any missing/unexpected/misshapen key
    assert sum(x.size for x in jax.tree.leaves(params)) == entry["num_params"]
    back = state_dict.state_dict_from_params(params)
    used = set(sd) - set(state_dict.extra_entries(model))
    assert set(back) == used
    assert all(back[k].shape == tuple(entry["state_dict"][k]) for k in used)


def test_state_dict_round_trip_is_exact():
    _, params, ref = reference.load("rdn_liif_small")
    back = state_dict.state_dict_from_params(params)
    for k, v in back.items():
        np.testing.assert_array_equal(v, ref[f"param/{k}"].astype(np.float32))


def test_mismatch_names_missing_unexpected_and_misshapen_keys():
    model, _, ref = reference.load("edsr_baseline_liif")
    sd = reference.state_dict(ref)
    del sd["imnet.layers.8.bias"]
    sd["imnet.layers.10.weight"] = np.zeros((3, 3), np.float32)
    n = sd["encoder.head.0.weight"].shape[0]
    sd["encoder.head.0.weight"] = np.zeros((n, 4, 3, 3), np.float32)
    with pytest.raises(state_dict.CheckpointMismatchError) as e:
        state_dict.params_from_state_dict(model, sd, "x.pth")
    msg = str(e.value)
    assert "x.pth" in msg
    assert "missing (1): imnet.layers.8.bias" in msg
    assert "unexpected (1): imnet.layers.10.weight" in msg
    assert f"encoder.head.0.weight: file ({n}, 4, 3, 3), model ({n}, 3, 3, 3)" in msg


@pytest.mark.parametrize("name", ["edsr_baseline_liif_no_cell", "rdn_liif_small"])
def test_pth_model_args_are_honoured(name, tmp_path):
    """A .pth saying cell_decode: false (or RDN G0=16) builds that model, not the default one."""
    model_ref, _, ref = reference.load(name)
    path = tmp_path / "model.pth"
    spec = reference.manifest()[name]["model_spec"]
    sd = collections.OrderedDict(reference.state_dict(ref))
    pth.save_pth(path, {"model": {"name": spec["name"], "args": spec["args"], "sd": sd}, "epoch": 3})
    model, params = load_model(path)
    assert model.spec == spec
    out = model.apply(params, jnp.asarray(reference.nhwc(ref["inp"])), ref["coord"], ref["cell"])
    np.testing.assert_allclose(np.asarray(out), ref["out"], atol=1e-4, rtol=0)


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/liif_jax_pwned",))


def _zip_pickle(path, payload: bytes):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/byteorder", "little")


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = "/tmp/liif_jax_pwned"
    import os

    if os.path.exists(marker):
        os.remove(marker)
    path = tmp_path / "evil.pth"
    _zip_pickle(path, pickle.dumps({"model": _Exploit()}, protocol=2))
    with pytest.raises(pth.UnsafeCheckpointError, match=r"evil\.pth: refusing to load 'posix\.system'"):
        pth.load_pth(path)
    assert not os.path.exists(marker)
    # The same file through the user-facing loaders.
    with pytest.raises(pth.UnsafeCheckpointError):
        load_model(path)


def test_non_checkpoint_files_get_clear_errors(tmp_path):
    legacy = tmp_path / "legacy.pth"
    legacy.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="not a PyTorch zip checkpoint"):
        pth.load_pth(legacy)
    other = tmp_path / "other.pth"
    pth.save_pth(other, {"state_dict": {}})
    with pytest.raises(ValueError, match="no 'model' entry"):
        load_model(other)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_model(tmp_path / "missing.pth")


def test_convert_cli_writes_an_orbax_checkpoint_every_tool_reads(tmp_path, capsys):
    out = tmp_path / "ckpt"
    assert convert.main([str(reference.path("edsr_baseline_liif_seed1.pth")), str(out)]) == 0
    _, twin, _ = reference.load("edsr_baseline_liif")
    assert f"{sum(x.size for x in jax.tree.leaves(twin)) / 1e6:.2f} M parameters" in capsys.readouterr().out
    model, params = load_model(out)
    jax.tree.map(np.testing.assert_array_equal, params, twin)
    assert model.spec == reference.manifest()["edsr_baseline_liif"]["model_spec"]
    # Step directory and --step resolve too; a non-empty output is refused.
    assert load_model(out / "0")[0].spec == model.spec
    with pytest.raises(FileNotFoundError, match="available steps: \\[0\\]"):
        load_model(out, step=5)
    assert convert.main([str(reference.path("edsr_baseline_liif_seed1.pth")), str(out)]) == 1
    assert "not empty" in capsys.readouterr().err


def test_load_model_explains_what_a_model_path_must_be(tmp_path):
    with pytest.raises(FileNotFoundError, match="no liif_jax checkpoint here"):
        load_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such model"):
        load_model(tmp_path / "nope")


def test_save_model_round_trip_with_another_spec(tmp_path):
    model, params, _ = reference.load("rdn_liif_small")
    save_model(tmp_path / "m", model.spec, params, step=7)
    model2, params2 = load_model(tmp_path / "m")
    assert model2.spec == model.spec
    jax.tree.map(np.testing.assert_array_equal, params2, params)


def test_convert_cli_exports_params_only_from_a_training_workdir(tmp_path):
    """What ships a trained model: params and spec, no optimizer or data-iterator state; or a .pth."""
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    from train_test import tiny_config

    from liif_jax.training import trainer

    trainer.train_and_evaluate(tiny_config(num_steps=4), tmp_path / "run")
    assert convert.main([str(tmp_path / "run"), str(tmp_path / "export"), "--step", "4"]) == 0
    assert sorted(p.name for p in (tmp_path / "export" / "0").iterdir() if p.is_dir()) == ["meta", "params"]
    m1, p1 = load_model(tmp_path / "run")
    assert convert.main([str(tmp_path / "run"), str(tmp_path / "run.pth")]) == 0  # and for the official code
    for exported in (tmp_path / "export", tmp_path / "run.pth"):
        m2, p2 = load_model(exported)
        assert m2.spec == m1.spec
        jax.tree.map(np.testing.assert_array_equal, p2, p1)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_checkpoints_load_as_their_exact_values(dtype, tmp_path):
    import ml_dtypes

    np_dtype = np.float16 if dtype == "float16" else ml_dtypes.bfloat16
    _, _, ref = reference.load("rdn_liif_small")
    spec = reference.manifest()["rdn_liif_small"]["model_spec"]
    sd = collections.OrderedDict((k, v.astype(np_dtype)) for k, v in reference.state_dict(ref).items())
    pth.save_pth(tmp_path / "half.pth", {"model": {"name": spec["name"], "args": spec["args"], "sd": sd}})
    _, params = load_model(tmp_path / "half.pth")
    back = state_dict.state_dict_from_params(params)
    for k, v in sd.items():
        np.testing.assert_array_equal(back[k], v.astype(np.float32))


def test_export_to_pth_gives_back_the_official_file(tmp_path):
    """Official .pth -> our params -> .pth: the same spec and the complete state dict, mean shifts included."""
    original = pth.load_pth(reference.path("edsr_baseline_liif_seed1.pth"))["model"]
    model, params = state_dict.load_official(reference.path("edsr_baseline_liif_seed1.pth"))
    state_dict.save_official(tmp_path / "out.pth", model, params)
    exported = pth.load_pth(tmp_path / "out.pth")
    assert list(exported) == ["model"]  # all that the official test.py and demo.py read
    entry = exported["model"]
    assert {k: entry[k] for k in ("name", "args")} == {k: original[k] for k in ("name", "args")}
    assert isinstance(entry["sd"], collections.OrderedDict) and set(entry["sd"]) == set(original["sd"])
    for k, v in original["sd"].items():
        assert entry["sd"][k].dtype == np.float32
        np.testing.assert_array_equal(entry["sd"][k], v, err_msg=k)


def test_metasr_export_is_the_official_state_dict():
    """The MetaSR vectors hold the official model's full state dict (EDSR mean shifts too)."""
    from metasr_reference_test import load

    model, params, arrs = load()
    sd = state_dict.official_state_dict(model, params)
    want = reference.state_dict(arrs)
    assert set(sd) == set(want)
    for k, v in want.items():
        np.testing.assert_array_equal(sd[k], v, err_msg=k)


def test_convert_cli_exports_a_checkpoint_to_pth_and_refuses_what_it_cannot(tmp_path, capsys):
    model, params, _ = reference.load("rdn_liif_small")
    save_model(tmp_path / "ckpt", model.spec, params, step=3)
    out = tmp_path / "sub" / "rdn.pth"
    assert convert.main([str(tmp_path / "ckpt"), str(out), "--step", "3"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    model2, params2 = load_model(out)
    assert model2.spec == model.spec
    jax.tree.map(np.testing.assert_array_equal, params2, params)
    sd = pth.load_pth(out)["model"]["sd"]
    assert set(sd) == set(state_dict.state_dict_from_params(params))  # RDN has no mean shift to add

    for argv, message in [
        ([str(out), str(tmp_path / "again.pth")], "rdn.pth is already an official checkpoint; nothing to convert"),
        ([str(tmp_path / "ckpt"), str(out)], "rdn.pth: output file exists"),
        ([str(tmp_path / "nope"), str(tmp_path / "x.pth")], "nope: no such model file or directory"),
    ]:
        assert convert.main(argv) == 1
        assert message in capsys.readouterr().err
    assert not (tmp_path / "again.pth").exists() and not (tmp_path / "x.pth").exists()


def test_pth_writer_names_only_what_torch_load_allows(tmp_path):
    """`torch.load(weights_only=True)` accepts only a few globals; the writer names no others."""
    import pickletools

    import ml_dtypes

    arrays = {
        "f32": np.arange(12, dtype=np.float32).reshape(3, 4).T,  # not contiguous
        "scalar": np.full((), 2.5, np.float32),
        "f16": np.arange(3, dtype=np.float16),
        "bf16": np.arange(3).astype(ml_dtypes.bfloat16),
        "big_endian": np.arange(3, dtype=">f4"),
        "i64": np.arange(3, dtype=np.int64),
    }
    obj = {"sd": collections.OrderedDict(arrays), "args": {"hidden": [16, 16], "t": (1, 2.0), "x": None, "b": True}}
    pth.save_pth(tmp_path / "a.pth", obj)
    back = pth.load_pth(tmp_path / "a.pth")
    assert back["args"] == obj["args"] and list(back["sd"]) == list(arrays)
    for k, v in arrays.items():
        assert back["sd"][k].shape == v.shape and back["sd"][k].dtype == v.dtype.newbyteorder("=")
        np.testing.assert_array_equal(back["sd"][k], v)
    with zipfile.ZipFile(tmp_path / "a.pth") as z:
        names = {arg for op, arg, _ in pickletools.genops(z.read("archive/data.pkl")) if op.name == "GLOBAL"}
        for info in z.infolist():  # storages at multiples of 64 bytes, as torch writes them (mmap=True)
            assert (info.header_offset + 30 + len(info.filename) + len(info.extra)) % 64 == 0
    assert names == {
        "torch._utils _rebuild_tensor_v2",
        "collections OrderedDict",
        "torch FloatStorage",
        "torch HalfStorage",
        "torch BFloat16Storage",
        "torch LongStorage",
    }


@pytest.mark.parametrize("value", [np.float32(1.0), np.zeros(2, np.complex64), b"bytes", {1, 2}, jnp.zeros(2)])
def test_pth_writer_refuses_what_it_cannot_write(value, tmp_path):
    with pytest.raises(TypeError, match=r"bad\.pth: cannot save"):
        pth.save_pth(tmp_path / "bad.pth", {"x": value})
    assert not (tmp_path / "bad.pth").exists()
