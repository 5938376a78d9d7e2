"""The `named-photos` source and the config that trained the shipped model (photos-edsr-baseline-liif)."""

import json

import numpy as np
import pytest
from PIL import Image

from liif_jax import configs
from liif_jax.data import datasets, named_photos
from liif_jax.data.imaging import ImageError

from conftest import REPO

CONFIG = REPO / "liif_jax" / "configs" / "photos_edsr_baseline_liif.py"
SPLIT = REPO / "liif_jax" / "configs" / "splits" / "photos.json"


def write(path, hw, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*hw, 3), value, np.uint8)).save(path)


def test_photos_are_found_by_name_in_any_sub_folder_in_split_order(tmp_path):
    write(tmp_path / "b.png", (8, 6), 1)
    write(tmp_path / "mate" / "nature" / "a.png", (5, 7), 2)
    (tmp_path / "split.json").write_text(json.dumps({"train": ["b.png", "a.png"]}))
    src = named_photos.named_photos(str(tmp_path), str(tmp_path / "split.json"), "train", repeat=3)
    assert len(src) == 6 and [src[i][0, 0, 0] for i in range(6)] == [1, 2, 1, 2, 1, 2]
    assert src.describe(1).endswith("mate/nature/a.png")


def test_shrink_resizes_the_listed_photos_as_pil_bicubic_never_enlarging(tmp_path):
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(big).save(tmp_path / "big.png")
    write(tmp_path / "small.png", (10, 12))
    write(tmp_path / "other.png", (30, 40))
    (tmp_path / "s.json").write_text(
        json.dumps({"train": ["big.png", "small.png", "other.png"], "lomiri": ["big.png", "small.png"]})
    )
    src = named_photos.named_photos(str(tmp_path), str(tmp_path / "s.json"), "train", shrink={"lomiri": 20})
    assert [src[i].shape[:2] for i in range(3)] == [(15, 20), (10, 12), (30, 40)]
    np.testing.assert_array_equal(src[0], np.asarray(Image.fromarray(big).resize((20, 15), Image.BICUBIC)))


def test_missing_or_duplicated_photos_are_named(tmp_path):
    write(tmp_path / "x" / "a.png", (4, 4))
    (tmp_path / "s.json").write_text(json.dumps({"train": ["a.png", "gone.png"]}))
    with pytest.raises(ImageError, match=r"1 of the 2 'train' photographs .* \(e\.g\. gone\.png\)\. Get them here"):
        named_photos.named_photos(str(tmp_path), str(tmp_path / "s.json"), "train", missing_help="Get them here")
    write(tmp_path / "y" / "a.png", (4, 4))
    (tmp_path / "s.json").write_text(json.dumps({"train": ["a.png"]}))
    with pytest.raises(ImageError, match="a.png is both in"):
        named_photos.named_photos(str(tmp_path), str(tmp_path / "s.json"), "train")


def test_the_shipped_model_config_reads_24_photos_and_holds_out_the_mate_test_ones(tmp_path):
    """The Debian layout (`backgrounds/X.jpg`, `backgrounds/mate/nature/Y.jpg`), found through one
    override key; validation and the final table use the three held-out photographs only."""
    split = json.loads(SPLIT.read_text())
    mate = json.loads((SPLIT.parent / "mate-nature.json").read_text())
    assert len(split["train"]) == 24 and split["test"] == mate["test"] and set(mate["train"]) < set(split["train"])
    assert len(split["lomiri"]) == 15 and not set(split["train"]) & set(split["test"])
    for name in split["train"] + split["test"]:
        write(tmp_path / ("mate/nature" if name not in split["lomiri"] else "") / name, (4, 4))
    c = configs.get("photos_edsr_baseline_liif")
    c.photos_dir = str(tmp_path)
    train = datasets.make_source(c.data.train.dataset.to_dict())
    val, final = (datasets.make_source(c[k].dataset.to_dict()) for k in ("data.val", "final_eval"))
    assert len(train) == 24 * 666 and len(val) == 3 * 32 and len(final) == 3
    assert sorted({train.describe(i).split("/")[-1] for i in range(24)}) == split["train"]
    assert c.num_steps == 22000 and c.optimizer.milestones == (11, 16) and c.optimizer.lr == 2e-4


def test_without_the_photos_the_error_names_both_packages_and_the_override_key(tmp_path):
    c = configs.get("photos_edsr_baseline_liif")  # building the config needs no photographs
    c.photos_dir = str(tmp_path / "nowhere")
    with pytest.raises(ImageError) as err:
        datasets.make_source(c.data.train.dataset.to_dict())
    for needle in ("lomiri-wallpapers-16.04", "mate-backgrounds", "--config.photos_dir=FOLDER", "nowhere"):
        assert needle in str(err.value)
