"""experiments/precision.py: the PSNR change of each setting against float32 with XLA's decoder.

With `--decoder pallas` the settings other than the reference run the fused query kernel (Pallas
interpret mode on the CPU), so on a tiny model the table shows that the kernel in float32 agrees
with XLA's decoder to well under 0.01 dB, and that bf16 changes PSNR, but only a little."""

import json

import jax
import numpy as np
import pytest
from PIL import Image

from liif_jax.formats.checkpoints import save_model
from liif_jax.models import build_model

from conftest import REPO, load_module

SPEC = {
    "name": "liif",
    "args": {
        "encoder_spec": {"name": "edsr-baseline", "args": {"n_resblocks": 1, "n_feats": 8, "no_upsampling": True}},
        "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [16, 16]}},
    },
}
SETTINGS = ("float32-highest", "float32-highest-fused", "float32-tf32", "bfloat16")


def test_fused_kernel_and_bf16_rows_against_the_float32_xla_reference(tmp_path):
    model = build_model(SPEC)
    ckpt = save_model(tmp_path / "ckpt", SPEC, model.init(jax.random.key(0)))
    rng = np.random.default_rng(0)
    (tmp_path / "hr").mkdir()
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)).save(tmp_path / "hr" / name)
    (tmp_path / "split.json").write_text(json.dumps({"test": ["a.png", "c.png"]}))
    argv = ["--model", str(ckpt), "--hr-dir", str(tmp_path / "hr"), "--split-file", str(tmp_path / "split.json")]
    argv += ["--split-key", "test", "--scale", "2", "--decoder", "pallas", "--out", str(tmp_path / "out")]
    assert load_module(REPO / "experiments" / "precision.py").main(argv) == 0

    out = json.loads((tmp_path / "out" / "precision_cpu.json").read_text())
    assert out["n_images"] == 2 and out["device"] == "cpu" and out["decoder"] == "pallas"
    assert "experiments/precision.py" in out["command"] and "--decoder pallas" in out["command"]
    rows = {(r["setting"], r["scale"]): r for r in out["rows"]}
    assert set(rows) == {(s, 2.0) for s in SETTINGS}
    ref = rows[("float32-highest", 2.0)]
    for setting in SETTINGS[1:]:
        row = rows[(setting, 2.0)]
        assert row["n_images"] == 2 and row["bicubic_psnr"] == ref["bicubic_psnr"]
        assert row["psnr"] == pytest.approx(ref["psnr"] + row["mean_delta_db"], abs=1e-9)
        assert row["max_abs_delta_db"] >= abs(row["mean_delta_db"])
    # The fused kernel in float32 (and "TF32", which a CPU does not have) computes what XLA's decoder does.
    assert out["max_abs_delta_db"]["float32-highest-fused"] < 1e-3
    assert out["max_abs_delta_db"]["float32-tf32"] < 1e-3
    # bf16 really ran (its 8 mantissa bits change the PSNR) and changes it only a little.
    assert 0 < out["max_abs_delta_db"]["bfloat16"] < 0.1
    md = (tmp_path / "out" / "precision_cpu.md").read_text()
    assert "| bfloat16 | x2 |" in md and "Command:" in md and "Decoder `pallas`" in md
