"""experiments/precision.py: the PSNR change of TF32 and bf16 against float32, per scale."""

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


def load_script():
    return load_module(REPO / "experiments" / "precision.py")


def test_precision_report_compares_every_setting_with_float32(tmp_path):
    model = build_model(SPEC)
    ckpt = save_model(tmp_path / "ckpt", SPEC, model.init(jax.random.key(0)))
    rng = np.random.default_rng(0)
    (tmp_path / "hr").mkdir()
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(rng.integers(0, 256, (48, 60, 3), dtype=np.uint8)).save(tmp_path / "hr" / name)
    (tmp_path / "split.json").write_text(json.dumps({"test": ["a.png", "c.png"]}))
    precision = load_script()
    assert (
        precision.main(
            [
                "--model",
                str(ckpt),
                "--hr-dir",
                str(tmp_path / "hr"),
                "--split-file",
                str(tmp_path / "split.json"),
                "--split-key",
                "test",
                "--scale",
                "2,3",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )

    out = json.loads((tmp_path / "out" / "precision_cpu.json").read_text())
    assert out["n_images"] == 2 and out["device"] == "cpu" and "experiments/precision.py" in out["command"]
    rows = {(r["setting"], r["scale"]): r for r in out["rows"]}
    settings = ("float32-highest", "float32-highest-fused", "float32-tf32", "bfloat16")
    assert set(rows) == {(s, k) for s in settings for k in (2.0, 3.0)}
    assert out["decoder"] == "xla"  # a CPU's default: the fused setting is the reference's decoder here
    for k in (2.0, 3.0):
        assert rows[("float32-highest", k)]["max_abs_delta_db"] == 0
        assert rows[("float32-highest-fused", k)]["max_abs_delta_db"] == 0
        ref, bf16 = rows[("float32-highest", k)], rows[("bfloat16", k)]
        assert bf16["psnr"] == pytest.approx(ref["psnr"] + bf16["mean_delta_db"], abs=1e-9)
    assert 0 < out["max_abs_delta_db"]["bfloat16"] < 1  # bf16 really ran, and changes PSNR only a little
    md = (tmp_path / "out" / "precision_cpu.md").read_text()
    assert "| bfloat16 | x3 |" in md and "Command:" in md
