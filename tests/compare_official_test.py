"""experiments/compare_official.py: our side of the comparison and its table (the official side
needs PyTorch, which the tests do not; experiments/results/official_vs_ours_*.md are its runs)."""

from conftest import REPO, load_module


def load_script():
    return load_module(REPO / "experiments" / "compare_official.py")


def test_our_side_times_the_training_step_and_the_render(monkeypatch):
    cmp = load_script()
    monkeypatch.setitem(cmp.SPEC["args"]["encoder_spec"]["args"], "n_resblocks", 1)
    monkeypatch.setitem(cmp.SPEC["args"]["encoder_spec"]["args"], "n_feats", 8)
    monkeypatch.setitem(cmp.SPEC["args"]["imnet_spec"]["args"], "hidden_list", [16])
    size = {"batch": 2, "inp": 8, "queries": 32, "render_in": (6, 5), "render_scale": 4}
    ours = cmp.run_ours(size, steps=2, dtype_name="float32")
    for key in ("train_step", "render_x4"):
        assert ours[key]["ms"] > 0 and ours[key]["ms_min"] <= ours[key]["ms"] and ours[key]["steps"] == 2
    inputs = cmp.make_inputs(size)
    assert inputs["inp"].shape == (2, 3, 8, 8) and inputs["render"].shape == (1, 3, 6, 5)


def test_table_gives_the_speed_up_as_official_over_ours():
    cmp = load_script()
    ms = lambda v: {"ms": v, "ms_min": v, "steps": 3}
    out = {
        "device_kind": "cpu",
        "size": "small",
        "command": "python experiments/compare_official.py",
        "date": "d",
        "jax_version": "j",
        "host_cpus": 2,
        "sizes": cmp.SIZES["small"],
        "official": {"torch_version": "t", "device": "cpu", "train_step": ms(100.0), "render_x4": ms(30.0)},
        "ours": {
            "float32": {"train_step": ms(50.0), "render_x4": ms(10.0)},
            "bfloat16": {"train_step": ms(200.0), "render_x4": ms(60.0)},
        },
    }
    text = cmp.markdown(out)
    assert "| train step, model only | 100.0 ms | 50.0 ms | 200.0 ms | 2.00x / 0.50x |" in text
    assert "| render x4, 64x96 -> 256x384 | 30.0 ms | 10.0 ms | 60.0 ms | 3.00x / 0.50x |" in text
