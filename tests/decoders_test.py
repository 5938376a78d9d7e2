"""The decoder a render uses: XLA's by default, the fused kernel only where it can run, and a kernel
that fails to compile or computes NaN falls back to XLA's with one warning and the same image."""

import logging

import jax
import numpy as np
import pytest
from PIL import Image

from liif_jax import demo
from liif_jax.configs.common import liif_spec
from liif_jax.formats.checkpoints import save_model
from liif_jax.kernels import fused_query
from liif_jax.models import build_model
from liif_jax.render import decoders, render

SHARED_MEMORY = (
    "RESOURCE_EXHAUSTED: Shared memory size limit exceeded: requested 139264, available: 101376 (ensemble_mlp)"
)
DEVICE_MEMORY = "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 31.99GiB."
OLD_GPU = "INTERNAL: Triton support is only enabled for Ampere GPUs (compute capability 8.0) and up, but got 7.5"


@pytest.fixture
def fresh(monkeypatch):
    """A process that has not yet checked or given up on the kernel, with no jit cache to hide a patch."""
    monkeypatch.delenv(decoders.ENV, raising=False)
    monkeypatch.setattr(decoders, "_checked", set())
    monkeypatch.setattr(decoders, "_failed", {})
    jax.clear_caches()
    yield
    jax.clear_caches()


def tiny():
    model = build_model(liif_spec("edsr-baseline", {"n_resblocks": 1, "n_feats": 8}, hidden_list=(16, 16)))
    return model, jax.jit(model.init, static_argnums=1)(jax.random.key(0), 8)


def test_the_kernel_is_refused_below_compute_capability_8_in_one_line(fresh):
    model, _ = tiny()
    for cc in [(7, 5), (7, 0)]:  # T4, V100
        assert render.resolve_decoder(model, None, "gpu", cc) == "xla"
        with pytest.raises(ValueError, match=r"compute capability >= 8\.0.*use decoder 'xla'") as err:
            render.resolve_decoder(model, "pallas", "gpu", cc)
        assert "\n" not in str(err.value)
    assert render.resolve_decoder(model, "pallas", "gpu", (8, 9)) == "pallas"


def test_an_environment_variable_forces_either_decoder_and_a_flag_wins(fresh, monkeypatch):
    model, _ = tiny()
    monkeypatch.setenv(decoders.ENV, "pallas")
    assert render.resolve_decoder(model, None, "gpu", (9, 0)) == "pallas"
    assert render.resolve_decoder(model, None, "cpu") == "pallas"  # interpret mode
    assert render.resolve_decoder(model, "xla", "gpu", (9, 0)) == "xla"
    with pytest.raises(ValueError, match="compute capability"):
        render.resolve_decoder(model, None, "gpu", (7, 5))
    monkeypatch.setenv(decoders.ENV, "xla")
    monkeypatch.setitem(decoders.KERNEL_FASTER, (9, 0), None)  # even where a measurement would pick the kernel
    assert render.resolve_decoder(model, None, "gpu", (9, 0)) == "xla"
    monkeypatch.setenv(decoders.ENV, "cuda")
    with pytest.raises(ValueError, match="LIIF_JAX_DECODER must be 'xla' or 'pallas'"):
        render.resolve_decoder(model, None, "gpu", (9, 0))


def test_a_measured_generation_makes_the_kernel_its_default(fresh, monkeypatch):
    model, _ = tiny()
    monkeypatch.setitem(decoders.KERNEL_FASTER, (9, 0), decoders.Measurement("H100", 20.0, 40.0, 1e-4, "x.md"))
    assert render.resolve_decoder(model, None, "gpu", (9, 0)) == "pallas"
    assert render.resolve_decoder(model, None, "gpu", (8, 9)) == "xla"


def test_only_device_memory_errors_mean_a_smaller_tile():
    assert decoders.device_memory_error(RuntimeError(DEVICE_MEMORY))
    assert not decoders.device_memory_error(RuntimeError(SHARED_MEMORY))
    assert not decoders.device_memory_error(RuntimeError(OLD_GPU))


def test_the_check_catches_nan_and_error_beyond_the_tolerance():
    xla = np.linspace(0, 1, 30, dtype=np.float32).reshape(1, 10, 3)
    assert decoders.mismatch(xla + 1e-6, xla, decoders.TOLERANCE["highest"]) is None
    assert "relative error" in decoders.mismatch(xla + 1e-2, xla, decoders.TOLERANCE["tf32"])
    assert decoders.mismatch(np.where(xla > 0.5, np.nan, xla), xla, 1.0) == "non-finite output"
    assert decoders.tolerance(None, "highest") == 1e-5 and decoders.tolerance("bfloat16", None) == 3e-2
    assert list(decoders.sample(5)) == [0, 1, 2, 3, 4] and decoders.sample(10_000)[[0, -1]].tolist() == [0, 9999]


def broken(kind):
    """The kernel's pallas_call replaced by one that fails as `kind` says."""
    real = fused_query._pallas

    def fail(*args, **kwargs):
        if kind == "nan":
            return real(*args, **kwargs) * np.float32(np.nan)
        raise jax.errors.JaxRuntimeError(SHARED_MEMORY if kind == "shared_memory" else OLD_GPU)

    return fail


@pytest.mark.parametrize("kind", ["nan", "compile_error", "shared_memory"])
def test_a_failing_kernel_falls_back_once_with_the_xla_png(fresh, monkeypatch, tmp_path, caplog, kind):
    model, params = tiny()
    spec = liif_spec("edsr-baseline", {"n_resblocks": 1, "n_feats": 8}, hidden_list=(16, 16))
    ckpt = save_model(tmp_path / "ckpt", spec, params)
    img = np.random.default_rng(0).integers(0, 256, (13, 17, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "in.png")
    run = lambda decoder, *tile: demo.main(
        ["--input", str(tmp_path / "in.png"), "--model", str(ckpt), "--scale", "2.5", "--decoder", decoder]
        + ["--output", str(tmp_path / f"{decoder}{''.join(tile)}.png"), *tile]
    )
    assert run("xla", "--tile", "0") == 0
    monkeypatch.setattr(fused_query, "_pallas", broken(kind))
    with caplog.at_level(logging.WARNING):
        assert run("pallas") == 0  # tile by memory: a kernel the compiler refuses is not a tile too large
        assert run("pallas", "--tile", "8") == 0  # remembered: the kernel is not tried again
    assert [r.name for r in caplog.records] == [decoders.__name__], [r.getMessage() for r in caplog.records]
    assert "--decoder xla" in caplog.records[0].getMessage()
    assert ("non-finite" if kind == "nan" else "JaxRuntimeError") in caplog.records[0].getMessage()
    assert (tmp_path / "pallas.png").read_bytes() == (tmp_path / "xla--tile0.png").read_bytes()


def test_a_kernel_that_agrees_passes_its_check_silently(fresh, caplog):
    model, params = tiny()
    inp = np.random.default_rng(1).uniform(-1, 1, (1, 11, 9, 3)).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger=decoders.__name__):
        fused = render.render(model, params, inp, (23, 20), tile=0, decoder="pallas")
    assert not caplog.records and len(decoders._checked) == 1
    np.testing.assert_allclose(fused, render.render(model, params, inp, (23, 20), tile=0, decoder="xla"), atol=1e-5)
