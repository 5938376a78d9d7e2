"""Rendering and the demo CLI give the official pixels, in chunks of any size."""

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from liif_jax import demo
from liif_jax.models.coords import make_cell, make_coord
from liif_jax.render import render
from liif_jax.training import writers

import reference


def test_chunked_render_equals_one_pass_over_all_pixels():
    model, params, ref = reference.load("edsr_baseline_liif")
    inp = reference.nhwc(ref["inp"])
    h, w = 29, 23  # 667 pixels: chunks of 100 leave a ragged last chunk
    coord, cell = make_coord((h, w))[None], make_cell((h, w), h * w)[None]
    full = np.asarray(model.apply(params, inp, coord, cell)).reshape(1, h, w, 3)
    np.testing.assert_allclose(render.render(model, params, inp, (h, w), batch_queries=100), full, atol=1e-5, rtol=0)
    np.testing.assert_allclose(render.render(model, params, inp, (h, w), batch_queries=10_000), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name, size", [("eval_div2k_x3", (96, 120)), ("eval_benchmark_x4", (88, 100))])
def test_upscale_matches_the_official_prediction(name, size):
    model, params, ref = reference.load(name)
    pred = render.upscale(model, params, ref["lr"].transpose(1, 2, 0), size, batch_queries=4000)
    np.testing.assert_allclose(pred, ref["pred"].transpose(1, 2, 0), atol=1e-4, rtol=0)


def test_render_rejects_bad_sizes():
    model, params, ref = reference.load("edsr_baseline_liif")
    with pytest.raises(ValueError, match="must be positive"):
        render.render(model, params, reference.nhwc(ref["inp"]), (0, 5))


def _lr_png(ref, path):
    Image.fromarray(np.round(ref["lr"].transpose(1, 2, 0) * 255).astype(np.uint8)).save(path)


def test_demo_gives_the_official_demo_pixels(tmp_path, capsys):
    """The eval reference uses the .pth's architecture; its own weights go in a .pth via save_pth."""
    import collections

    from liif_jax.formats.pth import save_pth

    _, _, ref = reference.load("eval_div2k_x3")
    spec = reference.manifest()["eval_div2k_x3"]["model_spec"]
    model_path = tmp_path / "model.pth"
    sd = collections.OrderedDict(reference.state_dict(ref))
    save_pth(model_path, {"model": {"name": spec["name"], "args": spec["args"], "sd": sd}})
    _lr_png(ref, tmp_path / "in.png")
    out = tmp_path / "out.png"
    rc = demo.main(
        [
            "--input",
            str(tmp_path / "in.png"),
            "--model",
            str(model_path),
            "--resolution",
            "96,120",
            "--output",
            str(out),
            "--batch-queries",
            "5000",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    got = np.asarray(Image.open(out)).astype(int)
    want = (ref["pred"].transpose(1, 2, 0) * np.float32(255)).astype(np.uint8).astype(int)  # ToPILImage truncates
    assert got.shape == (96, 120, 3)
    assert np.abs(got - want).max() <= 1


def test_demo_accepts_gray_and_rgba_inputs(tmp_path):
    rng = np.random.default_rng(0)
    for mode, arr in [
        ("L", rng.integers(0, 255, (10, 12), dtype=np.uint8)),
        ("RGBA", rng.integers(0, 255, (10, 12, 4), dtype=np.uint8)),
    ]:
        Image.fromarray(arr, mode).save(tmp_path / f"{mode}.png")
        out = tmp_path / f"{mode}_out.png"
        rc = demo.main(
            [
                "--input",
                str(tmp_path / f"{mode}.png"),
                "--model",
                str(reference.path("edsr_baseline_liif_seed1.pth")),
                "--resolution",
                "15,17",
                "--output",
                str(out),
            ]
        )
        assert rc == 0 and Image.open(out).size == (17, 15) and Image.open(out).mode == "RGB"


def test_demo_scale_multiplies_the_input_size(tmp_path, capsys):
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "in.png")
    out = tmp_path / "out.png"
    rc = demo.main(
        [
            "--input",
            str(tmp_path / "in.png"),
            "--model",
            str(reference.path("edsr_baseline_liif_seed1.pth")),
            "--scale",
            "2.5",
            "--output",
            str(out),
        ]
    )
    assert rc == 0 and Image.open(out).size == (30, 25)
    for bad in (["--scale", "0"], ["--scale", "2", "--resolution", "4,4"]):
        with pytest.raises(SystemExit):
            demo.main(["--input", str(tmp_path / "in.png"), "--model", "m.pth", "--output", str(out), *bad])
        assert "--scale" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["100", "a,b", "0,10", "10,-1", "1,2,3", "2.5,3"])
def test_demo_rejects_bad_resolutions(text, tmp_path, capsys):
    with pytest.raises(SystemExit):
        demo.main(["--input", "x.png", "--model", "m.pth", "--resolution", text, "--output", str(tmp_path / "o.png")])
    assert "--resolution" in capsys.readouterr().err


def test_demo_names_a_missing_image_and_a_bad_model_path(tmp_path, capsys):
    rc = demo.main(
        [
            "--input",
            str(tmp_path / "nope.png"),
            "--model",
            str(reference.path("edsr_baseline_liif_seed1.pth")),
            "--resolution",
            "4,4",
            "--output",
            str(tmp_path / "o.png"),
        ]
    )
    assert rc == 1 and "nope.png" in capsys.readouterr().err
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "in.png")
    rc = demo.main(
        [
            "--input",
            str(tmp_path / "in.png"),
            "--model",
            str(tmp_path / "not_a_model"),
            "--resolution",
            "4,4",
            "--output",
            str(tmp_path / "o.png"),
        ]
    )
    assert rc == 1 and "not_a_model" in capsys.readouterr().err


def test_demo_tiles_give_the_whole_image_png(tmp_path, capsys):
    """`--tile 8` cuts this input into 5 x 6 tiles; the PNG is the whole-image one, byte for byte."""
    import jax

    from liif_jax.configs.common import liif_spec
    from liif_jax.formats.checkpoints import save_model
    from liif_jax.models import build_model

    spec = liif_spec("edsr-baseline", {"n_resblocks": 1, "n_feats": 8}, hidden_list=(16, 16))
    ckpt = save_model(tmp_path / "ckpt", spec, build_model(spec).init(jax.random.key(3)))
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (37, 45, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    outs = {}
    for tile in (0, 8):
        outs[tile] = tmp_path / f"out{tile}.png"
        rc = demo.main(
            [
                "--input",
                str(tmp_path / "in.png"),
                "--model",
                str(ckpt),
                "--scale",
                "2.3",
                "--output",
                str(outs[tile]),
                "--tile",
                str(tile),
            ]
        )
        assert rc == 0, capsys.readouterr().err
    assert np.array_equal(np.asarray(Image.open(outs[0])), np.asarray(Image.open(outs[8])))
    with pytest.raises(SystemExit):
        demo.main(["--input", "x.png", "--model", str(ckpt), "--scale", "2", "--output", "o.png", "--tile", "-1"])
    assert "--tile" in capsys.readouterr().err


def test_bf16_mlp_renders_close_to_float32():
    model, params, ref = reference.load("edsr_baseline_liif")
    inp = reference.nhwc(ref["inp"])
    f32 = render.render(model, params, inp, (40, 40))
    bf16 = render.render(model, params, inp, (40, 40), mlp_dtype=jnp.bfloat16)
    err = np.abs(bf16 - f32)
    assert 1e-6 < err.max() < 0.05  # it ran in bf16, and bf16 has 8 mantissa bits


def test_render_reports_each_block_as_it_reaches_the_host():
    """`progress(done, total)` once per output block, in order, the last one (total, total)."""
    model, params, ref = reference.load("edsr_baseline_liif")
    calls = []
    inp = reference.nhwc(ref["inp"])
    out_hw = (render.MAX_BLOCK["xla"] + 8, 4)  # two blocks of rows
    render.render(model, params, inp, out_hw, tile=0, decoder="xla", progress=lambda *a: calls.append(a))
    total = render.program_runs(model, inp.shape[1:3], out_hw)["query_block"]
    assert total == 2
    assert calls == [(k, total) for k in range(1, total + 1)]


def test_progress_lines_are_quiet_for_short_work_then_timed_with_an_eta(capsys):
    """Nothing in the first `after` seconds; then at most one line per `every` seconds with the
    count, the elapsed time and the time left at the pace so far; the last block always."""
    now = [0.0]
    lines = writers.ProgressLines("render", after=3, every=3, clock=lambda: now[0])
    for t, done in ((1, 1), (4, 2), (5, 3), (8, 4), (10, 10)):
        now[0] = t
        lines(done, 10)
    printed = capsys.readouterr().err.splitlines()
    assert printed == [
        "render: 2/10 blocks, 0m04s elapsed, ETA 0m16s",
        "render: 4/10 blocks, 0m08s elapsed, ETA 0m12s",
        "render: 10/10 blocks, 0m10s elapsed, ETA 0m00s",
    ]
    quick = writers.ProgressLines("render", clock=lambda: now[0])
    now[0] += 60
    quick(1, 1)  # done in one go: the caller's own last line says how long it took
    assert capsys.readouterr().err == ""
