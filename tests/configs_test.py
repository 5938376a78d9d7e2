"""Every experiment config loads, builds its model, and names the official recipe's fields."""

import json
import pathlib
import re

import jax
import numpy as np
import pytest

from liif_jax import configs
from liif_jax.configs import official
from liif_jax.data import datasets
from liif_jax.models import build_model

from conftest import REPO

CONFIGS = [name for name in configs.names() if name != "own_photos"]  # own_photos takes a folder: own_photos_test
SPLITS = REPO / "liif_jax" / "configs" / "splits"


def test_there_is_a_config_per_official_run():
    names = set(CONFIGS)
    assert {
        "edsr_baseline_liif",
        "rdn_liif",
        "edsr_baseline_liif_c",
        "edsr_baseline_liif_u",
        "edsr_baseline_liif_e",
        "edsr_baseline_liif_d",
        "edsr_baseline_liif_x2",
        "edsr_baseline_liif_x3",
        "edsr_baseline_liif_x4",
        "edsr_baseline_metasr",
        "celebAHQ_32_256_liif",
        "celebAHQ_64_128_liif",
        "quickstart",
    } <= names


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_its_model_and_data_specs(name):
    c = configs.get(name)
    for key in ("num_steps", "checkpoint_every_steps", "log_every_steps", "eval_every_steps", "seed"):
        assert key in c
    model = build_model(c.model.to_dict())
    assert jax.eval_shape(model.init, jax.random.key(0))["imnet"]
    datasets.make_wrapper(c.data.train.wrapper.to_dict())
    assert c.data.train.dataset.name in datasets.SOURCES
    json.dumps(c.to_dict())  # what the workdir's config.json holds


def test_ablation_configs_differ_from_the_base_in_one_switch():
    base = {name: configs.get(name) for name in CONFIGS}
    args = lambda n: base[n].model.args
    assert args("edsr_baseline_liif_c").cell_decode is False and args("edsr_baseline_liif").cell_decode is True
    assert args("edsr_baseline_liif_u").feat_unfold is False
    assert args("edsr_baseline_liif_e").local_ensemble is False
    assert tuple(args("edsr_baseline_liif_d").imnet_spec.args.hidden_list) == (256, 256)
    assert base["edsr_baseline_liif_x3"].data.train.wrapper.args.scale_max == 3
    assert base["edsr_baseline_liif"].optimizer.milestones == (200, 400, 600, 800)


def test_mate_nature_split_holds_out_the_last_three_photos(tmp_path):
    """The split file itself; the photos are not needed: tiny images with their names stand in."""
    from PIL import Image

    c = configs.get("mate_nature_edsr_baseline_liif")
    split = json.loads(pathlib.Path(c.data.train.dataset.args.split_file).read_text())
    names = sorted(split["train"] + split["test"])
    assert len(names) == len(set(names)) == 12
    assert split["test"] == names[-3:] == ["TwoWings.jpg", "Wood.jpg", "YellowFlower.jpg"]
    for name in names:
        Image.new("RGB", (8, 8)).save(tmp_path / name, format="JPEG")
    c.photos_dir = str(tmp_path)  # one override moves every source

    def source(dataset):
        return datasets.make_source({"name": dataset.name, "args": dataset.args.to_dict()})

    train, val, held = source(c.data.train.dataset), source(c.data.val.dataset), source(c.final_eval.dataset)
    stem = lambda src: [pathlib.Path(n).name for n in src.names]
    assert len(train) == 9 * 200 and stem(train)[:9] == split["train"]
    assert stem(val)[:3] == stem(held) == split["test"]


def test_mate_nature_config_names_the_package_when_the_photos_are_missing(tmp_path):
    c = configs.get("mate_nature_edsr_baseline_liif")
    c.photos_dir = str(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="mate-backgrounds.*--config.photos_dir=FOLDER"):
        datasets.make_source({"name": c.data.train.dataset.name, "args": c.data.train.dataset.args.to_dict()})


def test_celebahq_config_reads_the_official_data_layout(tmp_path, monkeypatch):
    """`load/celebAHQ/{64,128}/` and `split.json` as the official README prepares them: training
    batches of whole 64 px faces with 64..128 px targets, validation on the fixed x2 pairs."""
    from PIL import Image

    from liif_jax.training import inputs

    root = tmp_path / "load" / "celebAHQ"
    names = [f"{k:05d}.jpg" for k in range(6)]
    rng = np.random.default_rng(0)
    for size in (64, 128):
        (root / str(size)).mkdir(parents=True)
        for name in names:
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / str(size) / name)
    (root / "split.json").write_text(json.dumps({"train": names[:4], "val": names[4:]}))
    monkeypatch.chdir(tmp_path)
    c = configs.get("celebAHQ_64_128_liif")
    c.num_workers = 0
    it, steps_per_epoch = inputs.train_iterator(c, cache_root=tmp_path / "cache")
    batch = next(it)
    assert steps_per_epoch == 1 and batch["inp"].shape == (16, 64, 64, 3) and batch["coord"].shape == (16, 1024, 2)
    assert set(np.rint(2 / batch["cell"][:, 0, 0]).astype(int)) <= {64, 85, 107, 128}  # round(64 + 64 i / 3)
    val = next(iter(inputs.val_dataset(c, cache_root=tmp_path / "cache")))
    assert val["inp"].shape == (16, 64, 64, 3) and val["weight"].tolist() == [1] * 2 + [0] * 14  # padded batch
    assert np.allclose(val["cell"], 2 / 128) and list(val["scale"]) == [2] * 16


OFFICIAL_EDSR_BASELINE_LIIF = """\
train_dataset:
  dataset:
    name: image-folder
    args:
      root_path: ./load/div2k/DIV2K_train_HR
      repeat: 20
      cache: in_memory
  wrapper:
    name: sr-implicit-downsampled
    args:
      inp_size: 48
      scale_max: 4
      augment: true
      sample_q: 2304
  batch_size: 16

val_dataset:
  dataset:
    name: image-folder
    args:
      root_path: ./load/div2k/DIV2K_valid_HR
      first_k: 10
      repeat: 160
      cache: in_memory
  wrapper:
    name: sr-implicit-downsampled
    args:
      inp_size: 48
      scale_max: 4
      sample_q: 2304
  batch_size: 16

data_norm:
  inp: {sub: [0.5], div: [0.5]}
  gt: {sub: [0.5], div: [0.5]}

model:
  name: liif
  args:
    encoder_spec:
      name: edsr-baseline
      args:
        no_upsampling: true
    imnet_spec:
      name: mlp
      args:
        out_dim: 3
        hidden_list: [256, 256, 256, 256]

optimizer:
  name: adam
  args:
    lr: 1.e-4
epoch_max: 1000
multi_step_lr:
  milestones: [200, 400, 600, 800]
  gamma: 0.5

epoch_val: 1
epoch_save: 100
"""


def wrapper_fields(spec) -> tuple:
    w = datasets.make_wrapper(spec.to_dict())
    return w.inp_size, w.scale_min, w.scale_max, w.augment, w.sample_q


def test_official_yaml_is_the_same_run_as_our_config(tmp_path):
    """The official train_edsr-baseline-liif.yaml, converted, is liif_jax/configs/edsr_baseline_liif.py."""
    path = tmp_path / "train_edsr-baseline-liif.yaml"
    path.write_text(OFFICIAL_EDSR_BASELINE_LIIF)
    ours, theirs = configs.get("edsr_baseline_liif"), official.from_official_yaml(path)
    a, b = build_model(theirs.model.to_dict()), build_model(ours.model.to_dict())
    assert (a.encoder, a.imnet, a.feat_unfold, a.local_ensemble, a.cell_decode) == (
        b.encoder,
        b.imnet,
        b.feat_unfold,
        b.local_ensemble,
        b.cell_decode,
    )
    assert theirs.optimizer == ours.optimizer
    for split in ("train", "val"):
        a, b = theirs.data[split], ours.data[split]
        assert a.batch_size == b.batch_size and wrapper_fields(a.wrapper) == wrapper_fields(b.wrapper)
        assert a.dataset.name == b.dataset.name and a.dataset.args.repeat == b.dataset.args.repeat
        assert a.dataset.args.root_path.endswith(pathlib.Path(b.dataset.args.root_path).name)
    assert theirs.data.train.dataset.args.cache == "bin" and theirs.data.val.dataset.args.first_k == 10
    assert (theirs.eval_every_steps, theirs.checkpoint_every_steps) == (None, None)


@pytest.mark.parametrize(
    "change, needle",
    [
        (("name: adam", "name: sgd"), "only adam"),
        (("gt: {sub: [0.5], div: [0.5]}", "gt: {sub: [0], div: [1]}"), "data_norm"),
        (("epoch_val: 1", "epoch_val: 5"), "epoch_val 5"),
        (("epoch_save: 100", "epoch_save: 100\nepochs: 3"), "unknown keys ['epochs']"),
        (("model:", "modle:"), "not an official training config"),
    ],
)
def test_official_yaml_refuses_what_it_cannot_reproduce(tmp_path, change, needle):
    path = tmp_path / "x.yaml"
    path.write_text(OFFICIAL_EDSR_BASELINE_LIIF.replace(*change))
    with pytest.raises(ValueError, match=re.escape(needle)) as err:
        official.from_official_yaml(path)
    assert str(path) in str(err.value)


def test_official_yaml_resume_is_refused_only_when_the_file_exists(tmp_path, monkeypatch, caplog):
    """LTE's configs all name `resume: ./save/<run>/epoch-last.pth`, which LTE's train.py loads only
    if it exists: a first run starts anew (a warning says so); an existing file is refused by name."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "x.yaml"
    path.write_text(
        OFFICIAL_EDSR_BASELINE_LIIF.replace("epoch_max: 1000", "epoch_max: 1000\nresume: ./save/epoch-last.pth")
    )
    official.from_official_yaml(path)
    assert "resume file ./save/epoch-last.pth does not exist; starting a new run" in caplog.text
    (tmp_path / "save").mkdir()
    (tmp_path / "save" / "epoch-last.pth").write_bytes(b"")
    with pytest.raises(ValueError, match=r"resume from \./save/epoch-last\.pth is not supported"):
        official.from_official_yaml(path)


def test_skimage_split_file_is_the_quickstart_split():
    """liif_jax/configs/splits/skimage-photos.json lets the CLIs name the quick start's held-out photos."""
    from liif_jax.data import sources

    split = json.loads((SPLITS / "skimage-photos.json").read_text())
    assert split == {
        "train": list(sources.SAMPLE_IMAGES[:-2]),
        "val": list(sources.SAMPLE_IMAGES[-2:]),
        "all": list(sources.SAMPLE_IMAGES),
    }
    assert [n.split("/")[-1] for n in map(sources.sample_images("val").describe, range(2))] == split["val"]
