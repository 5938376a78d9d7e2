"""LTE's five training YAMLs convert, build, are our experiment configs, and train.

Copies of them (BSD-3, unchanged) are in tests/data/official_configs_lte/; see its README.
"""

import importlib
import json
import logging
import pathlib

import pytest

from liif_jax.configs import official
from liif_jax.data import datasets
from liif_jax.models import LIIF, LTE, MetaSR, build_model
from liif_jax.training import trainer

YAMLS = sorted((pathlib.Path(__file__).resolve().parent / "data" / "official_configs_lte").glob("train-*/*.yaml"))
# YAML -> (our config, model class, encoder, batch size, lr, milestones)
RUNS = {
    "train_edsr-baseline-lte": ("edsr-baseline-lte", LTE, "edsr-baseline", 16, 1e-4, (200, 400, 600, 800)),
    "train_rdn-lte": ("rdn-lte", LTE, "rdn", 16, 1e-4, (200, 400, 600, 800)),
    "train_swinir-lte": ("swinir-lte", LTE, "swinir", 32, 2e-4, (500, 800, 900, 950)),
    "train_swinir-liif": ("swinir-liif", LIIF, "swinir", 16, 1e-4, (200, 400, 600, 800)),
    "train_swinir-metasr": ("swinir-metasr", MetaSR, "swinir", 16, 1e-4, (200, 400, 600, 800)),
}


def as_json(x):
    return json.loads(json.dumps(x))


def wrapper_fields(spec) -> tuple:
    w = datasets.make_wrapper(spec.to_dict())
    return w.inp_size, w.scale_min, w.scale_max, w.augment, w.sample_q


def test_the_five_lte_training_yamls_are_here():
    assert sorted(p.stem for p in YAMLS) == sorted(RUNS)


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.stem)
def test_lte_yaml_converts_to_our_config_and_builds(path, caplog):
    """Each YAML, unchanged: its model (swinir-liif's misnamed `swinir` read as `liif`, with a
    warning), batch size, Adam lr and milestones of 1000 epochs; and it is the run of our Python
    config of the same name (whose model configs_test builds at full size)."""
    name, cls, encoder, batch, lr, milestones = RUNS[path.stem]
    with caplog.at_level(logging.WARNING):
        c = official.from_official_yaml(path)
    assert "does not exist; starting a new run" in caplog.text  # LTE's `resume:` of a first run
    assert ("read as the 'liif' model" in caplog.text) == (path.stem == "train_swinir-liif")
    model = build_model(c.model.to_dict())
    assert isinstance(model, cls) and c.model.args.encoder_spec.name == encoder
    assert (c.data.train.batch_size, c.optimizer.lr, c.optimizer.milestones, c.optimizer.epochs) == (
        batch,
        lr,
        milestones,
        1000,
    )
    ours = importlib.import_module("liif_jax.configs." + name.replace("-", "_")).get_config()
    mine = build_model(ours.model.to_dict())
    fields = lambda m: (
        type(m),
        m.encoder,
        m.imnet,
        *(getattr(m, k, None) for k in ("hidden_dim", "feat_unfold", "cell_decode")),
    )
    assert fields(mine) == fields(model)
    assert as_json(ours.optimizer.to_dict()) == as_json(c.optimizer.to_dict())
    for split in ("train", "val"):
        a, b = c.data[split], ours.data[split]
        assert a.batch_size == b.batch_size and wrapper_fields(a.wrapper) == wrapper_fields(b.wrapper)
        assert a.dataset.args.repeat == b.dataset.args.repeat


def test_a_converted_swinir_lte_yaml_trains(tmp_path, monkeypatch):
    """LTE's train_swinir-lte.yaml through the trainer, on tiny images where it looks for DIV2K
    (./load/div2k/...): a compact SwinIR and batch of 4 for a CPU test; stochastic depth on."""
    import numpy as np
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for folder in ("DIV2K_train_HR", "DIV2K_valid_HR"):
        (tmp_path / "load" / "div2k" / folder).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (192, 200, 3), np.uint8)).save(
                tmp_path / "load" / "div2k" / folder / f"{i}.png"
            )
    c = official.from_official_yaml(next(p for p in YAMLS if p.stem == "train_swinir-lte"))
    c.model.args.encoder_spec.args.update(embed_dim=12, depths=(2,), num_heads=(2,), window_size=8)
    c.model.args.hidden_dim, c.model.args.imnet_spec.args.hidden_list = 16, (16,)
    c.data.train.batch_size = c.data.val.batch_size = 4
    c.data.train.wrapper.args.sample_q = c.data.val.wrapper.args.sample_q = 64
    c.data.val.dataset.args.repeat = 1
    c.num_steps, c.num_workers, c.log_every_steps = 3, 0, 1
    assert build_model(c.model.to_dict()).encoder.drop_path_rate == pytest.approx(0.1)
    last = trainer.train_and_evaluate(c, tmp_path / "run")
    assert np.isfinite(last["loss"]) and np.isfinite(last["val_psnr"])
    assert (tmp_path / "run" / "checkpoints" / "3").is_dir()
