"""liif_jax.aot without an accelerator or its extras: targets, batch shapes, render run counts, and
the errors that say which extra to install. (tests/aot_tpu_test.py compiles for TPUs.)"""

import importlib.util
import json

import jax
import numpy as np
import pytest

from liif_jax import aot
from liif_jax.configs.common import liif_spec
from liif_jax.models import build_model
from liif_jax.render import render
from xla_tools import estimate

from conftest import REPO


def test_every_target_states_its_memory_bandwidth_and_peaks():
    assert set(aot.TARGETS) == {"h100", "h200", "a100", "rtx4090", "t4", "v5e-1", "v5e-8", "v4-8", "v6e-1"}
    for t in aot.TARGETS.values():
        assert t.memory_bytes > 8e9 and t.hbm_bandwidth > 3e11
        assert set(t.peak_flops) == {"bf16", "f32", "f32_highest"}
        # float32 at "highest" is slower than TF32 where a GPU has TF32 (not the T4; the same on an RTX 4090)
        assert t.peak_flops["bf16"] >= t.peak_flops["f32"] >= t.peak_flops["f32_highest"]
    assert aot.target("h200").peak_flops["f32"] == pytest.approx(495e12, rel=0.01)  # TF32, dense
    with pytest.raises(ValueError, match="unknown target 'v9'; known: h100"):
        aot.target("v9")


def test_gpu_targets_name_their_description_file_and_its_source():
    for t in (aot.target(n) for n in ("h100", "h200", "a100", "rtx4090", "t4")):
        text = (REPO / "liif_jax" / "aot" / "gpu_targets" / t.config_file).read_text()
        assert "xla/tools/hlo_opt/gpu_specs" in text and "Apache License" in text
        assert f"device_memory_size: {t.memory_bytes}" in text
        assert f"memory_bandwidth: {int(t.hbm_bandwidth)}" in text


def test_a_missing_extra_is_named(monkeypatch):
    real = importlib.util.find_spec
    missing = ("libtpu", "jax_plugins.xla_cuda13", "jax_plugins.xla_cuda12")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in missing else real(name, *a))
    with pytest.raises(ImportError, match=r'pip install -e "\.\[aot-tpu\]"'):
        aot.devices("v5e-1")
    with pytest.raises(ImportError, match=r'pip install -e "\.\[aot-gpu\]"'):
        aot.devices("h200")


def test_the_estimate_uses_the_committed_fit():
    fit = json.loads((REPO / "experiments" / "results" / "archive" / "42e58ae" / "aot_fit_h200.json").read_text())
    adopted = fit["fits"][fit["adopted"]]
    assert estimate.H200_FIT.efficiency == pytest.approx(adopted["efficiency"], rel=0.01)
    assert estimate.H200_FIT.launch_s == pytest.approx(adopted["launch_s"], rel=0.01)


def test_batch_shapes_follow_the_config():
    c = importlib.import_module("liif_jax.configs.edsr_baseline_liif").get_config()
    shapes = aot.batch_shapes(c)
    assert {k: v.shape for k, v in shapes.items()} == {
        "inp": (16, 48, 48, 3),
        "coord": (16, 2304, 2),
        "cell": (16, 2304, 2),
        "gt": (16, 2304, 3),
    }
    c.data.train.wrapper.args.sample_q = None
    with pytest.raises(ValueError, match="sample_q"):
        aot.batch_shapes(c)


def test_program_runs_counts_the_programs_a_render_runs(monkeypatch):
    """`render.program_runs` against the calls `render.render` makes, on a tiled odd-size render."""
    model = build_model(liif_spec("edsr-baseline", {"n_resblocks": 1, "n_feats": 4}, hidden_list=(8,)))
    params = jax.jit(model.init, static_argnums=1)(jax.random.key(0), 8)
    in_hw, out_hw = (37, 29), (1500, 60)  # 3 x 2 tiles, each of 2 output blocks of at most 512 rows
    calls = dict.fromkeys(render.programs(model, params, in_hw, out_hw, tile=16, batch_queries=4096), 0)

    def counting(name):
        fn = getattr(render, name)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    for name in calls:
        monkeypatch.setattr(render, name, counting(name))
    render.render(model, params, np.zeros((1, *in_hw, 3), np.float32), out_hw, batch_queries=4096, tile=16)
    runs = render.program_runs(model, in_hw, out_hw, tile=16)
    assert runs == calls and runs["encode_tile"] > 1 and runs["query_block"] > runs["encode_tile"]


def train_flops(c) -> float:
    """FLOPs of an EDSR-baseline-LIIF training step, counted by hand: the forward pass's matrix
    products and convolutions, and twice that backward (input and weight gradients) but for the
    input gradient of the first convolution."""
    enc, mlp = c.model.args.encoder_spec.args, c.model.args.imnet_spec.args.hidden_list
    f, n = enc.get("n_feats", 64), enc.get("n_resblocks", 16)  # EDSR-baseline defaults
    w = c.data.train.wrapper.args
    pixels, rows = c.data.train.batch_size * w.inp_size**2, c.data.train.batch_size * w.sample_q * 4  # 4 neighbours
    head = 2 * pixels * 9 * 3 * f
    encoder = head + 2 * pixels * 9 * f * f * (2 * n + 1)  # 2 convs per residual block, the body's last conv
    latents = 2 * pixels * 9 * f * mlp[0]  # the first MLP layer on the unfolded 3x3 features, once per latent
    decoder = 2 * rows * (sum(a * b for a, b in zip(mlp, mlp[1:])) + mlp[-1] * 3)
    return 3 * (encoder + latents + decoder) - head
