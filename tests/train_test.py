"""Training: the official step, data parallelism, exact resume, and clear failures."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest
from PIL import Image

from liif_jax.configs.common import base_config, downsampled, liif_spec
from liif_jax.formats import checkpoints, state_dict
from liif_jax.models import build_model
from liif_jax.training import train_state, trainer

import reference

REPO = pathlib.Path(__file__).resolve().parents[1]


def tiny_config(**overrides):
    """A model and batch small enough for CPU tests, on the built-in sample photographs."""
    c = base_config(
        liif_spec("edsr-baseline", {"n_resblocks": 1, "n_feats": 8}, hidden_list=(16,)),
        {"name": "samples", "args": {"split": "train"}},
        {"name": "samples", "args": {"split": "val", "repeat": 2}},
        train_wrapper=downsampled(inp_size=16, sample_q=64),
        val_wrapper=downsampled(inp_size=16, sample_q=64, augment=False),
        batch_size=4,
        epochs=100,
        milestones=(50,),
    )
    c.num_steps, c.log_every_steps, c.eval_every_steps, c.checkpoint_every_steps = 12, 2, 6, 4
    c.num_workers = 0
    c.update_from_flattened_dict(overrides)
    return c


def test_one_step_matches_the_official_loss_gradients_and_adam_update():
    model, params, ref = reference.load("train_step_edsr_baseline_liif")
    batch = {"inp": reference.nhwc(ref["inp"]), "coord": ref["coord"], "cell": ref["cell"], "gt": ref["gt"]}
    loss, grads = jax.value_and_grad(lambda p: trainer.l1_loss(model, p, batch))(params)
    np.testing.assert_allclose(float(loss), float(ref["loss"]), rtol=1e-5)
    want_grads = state_dict.params_from_state_dict(model, reference.state_dict(ref, "grad/"))
    jax.tree.map(
        lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * np.abs(w).max()), grads, want_grads
    )

    tx = trainer.make_optimizer(tiny_config(**{"optimizer.lr": 1e-4}), steps_per_epoch=1000)
    after = state_dict.params_from_state_dict(model, reference.state_dict(ref, "after/"))
    diff = lambda a, b: jax.tree.map(lambda x, y: np.asarray(x, np.float64) - np.asarray(y, np.float64), a, b)
    # The optimizer alone, on the official gradients: Adam's first step moves each weight by
    # ~lr * g / (|g| + eps), so compare the update itself, to 1e-4 relative plus the float32
    # rounding of the stored new weights.
    updates, _ = tx.update(want_grads, tx.init(params), params)
    for u, w, a in zip(jax.tree.leaves(updates), jax.tree.leaves(diff(after, params)), jax.tree.leaves(after)):
        assert np.all(np.abs(np.asarray(u) - w) <= 1e-4 * np.abs(w) + np.spacing(np.abs(np.asarray(a))))
    # The whole jit-able step. Weights whose gradient is near eps (1e-8) amplify float32 rounding
    # of the gradient, so the new weights are compared at relative 1e-4.
    state = trainer.TrainState.create(model, tx, params)
    new, step_loss = trainer.train_step(model, tx, state, batch)
    assert float(step_loss) == float(loss)
    jax.tree.map(lambda a, w: np.testing.assert_allclose(a, w, rtol=1e-4, atol=1e-7), new.params, after)
    assert float(trainer.l1_loss(model, new.params, batch)) == pytest.approx(float(ref["loss_after"]), rel=1e-5)


def test_schedule_is_the_official_multistep_lr():
    sched = train_state.lr_schedule(1e-4, [200, 400, 600, 800], 0.5, steps_per_epoch=1000)
    assert float(sched(0)) == pytest.approx(1e-4)
    assert float(sched(199_999)) == pytest.approx(1e-4)  # last step of epoch 200
    assert float(sched(200_000)) == pytest.approx(5e-5)  # first step of epoch 201
    assert float(sched(999_999)) == pytest.approx(6.25e-6)


SHARDED = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_default_matmul_precision", "highest")
    assert jax.device_count() == 8
    from liif_jax.training import trainer
    from liif_jax.models import build_model
    from liif_jax.configs.common import liif_spec
    import ml_collections
    model = build_model(liif_spec("edsr-baseline", {"n_resblocks": 1, "n_feats": 8}, hidden_list=(16,)))
    cfg = ml_collections.ConfigDict({"optimizer": {"name": "adam", "lr": 1e-3, "milestones": [], "gamma": 0.5}})
    tx = trainer.make_optimizer(cfg, 10)
    params = jax.tree.map(np.asarray, model.init(jax.random.key(0), 12))  # host copies: the step donates its input
    rng = np.random.default_rng(0)
    batch = {"inp": rng.uniform(-1, 1, (16, 12, 12, 3)).astype(np.float32),
             "coord": rng.uniform(-1, 1, (16, 32, 2)).astype(np.float32),
             "cell": np.full((16, 32, 2), 0.05, np.float32),
             "gt": rng.uniform(-1, 1, (16, 32, 3)).astype(np.float32)}
    def run(devices):
        mesh = jax.make_mesh((len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)
        steps = trainer.compile_steps(model, tx, mesh)
        state = jax.device_put(trainer.TrainState.create(model, tx, params), steps.replicated)
        for _ in range(2):
            state, loss = steps.train(state, trainer.to_global(batch, steps.batch))
        return state, float(loss)
    many, loss8 = run(jax.devices())
    one, loss1 = run(jax.devices()[:1])
    assert len(many.params["imnet"]["layers_0"]["kernel"].sharding.device_set) == 8
    np.testing.assert_allclose(loss8, loss1, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6), many.params, one.params)
    print("SHARDED_OK")
    """
)


def test_sharded_step_on_8_devices_equals_single_device_step():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=300)
    assert "SHARDED_OK" in out.stdout, out.stderr[-3000:]


def _losses(workdir: pathlib.Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def test_training_writes_checkpoints_metrics_and_config(tmp_path, capsys):
    result = trainer.train_and_evaluate(tiny_config(), tmp_path)
    assert np.isfinite(result["loss"]) and "val_psnr" in result
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())[-1] == 12
    assert [s for s, _ in _losses(tmp_path)] == [2, 4, 6, 8, 10, 12]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "val_psnr" in r] == [6, 12]
    assert json.loads((tmp_path / "config.json").read_text())["model"]["name"] == "liif"
    assert any((tmp_path / "tensorboard").iterdir())
    with Image.open(tmp_path / "curves.png") as curves:  # loss and validation PSNR, side by side
        assert curves.format == "PNG" and curves.size == (900, 350)
    told = [line for line in capsys.readouterr().out.splitlines() if "curves.png" in line]
    assert len(told) == 1 and f"tensorboard --logdir {tmp_path / 'tensorboard'}" in told[0]  # said once


CLI = [sys.executable, "-m", "liif_jax.train", "--config", "quickstart"]
TINY_FLAGS = [
    "--config.model.args.encoder_spec.args.n_resblocks=1",
    "--config.model.args.encoder_spec.args.n_feats=8",
    "--config.model.args.imnet_spec.args.hidden_list=(128, 128)",
    "--config.init=",
    "--config.data.train.batch_size=4",
    "--config.data.val.batch_size=4",
    "--config.data.train.wrapper.args.inp_size=16",
    "--config.data.train.wrapper.args.sample_q=64",
    "--config.data.val.wrapper.args.inp_size=16",
    "--config.data.val.wrapper.args.sample_q=64",
    "--config.num_steps=24",
    "--config.log_every_steps=2",
    "--config.checkpoint_every_steps=4",
    "--config.eval_every_steps=1000",
    "--config.optimizer.milestones=(8, 16)",
    "--config.final_eval.scales=(2,)",
    "--config.final_eval.compare_with=",
]


def test_killed_run_resumes_with_the_losses_of_an_uninterrupted_run(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(
        CLI + ["--workdir", str(straight)] + TINY_FLAGS, env=env, check=True, capture_output=True, timeout=300
    )

    proc = subprocess.Popen(
        CLI + ["--workdir", str(killed)] + TINY_FLAGS, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 240
    while not (killed / "checkpoints" / "8" / "commit_success.txt").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    steps_done = max(s for s, _ in _losses(killed))
    assert steps_done < 24, "the run finished before it could be killed; make it longer"

    out = subprocess.run(
        CLI + ["--workdir", str(killed)] + TINY_FLAGS, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resumed from" in out.stdout
    assert "killed (EDSR-baseline 1x8, MLP 128x2): " in out.stdout  # the run, then its architecture
    assert _losses(killed) == _losses(straight)


def test_validation_and_checkpoints_default_to_once_per_epoch(tmp_path):
    """The official epoch_val: 1 and epoch-last: 6 training photos in batches of 4 = 2 steps/epoch."""
    cfg = tiny_config(num_steps=5, log_every_steps=100)
    cfg.eval_every_steps = cfg.checkpoint_every_steps = None
    trainer.train_and_evaluate(cfg, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "val_psnr" in r] == [2, 4, 5]  # and the last step
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [2, 4, 5]


def test_a_workdir_of_another_model_is_refused(tmp_path):
    trainer.train_and_evaluate(tiny_config(num_steps=2), tmp_path)
    with pytest.raises(trainer.TrainingError, match="holds a run of another model"):
        trainer.train_and_evaluate(
            tiny_config(**{"num_steps": 2, "model.args.imnet_spec.args.hidden_list": (32,)}), tmp_path
        )


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = tiny_config(**{"num_steps": 12, "checkpoint_every_steps": 2, "log_every_steps": 1})
    trainer.train_and_evaluate(tiny_config(num_steps=2, checkpoint_every_steps=2), tmp_path)
    cfg.optimizer.lr = 1e36  # blows the weights up within a couple of steps
    with pytest.raises(trainer.TrainingError, match=r"loss is (nan|inf).*last good checkpoint is step \d+"):
        trainer.train_and_evaluate(cfg, tmp_path)
    from liif_jax.formats.checkpoints import load_model

    _, params = load_model(tmp_path)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(params))


def test_missing_data_folder_is_named(tmp_path):
    cfg = tiny_config()
    cfg.data.train.dataset = {"name": "image-folder", "args": {"root_path": str(tmp_path / "DIV2K_train_HR")}}
    with pytest.raises(ValueError, match="DIV2K_train_HR"):
        trainer.train_and_evaluate(cfg, tmp_path / "wd")


@pytest.mark.parametrize(
    "config, key, level, keys",
    [
        (
            CLI[-2:],
            "num_stepz=3",
            "config has no key 'num_stepz' (did you mean 'num_steps'?)",
            "checkpoint_every_steps, compute_dtype",
        ),
        (
            [],
            "data.train.dataset.args.root_path=/photos",
            "config.data.train.dataset.args has no key 'root_path'",
            "repeat, split",
        ),
        ([], "final_eval.scales.x=3", "config.final_eval.scales is a tuple, not a group of keys", ""),
    ],
    ids=["--config", "default config, nested", "default config, in a tuple"],
)
def test_unknown_config_key_is_a_one_line_error(tmp_path, config, key, level, keys):
    """The key, the level of the config it is missing from, and the keys there (the quickstart
    has no root_path: its photographs are built in), with or without --config."""
    cmd = [sys.executable, "-m", "liif_jax.train", *config, "--workdir", str(tmp_path), f"--config.{key}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr[-3000:]
    assert out.stderr.startswith(f"error: --config.{key.partition('=')[0]}: {level}")
    assert keys in out.stderr and not tmp_path.joinpath("config.json").exists()


TINY_OFFICIAL_YAML = """\
train_dataset:
  dataset: {name: samples, args: {split: train}}
  wrapper: {name: sr-implicit-downsampled, args: {inp_size: 16, scale_max: 4, augment: true, sample_q: 64}}
  batch_size: 4
val_dataset:
  dataset: {name: samples, args: {split: val, repeat: 2}}
  wrapper: {name: sr-implicit-downsampled, args: {inp_size: 16, scale_max: 4, sample_q: 64}}
  batch_size: 4
data_norm:
  inp: {sub: [0.5], div: [0.5]}
  gt: {sub: [0.5], div: [0.5]}
model:
  name: liif
  args:
    encoder_spec: {name: edsr-baseline, args: {n_resblocks: 1, n_feats: 8, no_upsampling: true}}
    imnet_spec: {name: mlp, args: {out_dim: 3, hidden_list: [16]}}
optimizer: {name: adam, args: {lr: 1.e-4}}
epoch_max: 2
multi_step_lr: {milestones: [1], gamma: 0.5}
epoch_val: 1
epoch_save: 100
"""


def test_cli_trains_from_an_official_yaml_config(tmp_path):
    """`--config train_x.yaml`, as the official `train_liif.py --config`, with --config.KEY overrides."""
    (tmp_path / "tiny.yaml").write_text(TINY_OFFICIAL_YAML)
    cmd = [
        sys.executable,
        "-m",
        "liif_jax.train",
        "--workdir",
        str(tmp_path / "w"),
        "--config",
        str(tmp_path / "tiny.yaml"),
        "--config.num_workers=0",
        "--config.log_every_steps=1",
    ]
    out = subprocess.run(cmd, env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 steps/epoch, steps 0 -> 4" in out.stdout and "step 4/4 (epoch 2)" in out.stdout
    saved = json.loads((tmp_path / "w" / "config.json").read_text())
    assert saved["optimizer"] == {"name": "adam", "lr": 1e-4, "epochs": 2, "milestones": [1], "gamma": 0.5}


def test_init_starts_from_another_models_params_with_a_new_optimizer(tmp_path, capsys):
    """`--init` (config.init): another model's params are the new run's step 0; with a learning rate
    of 0 they come out unchanged, and the run reads its own data stream from the start."""
    first = tmp_path / "first"
    spec = tiny_config().model.to_dict()
    model = build_model(spec)
    checkpoints.save_model(first, spec, model.init(jax.random.key(7), 16))
    second = tmp_path / "second"
    c = tiny_config(**{"num_steps": 2, "init": str(first), "optimizer.lr": 0.0, "final_eval.scales": ()})
    trainer.train_and_evaluate(c, second)
    assert f"starting from {first} with a new optimizer" in capsys.readouterr().out
    _, start = checkpoints.load_model(first)
    _, end = checkpoints.load_model(second)
    jax.tree.map(np.testing.assert_array_equal, end, start)
    restored = json.loads((second / "checkpoints" / "2" / "data_iter" / "process_0-of-1.json").read_text())
    assert restored == {"next_example": 8}  # its own data stream, from the start


def test_init_refuses_another_model_naming_the_difference_before_writing(tmp_path):
    c = tiny_config(init="pretrained:edsr-baseline-liif")
    with pytest.raises(trainer.TrainingError) as err:
        trainer.train_and_evaluate(c, tmp_path / "run")
    assert str(err.value) == (
        "--init pretrained:edsr-baseline-liif is another model than the config's: "
        "model.args.imnet_spec.args.hidden_list: config [16], init [256, 256, 256, 256]"
    )
    assert not (tmp_path / "run").exists()
    explicit = liif_spec("edsr-baseline", {"n_resblocks": 16, "n_feats": 64})  # the shipped model's defaults, set
    c = tiny_config(init="pretrained:edsr-baseline-liif")
    c.model = explicit
    assert trainer.init_params(c) is not None
    c.model = liif_spec("edsr-baseline", {"n_feats": 32})  # a field the init model leaves at its default (64)
    with pytest.raises(trainer.TrainingError, match=r"encoder_spec.args.n_feats: config 32, init its default$"):
        trainer.init_params(c)
    bigger = liif_spec("edsr-baseline", hidden_list=(256, 256, 256, 128))
    assert (
        trainer.spec_difference(json.loads(json.dumps(bigger)), json.loads(json.dumps(liif_spec("edsr-baseline"))))
        == "model.args.imnet_spec.args.hidden_list: config [256, 256, 256, 128], init [256, 256, 256, 256]"
    )
