"""LTE and the SwinIR encoder compute what LTE's own PyTorch code computes (float32, highest precision).

The vectors (tests/data/lte_reference/) come from LTE's code with random weights and compact
models: experiments/reference/make_lte_reference.py says how they were made and what they hold.
"""

import functools
import json
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from liif_jax.formats import state_dict
from liif_jax.formats.pth import load_pth
from liif_jax.models import LTE, build_model, swinir
from liif_jax.models.coords import make_cell, make_coord
from liif_jax.models.spec import _encoder_params, check_spec
from liif_jax.training import trainer

DATA = pathlib.Path(__file__).resolve().parent / "data" / "lte_reference"
ATOL = 2e-5  # observed: at most 3e-6
FORWARD = ["edsr_baseline_lte", "swinir_lte_w4", "swinir_lte_w8", "swinir_liif", "swinir_metasr"]


@functools.cache
def manifest() -> dict[str, dict]:
    return {e["name"]: e for e in json.loads((DATA / "MANIFEST.json").read_text())["entries"]}


def arrays(name: str) -> dict[str, np.ndarray]:
    with np.load(DATA / f"{name}.npz") as d:
        return {k: d[k] for k in d.files}


def official_sd(arrs: dict[str, np.ndarray], prefix: str = "param/") -> dict[str, np.ndarray]:
    """The state dict as LTE's module holds it (float16-grid weights widened to float32)."""
    return {
        k[len(prefix) :]: v.astype(np.float32) if v.dtype == np.float16 else v
        for k, v in arrs.items()
        if k.startswith(prefix)
    }


@functools.cache
def load(name: str):
    """(model, params, arrays) of one reference file, the model built from its stored spec."""
    arrs = arrays(name)
    model = build_model(manifest()[name]["model_spec"])
    return model, state_dict.params_from_state_dict(model, official_sd(arrs), name), arrs


def nhwc(x: np.ndarray) -> jnp.ndarray:
    return jnp.asarray(x.transpose(0, 2, 3, 1))


def encoder_features(model, params, inp):
    feat = model.features(params, inp)
    return feat[0] if isinstance(model, LTE) else feat


@functools.partial(jax.jit, static_argnums=0)
def _forward(model, params, inp, coord, cell, cell_clamp):
    """Encoder features, and queries with the cell as given and clamped, from one encoding."""
    feat = model.features(params, inp)
    grid = model.latents(params, feat)
    return (
        feat[0] if isinstance(model, LTE) else feat,
        model.query(params, grid, coord, cell),
        model.query(params, grid, coord, cell_clamp),
    )


@pytest.mark.parametrize("name", FORWARD)
def test_features_and_queries_match_lte_code(name):
    """Encoder features (EDSR-baseline; SwinIR at window 4 and 8 with its reflect padding, 10x13 ->
    12x16 and 17x20 -> 24x24), and queries at scales 1 to 12 (corners, borders, interior) with the
    cell as given and as LTE's demo and test clamp it above the training scale (`cell * max(scale / 4, 1)`)."""
    model, params, ref = load(name)
    feat, out, out_clamp = _forward(model, params, nhwc(ref["inp"]), ref["coord"], ref["cell"], ref["cell_clamp"])
    assert feat.shape == nhwc(ref["feat"]).shape
    np.testing.assert_allclose(np.asarray(feat), nhwc(ref["feat"]), atol=ATOL, rtol=0)
    np.testing.assert_allclose(np.asarray(out), ref["out"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(np.asarray(out_clamp), ref["out_clamp"], atol=ATOL, rtol=0)


def test_cell_clamp_changes_the_output_above_scale_4_only():
    """The clamped vectors differ where they should, so the test above can tell the two apart."""
    _, _, ref = load("edsr_baseline_lte")
    above = ref["scale"][:, 0] > 4
    assert np.abs(ref["out_clamp"] - ref["out"])[:, above].max() > 1e-3
    np.testing.assert_array_equal(ref["out_clamp"][:, ~above], ref["out"][:, ~above])


def test_encode_once_query_per_scale_equals_one_pass():
    """Eagerly, without jit: the same numbers (the forward test above is jitted)."""
    model, params, ref = load("swinir_lte_w4")
    grid = model.encode(params, nhwc(ref["inp"]))
    for s in np.unique(ref["scale"], axis=0):
        sel = (ref["scale"] == s).all(-1)
        out = model.query(params, grid, ref["coord"][:, sel], ref["cell"][:, sel])
        np.testing.assert_allclose(np.asarray(out), ref["out"][:, sel], atol=ATOL, rtol=0, err_msg=f"scale {s}")


@pytest.mark.parametrize("name", ["edsr_baseline_lte", "swinir_lte_w4"])
def test_one_training_step_matches_lte_code(name):
    """Loss, gradients (through SwinIR's attention, masks and reflect padding too) and Adam's update."""
    ref = arrays(f"train_step_{name}")
    model = build_model(manifest()[f"train_step_{name}"]["model_spec"])
    params = state_dict.params_from_state_dict(model, official_sd(ref))
    batch = {"inp": nhwc(ref["inp"]), "coord": ref["coord"], "cell": ref["cell"], "gt": ref["gt"]}
    loss, grads = jax.jit(jax.value_and_grad(lambda p, b: trainer.l1_loss(model, p, b)))(params, batch)
    np.testing.assert_allclose(float(loss), float(ref["loss"]), rtol=1e-5)
    want = state_dict.params_from_state_dict(model, official_sd(ref, "grad/"))
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * np.abs(w).max()), grads, want)
    tx = trainer.optax.adam(1e-4, b1=0.9, b2=0.999, eps=1e-8)
    state = trainer.TrainState(jnp.zeros((), jnp.int32), params, tx.init(params))
    step = jax.jit(lambda s, b: trainer.train_step(model, tx, s, b))
    new, step_loss = step(state, batch)  # training mode: drop_path_rate is 0 here
    assert float(step_loss) == pytest.approx(float(loss), rel=1e-6)
    after = state_dict.params_from_state_dict(model, official_sd(ref, "after/"))
    jax.tree.map(lambda a, w: np.testing.assert_allclose(a, w, rtol=1e-4, atol=1e-7), new.params, after)
    _, loss_after = step(new, batch)
    assert float(loss_after) == pytest.approx(float(ref["loss_after"]), rel=1e-5)


@pytest.mark.parametrize("name", ["edsr_baseline_lte", "swinir_lte_w4"])
def test_official_pth_loads_and_exports_back_exactly(name, tmp_path):
    """A `.pth` saved as LTE's train.py saves it loads without torch (SwinIR's int64 and mask
    buffers included), and our export writes LTE's state dict back: every name, dtype and value."""
    from liif_jax.formats.checkpoints import load_model

    model, params = load_model(DATA / f"{name}.pth")
    _, ref_params, ref = load(name)
    jax.tree.map(np.testing.assert_array_equal, params, ref_params)
    out = model.apply(params, nhwc(ref["inp"]), ref["coord"], ref["cell"])
    np.testing.assert_allclose(np.asarray(out), ref["out"], atol=ATOL, rtol=0)
    state_dict.save_official(tmp_path / "back.pth", model, params)
    theirs = load_pth(DATA / f"{name}.pth")["model"]["sd"]
    ours = load_pth(tmp_path / "back.pth")["model"]["sd"]
    assert set(ours) == set(theirs)
    for k, v in theirs.items():
        assert ours[k].dtype == v.dtype, k
        np.testing.assert_array_equal(ours[k], v, err_msg=k)


def test_buffers_are_checked_by_shape():
    """A SwinIR buffer of another shape (another window) names itself; a missing one is computed."""
    model, _, ref = load("swinir_lte_w4")
    sd = official_sd(ref)
    sd["encoder.layers.0.residual_group.blocks.1.attn_mask"] = np.zeros((4, 16, 16), np.float32)
    with pytest.raises(
        state_dict.CheckpointMismatchError, match=r"blocks\.1\.attn_mask: file \(4, 16, 16\), model \(16, 16, 16\)"
    ):
        state_dict.params_from_state_dict(model, sd)
    del sd["encoder.layers.0.residual_group.blocks.1.attn_mask"]
    state_dict.params_from_state_dict(model, sd)


@pytest.mark.parametrize("name", ["edsr-baseline-lte", "rdn-lte", "swinir-lte", "swinir-liif", "swinir-metasr"])
def test_full_size_state_dicts_map_completely(name):
    """LTE's five training configs' models, full size: every state-dict name and shape maps, the
    parameter count is LTE's, and the spec schema counts it right."""
    entry = json.loads((DATA / "official_state_dict_shapes.json").read_text())[name]
    check_spec(entry["model_spec"])
    model = build_model(entry["model_spec"])
    sd = {k: np.zeros(shape, np.float32) for k, shape in entry["state_dict"].items()}
    params = state_dict.params_from_state_dict(model, sd)
    extra = state_dict.extra_entries(model)
    mean_shift = sum(v.size for k, v in extra.items() if "_mean." in k)  # parameters in torch, unused
    assert sum(x.size for x in jax.tree.leaves(params)) == entry["num_params"] - mean_shift
    assert set(extra) >= set(entry["buffers"])
    assert {k: list(v.shape) for k, v in state_dict.official_state_dict(model, params).items()} == entry["state_dict"]
    enc = entry["model_spec"]["args"]["encoder_spec"]
    if enc["name"] == "swinir":
        assert _encoder_params("swinir", {})[0] == sum(x.size for x in jax.tree.leaves(params["encoder"]))


class _DropPath(nn.Module):
    rate: float

    @nn.compact
    def __call__(self, x, train):
        return swinir.drop_path(self, x, self.rate, train)


def test_drop_path_is_timm_stochastic_depth():
    """LTE trains SwinIR with stochastic depth (rate 0 ... 0.1 over the blocks): in training a
    sample's branch is dropped with probability p and scaled by 1 / (1 - p) otherwise; the identity
    in evaluation. Its random masks cannot match torch's; this is its definition."""
    x = jnp.ones((4000, 3, 2))
    y = np.asarray(_DropPath(0.25).apply({}, x, True, rngs={"drop_path": jax.random.key(0)}))
    per_sample = y.reshape(4000, -1)
    assert np.all((per_sample == 0).all(1) | np.isclose(per_sample, 1 / 0.75).all(1))
    assert abs((per_sample[:, 0] == 0).mean() - 0.25) < 0.03
    np.testing.assert_array_equal(_DropPath(0.25).apply({}, x, False), x)


def test_swinir_trains_with_stochastic_depth_and_evaluates_without():
    model, params, ref = load("swinir_lte_w4")
    assert model.encoder.drop_path_rate == pytest.approx(0.1)  # SwinIR's default, as LTE trains it
    spec = json.loads(json.dumps(model.spec))
    spec["args"]["encoder_spec"]["args"]["drop_path_rate"] = 0.5  # blocks drop at 0, 1/6, 1/3, 1/2
    model = build_model(spec)
    inp = nhwc(ref["inp"])
    evaluated = encoder_features(model, params, inp)
    trained = [model.features(params, inp, jax.random.key(k))[0] for k in (1, 2)]
    assert not np.allclose(trained[0], evaluated) and not np.allclose(trained[0], trained[1])
    np.testing.assert_array_equal(model.features(params, inp, jax.random.key(1))[0], trained[0])


def test_swinir_refuses_an_input_too_small_to_pad():
    model, params, _ = load("swinir_lte_w8")
    with pytest.raises(ValueError, match="too small to reflect-pad to a multiple of its window 8"):
        model.features(params, jnp.zeros((1, 3, 9, 3)))


@pytest.mark.parametrize(
    "name, scale", [("edsr_baseline_lte", 3), ("edsr_baseline_lte", 6), ("swinir_lte_w4", 3), ("swinir_lte_w4", 6)]
)
def test_demo_gives_the_png_of_lte_demo(name, scale, tmp_path):
    """`demo --scale S` on a .pth that LTE's code saved gives the PNG of LTE's own demo.py: its
    int(h S) x int(w S) output, its cell clamp at x6, SwinIR's padding of the 15x19 input to 16x20;
    pixels equal but for float32 rounding at the truncation `mul(255).byte()` (at most 1 level)."""
    from PIL import Image

    from liif_jax import demo

    out = tmp_path / "out.png"
    assert (
        demo.main(
            [
                "--input",
                str(DATA / "demo_input.png"),
                "--model",
                str(DATA / f"{name}.pth"),
                "--scale",
                str(scale),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    ours = np.asarray(Image.open(out)).astype(int)
    theirs = np.asarray(Image.open(DATA / f"demo_{name}_x{scale}.png")).astype(int)
    assert ours.shape == theirs.shape == (15 * scale, 19 * scale, 3)
    assert np.abs(ours - theirs).max() <= 1
    assert (ours != theirs).mean() < 0.002


@pytest.mark.parametrize("name", ["edsr_baseline_lte", "swinir_lte_w8"])
def test_evaluation_is_lte_test_py(name):
    """LTE's test.py `eval_psnr` at div2k-6 with its cell clamp, and for SwinIR with `--window 8`:
    the same input, prediction and PSNR."""
    from liif_jax.evaluation import evaluator

    entry = manifest()[f"eval_{name}"]
    ref = arrays(f"eval_{name}")
    model = build_model(entry["model_spec"])
    params = state_dict.params_from_state_dict(model, official_sd(ref))
    got = evaluator.evaluate_one(
        model, params, ref["hr_u8"], None, 6, "div2k", window=entry["window"], scale_max=entry["scale_max"]
    )
    np.testing.assert_array_equal(got.lr, np.round(ref["lr"].transpose(1, 2, 0) * 255).astype(np.uint8))
    np.testing.assert_allclose(got.pred, ref["pred"].transpose(1, 2, 0), atol=1e-5, rtol=0)
    assert got.psnr == pytest.approx(float(ref["psnr"]), abs=1e-4)
    no_clamp = evaluator.evaluate_one(model, params, ref["hr_u8"], None, 6, "div2k", window=entry["window"])
    assert np.abs(no_clamp.pred - got.pred).max() > 1e-3  # the clamp is what makes it LTE's


def test_evaluate_cli_takes_lte_window_and_clamp(tmp_path, capsys):
    """`evaluate --window 8` with a SwinIR-LTE .pth: LTE's clamp by default, said in the header line;
    `--scale-max 0` turns it off and changes the PSNR; a window with a non-integer scale is refused."""
    from PIL import Image

    from liif_jax import evaluate

    Image.fromarray(arrays("eval_swinir_lte_w8")["hr_u8"]).save(tmp_path / "img.png")
    base = ["--model", str(DATA / "swinir_lte_w4.pth"), "--hr-dir", str(tmp_path), "--window", "8"]
    assert evaluate.main([*base, "--scale", "6", "--json", str(tmp_path / "a.json")]) == 0
    assert "cell clamped above x4, window 8" in capsys.readouterr().out
    assert evaluate.main([*base, "--scale", "6", "--scale-max", "0", "--json", str(tmp_path / "b.json")]) == 0
    assert "cell clamped" not in capsys.readouterr().out
    psnr = lambda f: json.loads((tmp_path / f).read_text())["mean_psnr"]
    assert psnr("a.json") != psnr("b.json")
    assert evaluate.main([*base, "--scale", "2.5", "--protocol", "plain"]) == 1
    assert "--window needs integer scales" in capsys.readouterr().err


@pytest.mark.parametrize("out_hw", [(100, 130), (144, 187)], ids=["x2.5", "x3.6"])
def test_tiled_lte_rendering_is_the_whole_images(out_hw):
    """EDSR-baseline-LTE tiles like LIIF: tiles of 8 input pixels (with the encoder's halo and the
    latents the ensemble and the bilinear sample of the input read) render the whole-image output;
    SwinIR is encoded whole whatever the tile (its padded map kept)."""
    from liif_jax.render import render

    inp = np.random.default_rng(0).uniform(-1, 1, (1, 40, 52, 3)).astype(np.float32)
    model, params, _ = load("edsr_baseline_lte")
    assert render.plan(model, inp.shape[1:3], out_hw, 8).n_tiles > 4
    whole = render.render(model, params, inp, out_hw, batch_queries=512, tile=0)
    tiled = render.render(model, params, inp, out_hw, batch_queries=512, tile=8)
    np.testing.assert_allclose(tiled, whole, atol=1e-6, rtol=0)
    model, params, _ = load("swinir_lte_w4")
    assert render.plan(model, inp.shape[1:3], out_hw, 8).n_tiles == 1
    q = out_hw[0] * out_hw[1]  # the render equals one forward pass at every pixel centre
    full = model.apply(params, jnp.asarray(inp), make_coord(out_hw)[None], make_cell(out_hw, q)[None])
    np.testing.assert_allclose(
        render.render(model, params, inp, out_hw, batch_queries=512, tile=8)[0],
        np.asarray(full).reshape(*out_hw, 3),
        atol=ATOL,
        rtol=0,
    )  # jitted vs eager: 8e-6


def test_lte_queries_take_the_xla_path_and_swinir_liif_the_fused_kernel():
    """The fused query kernel computes LIIF's decoder (a gathered latent row plus per-query
    coordinate and cell terms); LTE's first layer takes coefficient x Fourier basis, which it does
    not, so LTE stays on the XLA path on every device and refuses the kernel by name. SwinIR-LIIF
    can take the kernel, and it renders the XLA path's pixels on SwinIR's padded map, with and
    without the cell clamp (Pallas interpret mode on a CPU)."""
    from liif_jax.render import render

    for name in ("edsr_baseline_lte", "swinir_lte_w4"):
        model = load(name)[0]
        assert render.resolve_decoder(model, None, "gpu") == "xla"
        with pytest.raises(ValueError, match="not LTE"):
            render.resolve_decoder(model, "pallas", "gpu")
    model, params, _ = load("swinir_liif")
    assert render.resolve_decoder(model, "pallas", "gpu", (9, 0)) == "pallas"
    inp = np.random.default_rng(0).uniform(-1, 1, (1, 21, 27, 3)).astype(np.float32)  # padded to 24 x 32
    for cell_factor in (1.0, 1.5):
        xla, fused = (
            render.render(model, params, inp, (50, 61), 256, tile=0, decoder=d, cell_factor=cell_factor)
            for d in ("xla", "pallas")
        )
        np.testing.assert_allclose(fused, xla, atol=1e-5, rtol=0)
