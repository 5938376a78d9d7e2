"""The animated zoom: each frame is the model's rendering of the centre at that frame's scale."""

import jax
import numpy as np
import pytest
from PIL import Image

from liif_jax import demo
from liif_jax.configs.common import liif_spec
from liif_jax.models import build_model
from liif_jax.models.coords import make_coord
from liif_jax.render import render, zoom

from conftest import REPO

SHIPPED = REPO / "liif_jax" / "pretrained" / "edsr-baseline-liif"


@pytest.fixture(scope="module")
def tiny():
    """Random weights of the right shapes, without compiling an initialiser."""
    model = build_model(liif_spec("edsr-baseline", {"n_resblocks": 1, "n_feats": 8}, hidden_list=(16,)))
    rng = np.random.default_rng(0)
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    return model, jax.tree.map(lambda s: rng.normal(0, 0.2, s.shape).astype(s.dtype), shapes)


@pytest.fixture(scope="module")
def img01():
    return np.random.default_rng(0).random((20, 24, 3), dtype=np.float32)


def test_zooms_grow_geometrically_from_1_to_the_scale():
    s = zoom.zoom_scales(5, 16)
    np.testing.assert_allclose(s, [1, 2, 4, 8, 16])
    for frames, scale in ((1, 4), (5, 1), (5, 0.5)):
        with pytest.raises(ValueError, match="at least 2 frames and a scale above 1"):
            zoom.zoom_scales(frames, scale)


def test_a_whole_frame_at_zoom_1_queries_the_official_pixel_centres():
    coord, cell = zoom.frame_queries((6, 8), (6, 8), 1.0)
    np.testing.assert_allclose(coord, np.asarray(make_coord((6, 8))).reshape(-1, 2), atol=1e-6)
    np.testing.assert_allclose(cell, [2 / 6, 2 / 8])


def test_frames_are_central_crops_of_plain_renderings_at_their_scale(tiny, img01):
    """Zoom 1: the central 12x16 of a x1 rendering; zoom 2: the central 12x16 of a x2 rendering
    (40x48), computed by querying only the frame's own pixels."""
    model, params = tiny
    first, last = zoom.render_zoom(model, params, img01, 2, 2.0, frame_hw=(12, 16), batch_queries=50)
    np.testing.assert_allclose(first, render.upscale(model, params, img01, (20, 24))[4:16, 4:20], atol=1e-5)
    np.testing.assert_allclose(last, render.upscale(model, params, img01, (40, 48))[14:26, 16:32], atol=1e-5)


@pytest.mark.parametrize("suffix", [".gif", ".webp"])
def test_save_zoom_writes_every_frame_and_reports_progress(tiny, img01, tmp_path, suffix):
    model, params = tiny
    lines = []
    zoom.save_zoom(model, params, img01, tmp_path / f"z{suffix}", 4, 3.0, (10, 12), report=lines.append)
    with Image.open(tmp_path / f"z{suffix}") as anim:
        assert (anim.n_frames, anim.size) == (4, (12, 10))
    assert lines[0].endswith("1/4 frames") and lines[-1] == "[" + "#" * 30 + "] 4/4 frames"
    with pytest.raises(ValueError, match="z.png: an animation is written as .gif or .webp"):
        zoom.write_animation(tmp_path / "z.png", [np.zeros((2, 2, 3))] * 2)


def test_programs_are_what_a_zoom_runs_and_program_runs_counts_them(tiny, img01, monkeypatch):
    """`zoom.programs` lowers the two programs `render_zoom` calls, at the shapes it calls them
    with (a 10x12 frame in chunks of 50 queries: 3 per frame, the last padded), and
    `program_runs` counts the calls."""
    model, params = tiny
    lowered = zoom.programs(model, params, img01.shape[:2], (10, 12), batch_queries=50)
    calls = {name: [] for name in lowered}
    for name, private in (("encode", "_encode"), ("query", "_query")):
        fn = getattr(zoom, private)
        monkeypatch.setattr(zoom, private, lambda *a, fn=fn, name=name: calls[name].append(a) or fn(*a))
    list(zoom.render_zoom(model, params, img01, 4, 3.0, (10, 12), batch_queries=50))
    assert {k: len(v) for k, v in calls.items()} == zoom.program_runs(4, (10, 12), 50) == {"encode": 1, "query": 12}
    for name, low in lowered.items():
        args = jax.tree.leaves(low.args_info[0][1:])  # after the model (static) and its parameters
        ran = jax.tree.leaves(calls[name][-1][2:])
        assert [(a.shape, a.dtype) for a in args] == [(r.shape, r.dtype) for r in ran], name


def test_demo_zoom_with_the_shipped_model(tmp_path, capsys):
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (16, 20, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    args = ["--input", str(tmp_path / "in.png"), "--model", str(SHIPPED), "--zoom", "3", "--scale", "4"]
    assert demo.main(args + ["--frame-size", "8,10", "--output", str(tmp_path / "z.webp")]) == 0
    captured = capsys.readouterr()
    assert "3/3 frames" in captured.err and "3 frames of 8x10, x1 to x4" in captured.out
    with Image.open(tmp_path / "z.webp") as anim:
        assert (anim.n_frames, anim.size) == (3, (10, 8))
    for bad, needle in (
        ([*args, "--output", "z.png"], "--output must end in .gif or .webp"),
        (
            ["--input", "x.png", "--model", "m", "--zoom", "3", "--resolution", "8,8", "--output", "z.gif"],
            "--zoom needs --scale",
        ),
        ([*args[:-1], "1", "--output", "z.gif"], "--zoom needs --scale S above 1"),
    ):
        with pytest.raises(SystemExit):
            demo.main(bad)
        assert needle in capsys.readouterr().err
