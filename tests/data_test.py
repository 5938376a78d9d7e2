"""Training/validation data: official crop geometry, determinism, checkpointing, sharding, sources."""

import itertools
import json
import multiprocessing

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from liif_jax.data import datasets, pipeline, sources, wrappers
from liif_jax.data.imaging import ImageError, denormalize, resize_bicubic
from liif_jax.models.coords import make_cell, make_coord

from conftest import TFDS_DIR

# ---------------------------------------------------------------------------------------------
# Helpers: images whose pixels encode their own position, and the inverse of the augmentation.
# ---------------------------------------------------------------------------------------------


def position_image(h: int, w: int, tag: int = 0) -> np.ndarray:
    """Pixel (r, c) = (r, c, (7r + 13c + tag) % 256): values say where a pixel came from."""
    r, c = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack([r, c, (7 * r + 13 * c + tag) % 256], axis=-1).astype(np.uint8)


def to_u8(x: np.ndarray) -> np.ndarray:
    return np.rint(denormalize(x) * 255).astype(np.int64)


def grid_index(coord: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of the pixels whose centres are `coord` on a grid of `shape`."""
    ij = np.rint(((coord.astype(np.float64) + 1) * np.array(shape) - 1) / 2).astype(np.int64)
    return ij[:, 0], ij[:, 1]


def undo_augment(i, j, n, flips):
    """Position in the un-augmented crop of output pixel (i, j): undo H<->W, W flip, H flip."""
    hflip, vflip, dflip = flips
    if dflip:
        i, j = j, i
    if vflip:
        j = n - 1 - j
    if hflip:
        i = n - 1 - i
    return i, j


def apply_augment(x, flips):
    hflip, vflip, dflip = flips
    x = x[::-1] if hflip else x
    x = x[:, ::-1] if vflip else x
    return x.transpose(1, 0, 2) if dflip else x


def fit_crop(i, j, r, c, n):
    """All (flips, x0, y0) under which output pixels (i, j) are source pixels (r, c)."""
    fits = []
    for flips in itertools.product([False, True], repeat=3):
        a, b = undo_augment(i, j, n, flips)
        x0, y0 = r - a, c - b
        if np.all(x0 == x0[0]) and np.all(y0 == y0[0]):
            fits.append((flips, int(x0[0]), int(y0[0])))
    return fits


def check_queries(out, n_hr, sample_q):
    """Shapes, dtypes, ranges, cells, coordinates at pixel centres, no repeated pixel."""
    q = n_hr[0] * n_hr[1] if sample_q is None else sample_q
    assert out["coord"].shape == (q, 2) and out["cell"].shape == (q, 2) and out["gt"].shape == (q, 3)
    for key in ("inp", "coord", "cell", "gt", "scale"):
        assert out[key].dtype == np.float32, key
    for key in ("inp", "gt"):
        assert out[key].min() >= -1 and out[key].max() <= 1, key
    np.testing.assert_array_equal(out["cell"], make_cell(n_hr, q))
    i, j = grid_index(out["coord"], n_hr)
    np.testing.assert_array_equal(out["coord"], make_coord(n_hr)[i * n_hr[1] + j])
    assert len(np.unique(i * n_hr[1] + j)) == q  # sampled without replacement
    return i, j


# ---------------------------------------------------------------------------------------------
# Transforms
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("augment", [True, False])
def test_random_scale_downsample_geometry(augment):
    img = position_image(250, 230)
    transform = wrappers.RandomScaleDownsample(48, 1.0, 4.0, augment=augment, sample_q=2304)
    seen_flips, scales = set(), []
    for seed in range(24):
        out = transform.random_map(img, np.random.default_rng(seed))
        s = float(out["scale"])  # float32, for logging: compare the crop side with a tolerance
        scales.append(s)
        n = round(2 / float(out["cell"][0, 0]))
        assert 1.0 <= s <= 4.0 and abs(n - 48 * s) <= 0.5 + 1e-4
        assert out["inp"].shape == (48, 48, 3)
        i, j = check_queries(out, (n, n), 2304)

        gt = to_u8(out["gt"])
        r, c = gt[:, 0], gt[:, 1]
        np.testing.assert_array_equal(gt[:, 2], (7 * r + 13 * c) % 256)  # targets are real pixels
        fits = fit_crop(i, j, r, c, n)
        assert len(fits) == 1, fits
        flips, x0, y0 = fits[0]
        assert 0 <= x0 <= 250 - n and 0 <= y0 <= 230 - n
        seen_flips.add(flips)

        lr = resize_bicubic(img[x0 : x0 + n, y0 : y0 + n], (48, 48))
        np.testing.assert_array_equal(to_u8(out["inp"]), apply_augment(lr, flips))  # LR flipped as HR
    assert len(seen_flips) >= 6 if augment else seen_flips == {(False, False, False)}
    assert max(scales) - min(scales) > 1.5


def test_random_scale_downsample_whole_image_for_evaluation():
    """Official: LR side floor(H / s + 1e-9) (250 / (250 / 102) is 101.99999999999999), HR cropped
    to Python's round(h_lr * s) (75 * 3.3 = 247.5 -> 248), all pixels queried."""
    img = position_image(250, 230)
    cases = [(3.3, (75, 69), (248, 228)), (250 / 102, (102, 93), (250, 228)), (4.0, (62, 57), (248, 228))]
    for s, (h_lr, w_lr), (h_hr, w_hr) in cases + [(1.0, (250, 230), (250, 230))]:
        out = wrappers.RandomScaleDownsample(None, s, s, augment=False, sample_q=None).random_map(
            img, np.random.default_rng(0)
        )
        hr = img[:h_hr, :w_hr]
        check_queries(out, (h_hr, w_hr), None)
        np.testing.assert_array_equal(out["coord"], make_coord((h_hr, w_hr)))
        np.testing.assert_array_equal(to_u8(out["gt"]), hr.reshape(-1, 3))
        np.testing.assert_array_equal(to_u8(out["inp"]), resize_bicubic(hr, (h_lr, w_lr)))


def test_crop_side_uses_python_round():
    """round(16 * 1.28125) = round(20.5) = 20 (half to even, as the official Python `round`)."""
    out = wrappers.RandomScaleDownsample(16, 1.28125, 1.28125, sample_q=None).random_map(
        position_image(60, 60), np.random.default_rng(0)
    )
    assert out["coord"].shape == (400, 2)


def test_paired_random_crop_aligns_lr_and_hr():
    hr = position_image(203, 161)
    lr = position_image(50, 40, tag=99)
    transform = wrappers.PairedRandomCrop(12, augment=True, sample_q=300)
    seen = set()
    for seed in range(12):
        out = transform.random_map({"lr": lr, "hr": hr}, np.random.default_rng(seed))
        assert float(out["scale"]) == 4.0 and out["inp"].shape == (12, 12, 3)
        i, j = check_queries(out, (48, 48), 300)
        gt = to_u8(out["gt"])
        ((flips, x1, y1),) = fit_crop(i, j, gt[:, 0], gt[:, 1], 48)
        inp = to_u8(out["inp"]).reshape(-1, 3)
        np.testing.assert_array_equal(inp[:, 2], (7 * inp[:, 0] + 13 * inp[:, 1] + 99) % 256)
        li, lj = np.divmod(np.arange(144), 12)
        ((lr_flips, x0, y0),) = fit_crop(li, lj, inp[:, 0], inp[:, 1], 12)
        assert lr_flips == flips and (x1, y1) == (4 * x0, 4 * y0)
        assert 0 <= x0 <= 50 - 12 and 0 <= y0 <= 40 - 12
        seen.add(flips)
    assert len(seen) >= 4

    whole = wrappers.PairedRandomCrop(None, augment=False, sample_q=None).random_map(
        {"lr": lr, "hr": hr}, np.random.default_rng(0)
    )
    check_queries(whole, (200, 160), None)
    np.testing.assert_array_equal(to_u8(whole["gt"]), hr[:200, :160].reshape(-1, 3))
    np.testing.assert_array_equal(to_u8(whole["inp"]), lr)


def test_transform_argument_errors():
    with pytest.raises(ValueError, match="sample_q"):
        wrappers.RandomScaleDownsample(48, 1.0, 4.0, sample_q=48 * 48 + 1)
    with pytest.raises(ValueError, match="scale_min"):
        wrappers.RandomScaleDownsample(48, 4.0, 2.0)
    with pytest.raises(ImageError, match="smaller than the 12x12"):
        wrappers.PairedRandomCrop(12, sample_q=100).random_map(
            {"lr": np.zeros((10, 30, 3), np.uint8), "hr": np.zeros((40, 120, 3), np.uint8)},
            np.random.default_rng(0),
        )
    with pytest.raises(ImageError, match="sample_q"):
        wrappers.PairedRandomCrop(4, sample_q=100).random_map(
            {"lr": np.zeros((10, 10, 3), np.uint8), "hr": np.zeros((20, 20, 3), np.uint8)},
            np.random.default_rng(0),
        )


# ---------------------------------------------------------------------------------------------
# Pipelines
# ---------------------------------------------------------------------------------------------


def small_source(n: int = 6) -> sources.ArraySource:
    return sources.ArraySource([position_image(40 + 3 * k, 44, tag=k) for k in range(n)], [f"im{k}" for k in range(n)])


SMALL = wrappers.RandomScaleDownsample(8, 1.0, 4.0, augment=True, sample_q=64)


def take(it, k):
    return [next(it) for _ in range(k)]


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def differs(a, b):
    return any(not np.array_equal(x["gt"], y["gt"]) for x, y in zip(a, b))


def train_iter(seed=0, **kw):
    kw.setdefault("shard_index", 0)
    kw.setdefault("shard_count", 1)
    return pipeline.make_train_dataset(small_source(), SMALL, 4, seed, **kw)


def test_batches_shape_and_seed_determinism():
    a, b, c = train_iter(0), train_iter(0), train_iter(1)
    ra, rb, rc = take(a, 5), take(b, 5), take(c, 5)
    assert {k: v.shape for k, v in ra[0].items()} == {
        "inp": (4, 8, 8, 3),
        "coord": (4, 64, 2),
        "cell": (4, 64, 2),
        "gt": (4, 64, 3),
        "scale": (4,),
    }
    assert_same(ra, rb)
    assert differs(ra, rc)
    for it in (a, b, c):
        it.close()


def test_resume_from_state_gives_the_uninterrupted_batches():
    full = take(train_iter(3), 8)
    first = train_iter(3)
    take(first, 3)
    state = json.loads(json.dumps(first.get_state()))
    assert state == {"next_example": 12}
    resumed = train_iter(3)
    resumed.set_state(state)
    assert_same(take(resumed, 5), full[3:])


def test_orbax_checkpoint_round_trip(tmp_path):
    it = train_iter(5)
    take(it, 2)
    mngr = ocp.CheckpointManager(tmp_path)
    mngr.save(2, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
    mngr.wait_until_finished()
    expected = take(it, 3)
    fresh = train_iter(5)
    mngr.restore(2, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(fresh)))
    assert_same(take(fresh, 3), expected)
    mngr.close()


def test_worker_processes_give_the_same_batches_and_restore_across_worker_counts():
    full = take(train_iter(7), 6)
    in_process = train_iter(7)
    take(in_process, 2)
    workers = train_iter(7, num_workers=2)
    try:
        workers.set_state(in_process.get_state())
        assert_same(take(workers, 4), full[2:])
        assert len(multiprocessing.active_children()) >= 2
        assert workers.get_state() == {"next_example": 24}
    finally:
        workers.close()


class TagIndex(grain.transforms.RandomMap):
    """Keeps only the image's tag, to follow which source element went where."""

    def random_map(self, img, rng):
        return {"id": np.int64(img[0, 0, 0])}


def id_source(n):
    return sources.ArraySource([np.full((1, 1, 3), k, np.uint8) for k in range(n)], [str(k) for k in range(n)])


def ids(it):
    return [b["id"].tolist() for b in it]


def test_sharding_disjoint_covering_and_equal_to_the_global_batches():
    source = id_source(12)
    glob = ids(pipeline.make_train_dataset(source, TagIndex(), 4, 0, 0, 1, num_epochs=2))
    shards = [ids(pipeline.make_train_dataset(source, TagIndex(), 4, 0, p, 2, num_epochs=2)) for p in range(2)]
    assert len(glob) == 6 and [len(s) for s in shards] == [6, 6]
    for step, batch in enumerate(glob):
        assert shards[0][step] + shards[1][step] == batch  # process blocks, as the global array
    for epoch in (slice(0, 3), slice(3, 6)):
        seen = [sum(s[epoch], []) for s in shards]
        assert not set(seen[0]) & set(seen[1])
        assert sorted(seen[0] + seen[1]) == list(range(12))
    assert sum(glob[:3], []) != sum(glob[3:], [])  # reshuffled every epoch
    with pytest.raises(ValueError, match="multiple"):
        pipeline.make_train_dataset(source, TagIndex(), 5, 0, 0, 2)


def test_any_rows_of_the_global_batch_and_resume_under_another_layout():
    """A process computes only its rows (those its devices hold) of each global batch; the state is
    the global position, so a 2-process checkpoint resumes 1 process (and the reverse)."""
    source = id_source(12)
    glob = ids(pipeline.make_train_dataset(source, TagIndex(), 4, 0, 0, 1, num_epochs=2))
    odd = ids(pipeline.make_train_dataset(source, TagIndex(), 4, 0, num_epochs=2, rows=[1, 3]))
    assert odd == [[b[1], b[3]] for b in glob]
    second = pipeline.make_train_dataset(source, TagIndex(), 4, 0, 1, 2, num_epochs=2)
    take(second, 2)
    single = pipeline.make_train_dataset(source, TagIndex(), 4, 0, 0, 1, num_epochs=2)
    single.set_state(second.get_state())
    assert ids(single) == glob[2:]
    with pytest.raises(ValueError, match="increasing positions"):
        pipeline.make_train_dataset(source, TagIndex(), 4, 0, rows=[3, 1])


def test_val_batches_are_full_and_padding_is_weighted_out_on_any_layout():
    """10 crops in global batches of 4: 3 batches, the last with 2 padding examples of weight 0,
    which each process gets as full local batches whatever the number of processes."""
    one = list(
        pipeline.make_val_dataset(
            id_source(5), 4, transform=TagIndex(), first_k=None, repeat=2, shard_index=0, shard_count=1
        )
    )
    halves = [
        list(
            pipeline.make_val_dataset(
                id_source(5), 4, transform=TagIndex(), first_k=None, repeat=2, shard_index=p, shard_count=2
            )
        )
        for p in range(2)
    ]
    assert [b["weight"].tolist() for b in one] == [[1] * 4, [1] * 4, [1, 1, 0, 0]]
    for step, batch in enumerate(one):
        for key in ("id", "weight"):
            assert np.concatenate([h[step][key] for h in halves]).tolist() == batch[key].tolist()
    assert sorted(i for b in one for i, w in zip(b["id"], b["weight"]) if w) == sorted(list(range(5)) * 2)


def test_steps_per_epoch_counts_the_last_partial_batch():
    assert pipeline.steps_per_epoch(16000, 16) == 1000
    assert pipeline.steps_per_epoch(10, 4) == 3
    assert pipeline.steps_per_epoch(12, 4) == 3


def test_val_dataset_is_the_same_every_pass():
    val = pipeline.make_val_dataset(id_source(12), batch_size=16, transform=TagIndex(), shard_index=0, shard_count=1)
    assert len(val) == 100  # 10 images x 160 / 16
    first = ids(val)
    assert first == ids(val)
    assert sorted(sum(first, [])) == sorted(list(range(10)) * 160)

    photos = sources.ArraySource([position_image(200, 210, tag=k) for k in range(4)], list("abcd"))
    img_val = pipeline.make_val_dataset(photos, 4, seed=1, first_k=3, repeat=2, shard_index=0, shard_count=1)
    passes = [list(img_val), list(img_val)]
    assert_same(*passes)
    assert [b["weight"].tolist() for b in passes[0]] == [[1, 1, 1, 1], [1, 1, 0, 0]]  # 6 crops: 2 padded
    np.testing.assert_array_equal(passes[0][1]["gt"][3], passes[0][1]["gt"][1])  # padding repeats the last
    assert passes[0][0]["inp"].shape == (4, 48, 48, 3) and passes[0][0]["gt"].shape == (4, 2304, 3)
    other_seed = pipeline.make_val_dataset(photos, 4, seed=2, first_k=3, repeat=2, shard_index=0, shard_count=1)
    assert differs(passes[0], list(other_seed))


def test_image_smaller_than_the_crop_names_it():
    source = sources.ArraySource([position_image(200, 200), position_image(150, 300)], ["big.png", "tiny.png"])
    it = pipeline.make_train_dataset(source, wrappers.RandomScaleDownsample(48, 1.0, 4.0), 2, 0, 0, 1)
    with pytest.raises(ImageError, match=r"tiny\.png.*150x300.*192x192.*scale_max"):
        take(it, 1)


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------


def write_pngs(folder, names_and_images):
    folder.mkdir(parents=True, exist_ok=True)
    for name, img in names_and_images:
        Image.fromarray(img).save(folder / name)
    return folder


def test_image_folder(tmp_path):
    imgs = [position_image(20 + k, 30, tag=k) for k in range(3)]
    root = write_pngs(tmp_path / "hr", [(f"{k:04d}.png", im) for k, im in enumerate(imgs)])
    (root / "readme.txt").write_text("not an image")

    folder = sources.ImageFolder(root)
    assert len(folder) == 3
    for k in range(3):
        np.testing.assert_array_equal(folder[k], imgs[k])
    with pytest.raises(IndexError):
        folder[3]

    repeated = sources.ImageFolder(root, first_k=2, repeat=3)
    assert len(repeated) == 6
    np.testing.assert_array_equal(repeated[5], imgs[1])
    assert repeated.describe(5).endswith("0001.png")

    cached = sources.ImageFolder(root, cache=True)
    (root / "0000.png").unlink()
    np.testing.assert_array_equal(cached[0], imgs[0])  # decoded once, at construction


def test_image_folder_errors_name_folder_and_file(tmp_path):
    with pytest.raises(ImageError, match="missing_dir"):
        sources.ImageFolder(tmp_path / "missing_dir")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ImageError, match="empty_dir"):
        sources.ImageFolder(tmp_path / "empty_dir")

    root = write_pngs(tmp_path / "hr", [("0001.png", position_image(10, 10))])
    (root / "0002.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    folder = sources.ImageFolder(root)
    folder[0]
    with pytest.raises(ImageError, match="0002.png"):
        folder[1]
    with pytest.raises(ImageError, match="0002.png"):
        sources.ImageFolder(root, cache=True)


@pytest.mark.parametrize(
    "lr_names, hr_names",
    [
        (["0801.png", "0802.png"], ["0801.png", "0802.png"]),
        (["0801x4.png", "0802x4.png"], ["0801.png", "0802.png"]),
        (["babyx4.png", "birdx4.png"], ["baby.png", "bird.png"]),
        (["babyx4.png", "baby2x4.png"], ["baby.png", "baby2.png"]),  # sorted listings disagree
    ],
)
def test_paired_folders_pair_by_name(tmp_path, lr_names, hr_names):
    hr_imgs = [position_image(40, 48, tag=k) for k in range(2)]
    lr_imgs = [position_image(10, 12, tag=50 + k) for k in range(2)]
    write_pngs(tmp_path / "HR", list(zip(hr_names, hr_imgs)))
    write_pngs(tmp_path / "LR_bicubic" / "X4", list(zip(lr_names, lr_imgs)))
    paired = sources.PairedImageFolders(tmp_path / "LR_bicubic" / "X4", tmp_path / "HR", repeat=2)
    assert len(paired) == 4
    for k in range(4):
        np.testing.assert_array_equal(paired[k]["hr"], hr_imgs[k % 2])
        np.testing.assert_array_equal(paired[k]["lr"], lr_imgs[k % 2])
    out = wrappers.PairedRandomCrop(8, sample_q=64).random_map(paired[0], np.random.default_rng(0))
    assert out["scale"] == 4


def test_paired_folders_unmatched_names_are_listed(tmp_path):
    write_pngs(tmp_path / "HR", [(n, position_image(8, 8)) for n in ["0801.png", "0802.png"]])
    write_pngs(tmp_path / "LR", [(n, position_image(2, 2)) for n in ["0801x4.png", "0803x4.png"]])
    with pytest.raises(ImageError, match=r"0803x4\.png.*0802\.png"):
        sources.PairedImageFolders(tmp_path / "LR", tmp_path / "HR")


def test_tfds_source():
    tfds_dir = TFDS_DIR
    train = sources.TfdsSource("tiny_div2k_like", tfds_dir, "train")
    assert len(train) == 3
    hr = train[0]
    assert hr.dtype == np.uint8 and hr.ndim == 3 and hr.shape[2] == 3

    pairs = sources.TfdsSource("tiny_div2k_like", tfds_dir, "validation", lr_key="lr")
    assert len(pairs) == 2
    pair = pairs[1]
    assert pair["hr"].shape[0] == 4 * pair["lr"].shape[0] and pair["hr"].shape[1] == 4 * pair["lr"].shape[1]
    out = wrappers.PairedRandomCrop(16, sample_q=512).random_map(pair, np.random.default_rng(0))
    assert out["scale"] == 4 and out["gt"].shape == (512, 3)
    batch = next(pipeline.make_train_dataset(train, wrappers.RandomScaleDownsample(16, 1, 4, sample_q=256), 2, 0, 0, 1))
    assert batch["inp"].shape == (2, 16, 16, 3)

    with pytest.raises(ImageError, match="'test'"):
        sources.TfdsSource("tiny_div2k_like", tfds_dir, "test")
    with pytest.raises(ImageError, match="no feature"):
        sources.TfdsSource("tiny_div2k_like", tfds_dir, "train", lr_key="lr_x3")


def test_tfds_repeat_and_first_k_give_the_batches_of_the_same_images_as_a_folder(tmp_path):
    """`repeat` and `first_k` mean on a TFDS set what they mean on a folder (one code path): the
    same epoch length, steps per epoch and batches as the set's images written to a folder in
    record order."""
    tfds_train = sources.TfdsSource("tiny_div2k_like", TFDS_DIR, "train", repeat=20)
    (tmp_path / "hr").mkdir()
    for k in range(tfds_train.size):
        Image.fromarray(tfds_train[k]).save(tmp_path / "hr" / f"{k:04d}.png")
    folder = sources.ImageFolder(tmp_path / "hr", repeat=20)
    assert len(tfds_train) == len(folder) == 60
    assert pipeline.steps_per_epoch(len(tfds_train), 16) == pipeline.steps_per_epoch(len(folder), 16) == 4
    wrapper = wrappers.RandomScaleDownsample(16, 1, 4, augment=True, sample_q=64)
    from_tfds, from_folder = (pipeline.make_train_dataset(s, wrapper, 4, 7, 0, 1) for s in (tfds_train, folder))
    for a, b in itertools.islice(zip(from_tfds, from_folder), 3):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])

    val = datasets.make_source(
        {
            "name": "tfds",
            "args": {"name": "tiny_div2k_like", "data_dir": TFDS_DIR, "split": "validation", "first_k": 1, "repeat": 3},
        }
    )
    assert len(val) == 3 and val.describe(2) == "tiny_div2k_like[validation][0]"
    np.testing.assert_array_equal(val[2], sources.TfdsSource("tiny_div2k_like", TFDS_DIR, "validation")[0])
    with pytest.raises(ValueError, match="repeat and first_k must be >= 1"):
        sources.TfdsSource("tiny_div2k_like", TFDS_DIR, "train", repeat=0)


def test_sample_images_are_real_photographs_with_a_fixed_split():
    train, val = sources.sample_images("train"), sources.sample_images("val")
    assert len(train) == 6 and val.names == ["chelsea.png", "coffee.png"]
    assert not set(train.names) & set(val.names)
    assert "motorcycle_right.png" not in train.names
    for img in train.images + val.images:
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 300
        assert img.std() > 20  # a photograph, not a blank or placeholder
    assert val[0].shape == (300, 451, 3)
    with pytest.raises(ValueError, match="split"):
        sources.sample_images("test")


def test_bin_cache_is_decoded_once_and_shared_through_memory_maps(tmp_path):
    root = tmp_path / "DIV2K_train_HR"
    root.mkdir()
    rng = np.random.default_rng(3)
    imgs = [rng.integers(0, 256, (20, 24, 3), dtype=np.uint8) for _ in range(3)]
    for i, img in enumerate(imgs):
        Image.fromarray(img).save(root / f"{i:04d}.png")
    cache = tmp_path / "cache"
    src = sources.ImageFolder(root, repeat=2, cache="bin", cache_dir=cache)
    assert [p.name for p in sorted(cache.iterdir())] == ["0000.png.npy", "0001.png.npy", "0002.png.npy"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DIV2K_train_HR", "cache"]  # nothing beside the data
    assert isinstance(src[4], np.memmap)
    np.testing.assert_array_equal(src[4], imgs[1])
    (root / "0001.png").unlink()  # reads no longer touch the images: the cache serves them
    np.testing.assert_array_equal(sources.ImageFolder(root, cache="bin", cache_dir=cache)[1], imgs[2])
    np.testing.assert_array_equal(src[1], imgs[1])
    with pytest.raises(ValueError, match="cache 'bin' needs cache_dir"):
        sources.ImageFolder(root, cache="bin")
    with pytest.raises(ValueError, match="cache must be one of"):
        sources.ImageFolder(root, cache="disk")


def test_split_file_selects_the_named_files_in_order(tmp_path):
    import json

    root = tmp_path / "faces"
    root.mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(root / f"{i}.png")
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["3.png", "1.png"], "val": ["0.png"], "bad": ["9.png"]}))
    src = sources.ImageFolder(root, split_file=split, split_key="train")
    assert [int(src[i][0, 0, 0]) for i in range(len(src))] == [3, 1]
    with pytest.raises(ImageError, match="no split 'test'"):
        sources.ImageFolder(root, split_file=split, split_key="test")
    with pytest.raises(ImageError, match="missing files"):
        sources.ImageFolder(root, split_file=split, split_key="bad")


# ---------------------------------------------------------------------------------------------
# CelebA-HQ: paired folders by split file, and the uniform-varied wrapper
# ---------------------------------------------------------------------------------------------


def celeba_like(tmp_path, n: int = 5, lr: int = 8, hr: int = 32):
    """`lr/` and `hr/` folders of n faces under the same names, and an official-style split file."""
    names = [f"{k}.png" for k in range(n)]
    write_pngs(tmp_path / "lr", [(m, position_image(lr, lr, tag=k)) for k, m in enumerate(names)])
    write_pngs(tmp_path / "hr", [(m, position_image(hr, hr, tag=k)) for k, m in enumerate(names)])
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": names[::-1], "val": names[:1]}))
    return split


def test_paired_folders_by_split_file_with_a_shared_bin_cache(tmp_path):
    split = celeba_like(tmp_path)
    src = sources.PairedImageFolders(
        tmp_path / "lr", tmp_path / "hr", split_file=split, split_key="train", cache="bin", cache_dir=tmp_path / "cache"
    )
    assert len(src) == 5 and src.describe(0).endswith("4.png")
    assert isinstance(src[0]["hr"], np.memmap)
    np.testing.assert_array_equal(src[0]["hr"], position_image(32, 32, tag=4))
    np.testing.assert_array_equal(src[1]["lr"], position_image(8, 8, tag=3))
    assert len(list((tmp_path / "cache" / "lr").iterdir())) == len(list((tmp_path / "cache" / "hr").iterdir())) == 5
    with pytest.raises(ImageError, match="no split 'test'"):
        sources.PairedImageFolders(tmp_path / "lr", tmp_path / "hr", split_file=split, split_key="test")


def test_uniform_varied_target_side_grows_linearly_with_the_source_position():
    """Official: element idx of n gets an HR side round(min + (max - min) * idx / (n - 1))."""
    lr, hr = position_image(8, 8), position_image(32, 32)
    transform = wrappers.UniformVariedResize(8, 32, sample_q=None)
    for position, side in [(0.0, 8), (0.5, 20), (1 / 3, 16), (1.0, 32)]:
        out = transform.positional_map({"lr": lr, "hr": hr}, position, np.random.default_rng(0))
        check_queries(out, (side, side), None)
        np.testing.assert_array_equal(to_u8(out["inp"]), lr)  # the whole LR face is the input
        np.testing.assert_array_equal(to_u8(out["gt"]).reshape(side, side, 3), resize_bicubic(hr, (side, side)))
        assert out["scale"] == side / 8
    with pytest.raises(TypeError, match="position"):
        transform.random_map({"lr": lr, "hr": hr}, np.random.default_rng(0))


def test_uniform_varied_flip_gt_resize_and_sampling():
    lr, hr = position_image(8, 8), position_image(32, 32)
    flips = set()
    for seed in range(8):
        out = wrappers.UniformVariedResize(8, 32, augment=True, gt_resize=16, sample_q=100).positional_map(
            {"lr": lr, "hr": hr}, 1.0, np.random.default_rng(seed)
        )
        i, j = check_queries(out, (16, 16), 100)
        flipped = not np.array_equal(to_u8(out["inp"]), lr)
        if flipped:
            np.testing.assert_array_equal(to_u8(out["inp"]), lr[:, ::-1])
        expected = resize_bicubic(np.ascontiguousarray(hr[:, ::-1] if flipped else hr), (16, 16))
        np.testing.assert_array_equal(to_u8(out["gt"]), expected[i, j])  # W-axis flip, then gt_resize
        flips.add(flipped)
    assert flips == {False, True}


def test_uniform_varied_in_a_pipeline_sizes_targets_by_source_index(tmp_path):
    split = celeba_like(tmp_path)
    src = sources.PairedImageFolders(tmp_path / "lr", tmp_path / "hr", split_file=split, split_key="train")
    wrapper = wrappers.UniformVariedResize(8, 32, augment=True, sample_q=64)
    for batch in pipeline.make_train_dataset(src, wrapper, 5, seed=0, shard_index=0, shard_count=1, num_epochs=2):
        r, c, v = to_u8(batch["inp"][:, 0, 0]).T  # position_image: v = 7r + 13c + k for face k.png
        tags = (v - 7 * r - 13 * c) % 256
        sides = np.rint(2 / batch["cell"][:, 0, 0]).astype(int)
        index = 4 - tags  # the split file lists the faces in reverse order
        np.testing.assert_array_equal(sides, np.round(8 + 24 * index / 4).astype(int))
        assert sorted(sides) == [8, 14, 20, 26, 32]  # every epoch, not only the first


def test_registry_wrappers_have_the_official_defaults():
    from liif_jax.data import datasets

    down = datasets.make_wrapper({"name": "sr-implicit-downsampled", "args": {"scale_min": 2}})
    assert (down.inp_size, down.scale_min, down.scale_max, down.augment, down.sample_q) == (None, 2, 2, False, None)
    paired = datasets.make_wrapper({"name": "sr-implicit-paired", "args": {}})
    assert (paired.inp_size, paired.augment, paired.sample_q) == (None, False, None)
    varied = datasets.make_wrapper({"name": "sr-implicit-uniform-varied", "args": {"size_min": 32}})
    assert (varied.size_max, varied.augment, varied.gt_resize, varied.sample_q) == (32, False, None, None)
