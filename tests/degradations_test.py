"""Real-world degradations (Real-ESRGAN's second order, JPEG): each operation against an independent
computation (scipy, numpy, PIL on the same seeds), and degraded training batches as reproducible
as clean ones: the same under resume, worker processes and any process layout."""

import io
import json

import numpy as np
import pytest
from PIL import Image
from scipy import signal, stats

from liif_jax.data import datasets, pipeline, sources, wrappers
from liif_jax.data import degradations as dg
from liif_jax.data.imaging import resize_bicubic


def photo(side: int = 96) -> np.ndarray:
    return np.ascontiguousarray(sources.sample_images("val")[0][100 : 100 + side, 150 : 150 + side])


def test_isotropic_gaussian_is_the_separable_gaussian_window():
    window = signal.windows.gaussian(13, std=1.7)
    expected = np.outer(window, window)
    np.testing.assert_allclose(dg.gaussian_kernel(13, 1.7, 1.7, 0.0), expected / expected.sum(), rtol=1e-10)


@pytest.mark.parametrize("theta", [0.0, 0.6, -2.0])
def test_anisotropic_kernels_follow_the_rotated_covariance(theta):
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    cov = rot @ np.diag([2.5**2, 0.8**2]) @ rot.T
    r = np.arange(15) - 7.0
    xy = np.stack(np.meshgrid(r, r), axis=-1)  # (row, col) -> (x = col offset, y = row offset)
    log_pdf = stats.multivariate_normal(mean=[0, 0], cov=cov).logpdf(xy)
    quadratic = -2 * (log_pdf - log_pdf[7, 7])  # x^T Sigma^-1 x
    expect = lambda k: k / k.sum()
    np.testing.assert_allclose(dg.gaussian_kernel(15, 2.5, 0.8, theta), expect(np.exp(log_pdf)), rtol=1e-9)
    np.testing.assert_allclose(
        dg.generalized_kernel(15, 2.5, 0.8, theta, 1.7), expect(np.exp(-0.5 * quadratic**1.7)), rtol=1e-9
    )
    np.testing.assert_allclose(dg.plateau_kernel(15, 2.5, 0.8, theta, 1.3), expect(1 / (1 + quadratic**1.3)), rtol=1e-9)
    np.testing.assert_allclose(dg.generalized_kernel(15, 2.5, 0.8, theta, 1.0), dg.gaussian_kernel(15, 2.5, 0.8, theta))


def test_sinc_kernel_is_a_circular_low_pass_at_its_cutoff():
    response = np.abs(np.fft.fftshift(np.fft.fft2(dg.sinc_kernel(21, np.pi / 3), s=(128, 128))))
    f = np.fft.fftshift(np.fft.fftfreq(128)) * 2 * np.pi  # radians per pixel
    radius = np.hypot(*np.meshgrid(f, f))
    assert np.abs(response[radius < 0.6 * np.pi / 3] - 1).max() < 0.15  # passes below the cutoff
    assert response[radius > 1.6 * np.pi / 3].max() < 0.1  # stops well above it
    assert np.allclose(response, response.T, atol=1e-9)  # isotropic: symmetric in x and y


def test_filter2d_is_correlation_with_reflect_101_borders():
    img = photo(24).astype(np.float32) / 255
    kernel = dg.gaussian_kernel(7, 2.0, 0.7, 0.4)
    padded = np.pad(img, ((3, 3), (3, 3), (0, 0)), mode="reflect")  # numpy's reflect: the edge pixel once
    expected = np.stack([signal.correlate2d(padded[:, :, c], kernel, mode="valid") for c in range(3)], axis=-1)
    np.testing.assert_allclose(dg.filter2d(img, kernel), expected, atol=1e-6)


def test_resize_in_float_matches_block_means_and_pil_on_uint8():
    img = photo(48)
    as_float = img.astype(np.float32) / 255
    blocks = as_float.reshape(24, 2, 24, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(dg.resize(as_float, (24, 24), "area"), blocks, atol=1e-6)
    bicubic = dg.resize(as_float, (30, 37), "bicubic")
    assert bicubic.shape == (30, 37, 3)
    assert np.abs(bicubic * 255 - resize_bicubic(img, (30, 37))).max() <= 1.0  # PIL on uint8 rounds and clips


def test_gaussian_noise_draws_the_generators_normals_in_colour_or_grey():
    img = np.full((16, 16, 3), 0.5, np.float32)
    colour = dg.gaussian_noise(img, 10.0, False, np.random.default_rng(4))
    np.testing.assert_allclose(
        colour - img, np.random.default_rng(4).standard_normal((16, 16, 3)) * 10 / 255, atol=1e-6
    )
    grey = dg.gaussian_noise(img, 10.0, True, np.random.default_rng(4))
    assert np.array_equal(grey[..., 0], grey[..., 2]) and not np.array_equal(colour[..., 0], colour[..., 2])


def test_poisson_noise_has_shot_noise_statistics():
    img = np.full((256, 256, 3), 0.4, np.float32)
    img[0, 0] = 0.0  # two grey levels: 2 Poisson levels per unit
    noise = dg.poisson_noise(img, 1.0, False, np.random.default_rng(0)) - img
    base = np.round(0.4 * 255) / 255
    assert abs(noise.mean()) < 0.01 and noise.var() == pytest.approx(base / 2, rel=0.05)  # Var(P(lam) / L) = lam / L^2
    grey = dg.poisson_noise(img, 0.5, True, np.random.default_rng(0)) - img
    assert np.array_equal(grey[..., 0], grey[..., 1])


def test_jpeg_is_the_libjpeg_round_trip_and_loses_more_at_low_quality():
    img = photo(64)
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, format="JPEG", quality=40)
    expected = np.asarray(Image.open(buffer))
    np.testing.assert_array_equal(np.round(dg.jpeg(img.astype(np.float32) / 255, 40) * 255), expected)
    error = lambda q: np.abs(dg.jpeg(img / np.float32(255), q) * 255 - img).mean()
    assert error(95) < error(60) < error(30)


def test_second_order_degradation_is_a_function_of_its_generator_and_ends_at_the_lr_size():
    hr = photo(128)
    degrade = dg.SecondOrder()
    outs = [degrade(hr, (40, 37), np.random.default_rng(s)) for s in (0, 0, 1)]
    assert outs[0].shape == (40, 37, 3) and outs[0].dtype == np.uint8
    assert np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[0], outs[2])
    bicubic = resize_bicubic(hr, (40, 37))
    assert np.array_equal(dg.SecondOrder(clean_prob=1.0)(hr, (40, 37), np.random.default_rng(0)), bicubic)
    assert np.abs(outs[0].astype(float) - bicubic).mean() > 1  # degraded: not the bicubic input
    assert np.array_equal(dg.Jpeg(60)(hr, (40, 37), None), np.round(dg.jpeg(bicubic / np.float32(255), 60) * 255))
    drawn = [dg.Jpeg((30, 95), clean_prob=0.5)(hr, (40, 37), np.random.default_rng(s)) for s in range(8)]
    assert sum(np.array_equal(x, bicubic) for x in drawn) in range(1, 8)  # some inputs clean, some not


def test_named_degradations_and_config_specs():
    assert dg.named("jpeg:60") == (dg.Jpeg(60), 0) and dg.named("realesrgan:7") == (dg.SecondOrder(), 7)
    for bad in ("jpeg", "jpeg:0", "jpeg:abc", "blur:3"):
        with pytest.raises(ValueError, match="--degrade"):
            dg.named(bad)
    assert datasets.make_degradation({}) is None
    assert datasets.make_degradation({"name": "realesrgan", "args": {"clean_prob": 0.3}}) == dg.SecondOrder(
        clean_prob=0.3
    )
    with pytest.raises(ValueError, match="bad args"):
        datasets.make_degradation({"name": "realesrgan", "args": {"clean": 0.3}})


DEGRADED = wrappers.RandomScaleDownsample(16, 1, 4, augment=True, sample_q=64, degrade=dg.SecondOrder(clean_prob=0.3))


def degraded_iter(**kw):
    source = sources.ArraySource([photo(80), photo(72)[::-1].copy(), photo(96)], ["a", "b", "c"])
    return pipeline.make_train_dataset(source, DEGRADED, 4, 11, **{"shard_index": 0, "shard_count": 1, **kw})


def take(it, k):
    out = [next(it) for _ in range(k)]
    it.close()
    return out


def assert_same(a, b):
    for x, y in zip(a, b, strict=True):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_degraded_batches_resume_and_split_over_processes_and_workers_exactly():
    full = take(degraded_iter(), 5)
    first = degraded_iter()
    [next(first) for _ in range(2)]
    state = json.loads(json.dumps(first.get_state()))
    first.close()
    resumed = degraded_iter()
    resumed.set_state(state)
    assert_same(take(resumed, 3), full[2:])
    halves = [take(degraded_iter(shard_index=p, shard_count=2), 5) for p in range(2)]
    for step, batch in enumerate(full):
        for key in batch:
            np.testing.assert_array_equal(np.concatenate([halves[0][step][key], halves[1][step][key]]), batch[key])
    workers = degraded_iter(num_workers=2)
    workers.set_state(state)
    assert_same(take(workers, 3), full[2:])
