"""Host-side training and validation data for LIIF, as grain pipelines on the CPU.

Reproduces the official `datasets/image_folder.py` and `datasets/wrappers.py`:

* sources (grain random-access data sources, uint8 HWC elements): `ImageFolder`,
  `PairedImageFolders`, `TfdsSource`, `ArraySource` and the built-in `sample_images`;
* transforms (grain `RandomMap`s, with the official defaults): `RandomScaleDownsample`
  (`sr-implicit-downsampled`), `PairedRandomCrop` (`sr-implicit-paired`), `UniformVariedResize`
  (`sr-implicit-uniform-varied`). Each returns float32 `inp` (h, w, 3) and `gt` (Q, 3) already
  normalised to [-1, 1] (the official `data_norm`), `coord` and `cell` (Q, 2), and the scale;
* `make_train_dataset` (shuffled, repeated, checkpointable iterator) and `make_val_dataset` (the
  official validation set, identical batches on every pass).

Randomness comes only from the generator grain derives from (seed, example index), so a batch
depends on the seed and its position in the stream: not on the number of worker processes, on
prefetching, or on where a run was interrupted.
"""

from __future__ import annotations

import abc
import json
import os
import pathlib
import re
from collections.abc import Sequence
from typing import Any, Protocol

import grain
import numpy as np

from liif_jax.coords import coord_seq, make_cell, make_coord
from liif_jax.imaging import ImageError, downsample, list_images, load_rgb, normalize, resize_bicubic, to_float01

Element = Any
Batch = dict[str, np.ndarray]

# Natural photographs shipped inside scikit-image (no download). The last two are held out for
# validation: `chelsea` (a cat) and `coffee` are everyday photographs, unlike the astronomy,
# medical and microscopy images, so they measure the kind of content the model is meant for.
# motorcycle_right.png is left out: it is a near duplicate of motorcycle_left.png.
SAMPLE_IMAGES = (
    "astronaut.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
    "chelsea.png",
    "coffee.png",
)
_NUM_SAMPLE_VAL = 2


class DataSource(Protocol):
    """What grain needs from a random-access source. Our sources also have `describe(index)`,
    which names the element (file, TFDS record) in error messages; other sources may omit it."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Element: ...


def _check_index(index: int, length: int) -> int:
    """Rejects out-of-range indices, as a sequence does, instead of silently wrapping."""
    if not 0 <= index < length:
        raise IndexError(f"index {index} out of range for a source of length {length}")
    return index


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------


class ArraySource:
    """Images held in memory, with a name for each (used in error messages)."""

    def __init__(self, images: Sequence[Element], names: Sequence[str]):
        if len(images) != len(names):
            raise ValueError(f"{len(images)} images but {len(names)} names")
        self.images = list(images)
        self.names = list(names)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Element:
        return self.images[_check_index(index, len(self))]

    def describe(self, index: int) -> str:
        return self.names[index % len(self.names)]


CacheMode = bool | str  # False/"none", True/"in_memory", or "bin"
_CACHE_MODES = {False: "none", "none": "none", True: "in_memory", "in_memory": "in_memory", "bin": "bin"}


def _bin_cache(files: Sequence[pathlib.Path], folder: pathlib.Path) -> list[pathlib.Path]:
    """Decodes each image once into `folder/<name>.npy` (kept across runs) and returns the paths.

    Readers memory-map these files, so worker processes share one copy through the page cache
    instead of each holding the decoded set (the official `cache: bin`, as .npy).
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ImageError(f"cannot create the image cache folder {folder}: {err}; set cache_dir to a writable folder") from err
    paths = []
    for f in files:
        path = folder / f"{f.name}.npy"
        if not path.exists() or path.stat().st_mtime < f.stat().st_mtime:
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, load_rgb(f))
            os.replace(tmp, path)  # atomic: a killed run never leaves a half-written cache file
        paths.append(path)
    return paths


class _CachedImages:
    """The images of a list of files, decoded on each access or cached once (see `ImageFolder`)."""

    def __init__(self, files: Sequence[pathlib.Path], cache: CacheMode, bin_dir: pathlib.Path):
        if cache not in _CACHE_MODES:
            raise ValueError(f"cache must be one of none, in_memory, bin (or a bool), got {cache!r}")
        self.files, self.mode = list(files), _CACHE_MODES[cache]
        self._images = [load_rgb(f) for f in self.files] if self.mode == "in_memory" else None
        self._bins = _bin_cache(self.files, bin_dir) if self.mode == "bin" else None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> np.ndarray:
        if self._images is not None:
            return self._images[i]
        if self._bins is not None:
            return np.load(self._bins[i], mmap_mode="r")
        return load_rgb(self.files[i])


def _default_bin_dir(root: str | os.PathLike) -> pathlib.Path:
    """`_bin_<folder>` beside the folder, as the official `cache: bin`."""
    root = pathlib.Path(root).resolve()
    return root.parent / f"_bin_{root.name}"


def _split_files(root: str | os.PathLike, split_file: str | os.PathLike, split_key: str | None) -> list[pathlib.Path]:
    """The official split file: JSON mapping split names to lists of file names in `root`."""
    try:
        splits = json.loads(pathlib.Path(split_file).read_text())
    except (OSError, ValueError) as err:
        raise ImageError(f"cannot read split file {os.fspath(split_file)!r}: {err}") from err
    if split_key not in splits:
        raise ImageError(f"split file {os.fspath(split_file)!r} has no split {split_key!r}; it has {sorted(splits)}")
    files = [pathlib.Path(root) / name for name in splits[split_key]]
    missing = [os.fspath(f) for f in files if not f.is_file()]
    if missing:
        raise ImageError(f"split {split_key!r} of {os.fspath(split_file)!r} names missing files: {missing[:5]}")
    return files


def _check_counts(first_k: int | None, repeat: int) -> None:
    if repeat < 1 or (first_k is not None and first_k < 1):
        raise ValueError(f"repeat and first_k must be >= 1, got repeat={repeat}, first_k={first_k}")


class ImageFolder:
    """The official `image-folder`: sorted images of one folder (e.g. `DIV2K_train_HR`).

    With `split_file` (JSON {split_key: [file names]}, as the official CelebA-HQ configs) the
    files are that split's, in its order.

    `repeat` makes the source `repeat` times longer (index i reads file i % n), as the official
    config does to lengthen an epoch. `cache`:
      * False / "none": decode on every access;
      * True / "in_memory": decode every image once, here (uint8, 4x less than the official
        float32). Each worker process (num_workers > 0) receives its own copy: small sets only;
      * "bin": decode once into .npy files under `cache_dir` (default `_bin_<folder>` beside the
        folder, as the official code) and memory-map them: shared by all workers, for DIV2K.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        first_k: int | None = None,
        repeat: int = 1,
        cache: CacheMode = False,
        cache_dir: str | os.PathLike | None = None,
        split_file: str | os.PathLike | None = None,
        split_key: str | None = None,
    ):
        _check_counts(first_k, repeat)
        files = list_images(root) if split_file is None else _split_files(root, split_file, split_key)
        self._images = _CachedImages(files[:first_k], cache, pathlib.Path(cache_dir or _default_bin_dir(root)))
        self.files, self.repeat = self._images.files, repeat

    def __len__(self) -> int:
        return len(self.files) * self.repeat

    def __getitem__(self, index: int) -> np.ndarray:
        return self._images[_check_index(index, len(self)) % len(self.files)]

    def describe(self, index: int) -> str:
        return os.fspath(self.files[index % len(self.files)])


def _hr_stem(lr_stem: str, hr_stems: set[str]) -> str | None:
    """HR name matching an LR name: identical, or the LR name with a scale suffix (`0801x4`)."""
    if lr_stem in hr_stems:
        return lr_stem
    match = re.fullmatch(r"(.+?)x\d+", lr_stem, flags=re.IGNORECASE)
    return match.group(1) if match and match.group(1) in hr_stems else None


def pair_by_name(
    lr_files: Sequence[pathlib.Path], hr_files: Sequence[pathlib.Path]
) -> list[tuple[pathlib.Path, pathlib.Path]]:
    """(LR, HR) pairs in HR name order; accepts `a.png`<->`a.png` and `ax4.png`<->`a.png`.

    The official code pairs the two sorted listings by position, which silently mispairs when one
    folder has an extra file or when the suffix changes the order (`baby2x4` sorts before
    `babyx4`, `baby` before `baby2`); pairing by name makes the first an error and the second right.
    """
    hr_by_stem = {p.stem: p for p in hr_files}
    hr_stems = set(hr_by_stem)
    lr_by_hr: dict[str, pathlib.Path] = {}
    unpaired = []
    for lr in lr_files:
        stem = _hr_stem(lr.stem, hr_stems)
        if stem is None or stem in lr_by_hr:
            unpaired.append(lr.name)
        else:
            lr_by_hr[stem] = lr
    unpaired += [p.name for p in hr_files if p.stem not in lr_by_hr]
    if unpaired or len(hr_by_stem) != len(hr_files):
        folders = f"{os.fspath(lr_files[0].parent)!r} and {os.fspath(hr_files[0].parent)!r}"
        raise ImageError(
            f"cannot pair the images of {folders} by name ({len(unpaired)} without a partner, "
            f"e.g. {unpaired[:5]}); LR files must be named like their HR file, optionally with a "
            "scale suffix (HR 0801.png <-> LR 0801.png or 0801x4.png), one LR file per HR file"
        )
    return [(lr_by_hr[p.stem], p) for p in hr_files]


class PairedImageFolders:
    """The official `paired-image-folders`: {'lr', 'hr'} from two folders.

    Without a split file the images are paired by file name (`pair_by_name`); with `split_file`
    (the official CelebA-HQ configs) both folders hold that split's files under the same names.
    `first_k`, `repeat` and `cache` are `ImageFolder`'s; with `cache="bin"` and `cache_dir` the
    decoded images go to `cache_dir/lr` and `cache_dir/hr`.
    """

    def __init__(
        self,
        lr_root: str | os.PathLike,
        hr_root: str | os.PathLike,
        first_k: int | None = None,
        repeat: int = 1,
        cache: CacheMode = False,
        cache_dir: str | os.PathLike | None = None,
        split_file: str | os.PathLike | None = None,
        split_key: str | None = None,
    ):
        _check_counts(first_k, repeat)
        if split_file is None:
            pairs = pair_by_name(list_images(lr_root), list_images(hr_root))
        else:
            pairs = list(zip(_split_files(lr_root, split_file, split_key), _split_files(hr_root, split_file, split_key)))
        pairs = pairs[:first_k]
        bin_dir = lambda root, sub: pathlib.Path(cache_dir) / sub if cache_dir else _default_bin_dir(root)
        self._lr = _CachedImages([lr for lr, _ in pairs], cache, bin_dir(lr_root, "lr"))
        self._hr = _CachedImages([hr for _, hr in pairs], cache, bin_dir(hr_root, "hr"))
        self.pairs, self.repeat = pairs, repeat

    def __len__(self) -> int:
        return len(self.pairs) * self.repeat

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        i = _check_index(index, len(self)) % len(self.pairs)
        return {"lr": self._lr[i], "hr": self._hr[i]}

    def describe(self, index: int) -> str:
        lr, hr = self.pairs[index % len(self.pairs)]
        return f"{os.fspath(lr)} / {os.fspath(hr)}"


class TfdsSource:
    """A prepared TFDS data set in ArrayRecord form (e.g. `div2k/bicubic_x4`), without TensorFlow.

    Elements are the `hr_key` image, or {'lr', 'hr'} when `lr_key` is given.
    """

    def __init__(
        self, name: str, data_dir: str | os.PathLike, split: str, hr_key: str = "hr", lr_key: str | None = None
    ):
        import tensorflow_datasets as tfds  # Imported here: it is slow and only this source needs it.

        try:
            self._source = tfds.data_source(name, data_dir=os.fspath(data_dir), split=split, download=False)
        except (ValueError, OSError) as err:
            raise ImageError(
                f"cannot open TFDS data set {name!r} split {split!r} under {os.fspath(data_dir)!r}: "
                f"{str(err).splitlines()[0]}. It must be prepared there beforehand with "
                "file_format='array_record'."
            ) from err
        keys = set(self._source.dataset_info.features.keys())
        missing = {hr_key, lr_key} - keys - {None}
        if missing:
            raise ImageError(
                f"TFDS data set {name!r} has no feature {sorted(missing)}; it has {sorted(keys)}"
            )
        self.name, self.split, self.hr_key, self.lr_key = name, split, hr_key, lr_key

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> Element:
        record = self._source[_check_index(index, len(self))]
        if self.lr_key is None:
            return record[self.hr_key]
        return {"lr": record[self.lr_key], "hr": record[self.hr_key]}

    def describe(self, index: int) -> str:
        return f"{self.name}[{self.split}][{index}]"


def sample_images(split: str, repeat: int = 1) -> ArraySource:
    """The photographs shipped inside scikit-image, decoded in memory; 'train' (6) or 'val' (2).

    `repeat` lengthens the source as the official `repeat` does (the images are not copied): an
    epoch of a few images is otherwise dominated by grain's per-epoch shuffle set-up.
    """
    import skimage.data  # Only to locate the package folder; its fetchers are never called.

    names = {"train": SAMPLE_IMAGES[:-_NUM_SAMPLE_VAL], "val": SAMPLE_IMAGES[-_NUM_SAMPLE_VAL:]}
    if split not in names:
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    folder = pathlib.Path(os.path.dirname(skimage.data.__file__))
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    return ArraySource([load_rgb(folder / n) for n in names[split]] * repeat, list(names[split]) * repeat)


# ---------------------------------------------------------------------------------------------
# Transforms
# ---------------------------------------------------------------------------------------------


def _augment(images: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The official flips, each p=0.5, the same for all images: H axis, W axis, then H<->W."""
    hflip, vflip, dflip = rng.random(3) < 0.5
    out = []
    for x in images:
        x = x[::-1] if hflip else x
        x = x[:, ::-1] if vflip else x
        out.append(x.transpose(1, 0, 2) if dflip else x)
    return out


def _pixel_samples(
    lr: np.ndarray, hr: np.ndarray, sample_q: int | None, scale: float, rng: np.random.Generator
) -> Batch:
    """The official `to_pixel_samples` + query sampling without replacement + cells, normalised."""
    h, w = hr.shape[:2]
    rgb = hr.reshape(-1, 3)
    if sample_q is None:
        coord = make_coord((h, w))
    else:
        if sample_q > h * w:
            raise ImageError(f"cannot sample {sample_q} query pixels from a {h}x{w} HR image; lower sample_q")
        idx = rng.choice(h * w, sample_q, replace=False)
        # make_coord's values at the sampled pixels only, without the whole grid
        coord = np.stack([coord_seq(h)[idx // w], coord_seq(w)[idx % w]], axis=-1)
        rgb = rgb[idx]
    return {
        "inp": normalize(to_float01(lr)),
        "coord": coord,
        "cell": make_cell((h, w), len(coord)),
        "gt": normalize(to_float01(rgb)),
        "scale": np.float32(scale),
    }


class RandomScaleDownsample(grain.transforms.RandomMap):
    """The official `sr-implicit-downsampled`: random scale, HR crop, bicubic LR, queries.

    s ~ U(scale_min, scale_max); an HR square of side round(inp_size * s) at a uniform position is
    resized (PIL bicubic) to inp_size for the input. With `inp_size=None` (evaluation) the whole
    image is used: LR side floor(H / s + 1e-9), HR cropped to round(h_lr * s), every pixel queried
    when `sample_q` is None. Unlike the official code, an image smaller than the largest possible
    crop (round(inp_size * scale_max)) is rejected whatever s was drawn, so the error is found the
    first time the image is used rather than at a rare large s. Defaults are the official ones
    (whole image, scale_max = scale_min, no flips, every pixel), as for every wrapper here.
    """

    def __init__(
        self,
        inp_size: int | None = None,
        scale_min: float = 1.0,
        scale_max: float | None = None,
        augment: bool = False,
        sample_q: int | None = None,
    ):
        scale_max = scale_min if scale_max is None else scale_max
        if not 0 < scale_min <= scale_max:
            raise ValueError(f"need 0 < scale_min <= scale_max, got {scale_min}, {scale_max}")
        if inp_size is not None and sample_q is not None and round(inp_size * scale_min) ** 2 < sample_q:
            raise ValueError(
                f"sample_q={sample_q} exceeds the {round(inp_size * scale_min)}^2 pixels of the smallest "
                f"HR crop (inp_size={inp_size}, scale_min={scale_min})"
            )
        self.inp_size, self.scale_min, self.scale_max = inp_size, scale_min, scale_max
        self.augment, self.sample_q = augment, sample_q

    def random_map(self, img: np.ndarray, rng: np.random.Generator) -> Batch:
        s = rng.uniform(self.scale_min, self.scale_max)
        lr, hr = downsample(img, s) if self.inp_size is None else self._crop(img, s, rng)
        if self.augment:
            lr, hr = _augment([lr, hr], rng)
        return _pixel_samples(lr, hr, self.sample_q, s, rng)

    def _crop(self, img: np.ndarray, s: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        h, w = img.shape[:2]
        largest = round(self.inp_size * self.scale_max)
        if min(h, w) < largest:
            raise ImageError(
                f"image of {h}x{w} pixels is smaller than the largest HR crop {largest}x{largest} "
                f"(inp_size {self.inp_size} x scale_max {self.scale_max}); use a smaller scale_max "
                "or inp_size, or remove the image"
            )
        w_hr = round(self.inp_size * s)
        x0 = rng.integers(0, h - w_hr, endpoint=True)
        y0 = rng.integers(0, w - w_hr, endpoint=True)
        hr = img[x0 : x0 + w_hr, y0 : y0 + w_hr]
        return resize_bicubic(hr, (self.inp_size, self.inp_size)), hr


class PairedRandomCrop(grain.transforms.RandomMap):
    """The official `sr-implicit-paired`: aligned crops of a given {'lr', 'hr'} pair.

    The integer scale is s = H_hr // H_lr; the LR crop of side inp_size at (x0, y0) goes with the
    HR crop of side inp_size * s at (x0 * s, y0 * s). With `inp_size=None` the whole LR image is
    used and the HR image is cropped to (h_lr * s, w_lr * s).
    """

    def __init__(self, inp_size: int | None = None, augment: bool = False, sample_q: int | None = None):
        self.inp_size, self.augment, self.sample_q = inp_size, augment, sample_q

    def random_map(self, pair: dict[str, np.ndarray], rng: np.random.Generator) -> Batch:
        lr, hr = pair["lr"], pair["hr"]
        (h_lr, w_lr), (h_hr, w_hr) = lr.shape[:2], hr.shape[:2]
        s = h_hr // h_lr
        if s < 1 or w_hr < w_lr * s:
            raise ImageError(f"HR image {h_hr}x{w_hr} is not an integer upscaling of LR image {h_lr}x{w_lr}")
        if self.inp_size is None:
            hr = hr[: h_lr * s, : w_lr * s]
        else:
            n = self.inp_size
            if min(h_lr, w_lr) < n:
                raise ImageError(
                    f"LR image of {h_lr}x{w_lr} pixels is smaller than the {n}x{n} crop; "
                    "use a smaller inp_size"
                )
            x0 = rng.integers(0, h_lr - n, endpoint=True)
            y0 = rng.integers(0, w_lr - n, endpoint=True)
            lr = lr[x0 : x0 + n, y0 : y0 + n]
            hr = hr[x0 * s : (x0 + n) * s, y0 * s : (y0 + n) * s]
        if self.augment:
            lr, hr = _augment([lr, hr], rng)
        return _pixel_samples(lr, hr, self.sample_q, s, rng)


class PositionalRandomMap(grain.transforms.RandomMap):
    """A transform that also depends on where its element is in the source: `position` is
    index / (len - 1), from 0 (first element) to 1 (last), as the official wrapper that reads
    its own index. The pipelines here (`make_train_dataset`, `make_val_dataset`) provide it."""

    @abc.abstractmethod
    def positional_map(self, element: Element, position: float, rng: np.random.Generator) -> Batch: ...

    def random_map(self, element: Element, rng: np.random.Generator) -> Batch:
        raise TypeError(
            f"{type(self).__name__} depends on each element's position in its source: apply it through "
            "make_train_dataset / make_val_dataset, or call positional_map(element, position, rng)"
        )


def _shorter_side_to(shape: tuple[int, ...], size: int) -> tuple[int, int]:
    """torchvision `Resize(size)`: the shorter side becomes `size`, the longer keeps the aspect."""
    h, w = shape[:2]
    return (size, int(size * w / h)) if h <= w else (int(size * h / w), size)


class UniformVariedResize(PositionalRandomMap):
    """The official `sr-implicit-uniform-varied` (the CelebA-HQ configs): the whole LR image is the
    input and the HR image is resized (PIL bicubic) so that its side grows linearly with the
    element's position in the source, from `size_min` (first) to `size_max` (last), so every
    scale between the two is trained. Then an optional horizontal flip of both images, an optional
    resize of the HR image to `gt_resize`, and `sample_q` query pixels (all when None).
    """

    def __init__(self, size_min: int, size_max: int | None = None, augment: bool = False,
                 gt_resize: int | None = None, sample_q: int | None = None):
        size_max = size_min if size_max is None else size_max
        if not 0 < size_min <= size_max:
            raise ValueError(f"need 0 < size_min <= size_max, got {size_min}, {size_max}")
        if sample_q is not None and (gt_resize or size_min) ** 2 < sample_q:
            raise ValueError(f"sample_q={sample_q} exceeds the pixels of the smallest HR image "
                             f"({gt_resize or size_min}^2)")
        self.size_min, self.size_max, self.augment = size_min, size_max, augment
        self.gt_resize, self.sample_q = gt_resize, sample_q

    def positional_map(self, pair: dict[str, np.ndarray], position: float, rng: np.random.Generator) -> Batch:
        lr, hr = pair["lr"], pair["hr"]
        side = round(self.size_min + (self.size_max - self.size_min) * position)
        hr = resize_bicubic(hr, _shorter_side_to(hr.shape, side))
        if self.augment and rng.random() < 0.5:
            lr, hr = lr[:, ::-1], hr[:, ::-1]
        if self.gt_resize is not None:
            hr = resize_bicubic(np.ascontiguousarray(hr), _shorter_side_to(hr.shape, self.gt_resize))
        return _pixel_samples(lr, hr, self.sample_q, hr.shape[0] / lr.shape[0], rng)


class _NamingErrors(grain.transforms.RandomMap):
    """Applies `transform` to (index, element) pairs: positional transforms get their position,
    and errors name the image. grain's index runs on across repeats: reduced to the source's."""

    def __init__(self, transform: grain.transforms.RandomMap, source: DataSource):
        self.transform, self.source = transform, source

    def random_map(self, indexed: tuple[int, Element], rng: np.random.Generator) -> Batch:
        index, element = indexed
        index %= len(self.source)
        try:
            if isinstance(self.transform, PositionalRandomMap):
                return self.transform.positional_map(element, index / max(len(self.source) - 1, 1), rng)
            return self.transform.random_map(element, rng)
        except ImageError as err:
            raise ImageError(f"{_describe(self.source, index)} (source index {index}): {err}") from err


def _describe(source: DataSource, index: int) -> str:
    describe = getattr(source, "describe", None)
    return describe(index) if describe is not None else f"element {index}"


def _with_index(index: int, element: Element) -> tuple[int, Element]:
    return index, element


# ---------------------------------------------------------------------------------------------
# Pipelines
# ---------------------------------------------------------------------------------------------


def steps_per_epoch(len_source: int, batch_size: int) -> int:
    """Optimizer steps per epoch as the official loader counts them: ceil(len / global batch).

    The official DataLoader keeps the last, smaller batch (no drop_last). Our batches all have the
    full size (fixed shapes for jit), so the last batch of an epoch is completed from the next
    epoch's shuffle: no example is dropped or padded, and the step count per epoch, which drives
    the epoch-based learning-rate schedule, is the official one.
    """
    return -(-len_source // batch_size)


def _shard(shard_index: int | None, shard_count: int | None) -> tuple[int, int]:
    """This process's shard; defaults to the JAX process (imported late: workers don't need JAX)."""
    if shard_index is None or shard_count is None:
        import jax

        shard_index = jax.process_index() if shard_index is None else shard_index
        shard_count = jax.process_count() if shard_count is None else shard_count
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"need 0 <= shard_index < shard_count, got {shard_index}, {shard_count}")
    return shard_index, shard_count


def _per_process_batch(batch_size: int, shard_count: int) -> int:
    if batch_size < 1 or batch_size % shard_count:
        raise ValueError(
            f"global batch_size {batch_size} must be a positive multiple of the {shard_count} processes"
        )
    return batch_size // shard_count


def _seeds(seed: int, n: int) -> list[int]:
    """Independent 32-bit seeds from one: grain's shuffle uses seed + epoch, so seeds 0 and 1 would
    otherwise replay each other's epochs one epoch apart."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n)]


def _ensure_absl_flags_parsed() -> None:
    """grain's `mp_prefetch` reads absl flags and raises UnparsedFlagAccessError in a plain script
    (google/grain#1355); mark them parsed (keeping defaults) when no absl app has done so."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


class TrainIterator(grain.DatasetIterator):
    """This process's batches of a global example stream; checkpointable with `grain.checkpoint`.

    Global batch k is examples [k * B, (k + 1) * B) of the stream; process p takes those with
    index = p (mod P), in order. The state is only the index of the next global example, so a
    checkpoint restores the same batches under any `num_workers`, and the same global batches
    under any number of processes with the same global batch size.
    """

    def __init__(
        self, ds: grain.MapDataset, batch_size: int, shard_index: int, shard_count: int, num_workers: int = 0
    ):
        super().__init__()
        self._iterator: grain.DatasetIterator | None = None
        self._ds, self._batch_size = ds, batch_size
        self._per_process_batch = _per_process_batch(batch_size, shard_count)
        self._shard_index, self._shard_count = shard_index, shard_count
        self._num_workers = num_workers
        self._next_example = 0

    def _open(self) -> grain.DatasetIterator:
        start = self._next_example + self._shard_index
        ds = self._ds[start :: self._shard_count]
        ds = ds.batch(self._per_process_batch, drop_remainder=True)
        it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=4))
        if self._num_workers > 0:
            _ensure_absl_flags_parsed()
            it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=self._num_workers))
        return iter(it_ds)

    def __next__(self) -> Batch:
        self._assert_not_closed()
        if self._iterator is None:
            self._iterator = self._open()
        batch = next(self._iterator)
        self._next_example += self._batch_size
        if self._num_workers > 0:
            # Copy out of grain's shared memory: batches still held at interpreter exit would
            # otherwise be reported as leaked shared-memory segments.
            import jax  # Main process only; the workers need no JAX.

            batch = jax.tree.map(np.array, batch)
        return batch

    def get_state(self) -> dict[str, int]:
        return {"next_example": self._next_example}

    def set_state(self, state: dict[str, Any]) -> None:
        self._close_inner()
        self._next_example = int(state["next_example"])

    def start_prefetch(self) -> None:
        """Starts the workers now, e.g. while the model is being restored."""
        if self._iterator is None:
            self._iterator = self._open()
        self._iterator.start_prefetch()

    def _close_inner(self) -> None:
        if self._iterator is not None:
            self._iterator.close()
            self._iterator = None

    def close(self) -> None:
        self._close_inner()
        super().close()


def make_train_dataset(
    source: DataSource,
    transform: grain.transforms.RandomMap,
    batch_size: int,
    seed: int,
    shard_index: int | None = None,
    shard_count: int | None = None,
    num_epochs: int | None = None,
    num_workers: int = 0,
) -> TrainIterator:
    """The official training loader: reshuffled every epoch, random transform, fixed-size batches.

    `batch_size` is the global batch (the official config's `batch_size`); each of `shard_count`
    processes (default: the JAX processes) gets `batch_size // shard_count` examples per step.
    `num_epochs=None` repeats forever; otherwise the stream ends after the last full global batch.
    `num_workers > 0` runs the transform in that many worker processes (grain `mp_prefetch`).
    """
    shard_index, shard_count = _shard(shard_index, shard_count)
    shuffle_seed, map_seed = _seeds(seed, 2)
    ds = grain.MapDataset.source(source).map_with_index(_with_index)
    ds = ds.shuffle(shuffle_seed).repeat(num_epochs)
    ds = ds.random_map(_NamingErrors(transform, source), seed=map_seed)
    if num_epochs is not None:
        ds = ds[: len(ds) // batch_size * batch_size]
    return TrainIterator(ds, batch_size, shard_index, shard_count, num_workers)


def make_val_dataset(
    source: DataSource,
    batch_size: int = 16,
    seed: int = 0,
    transform: grain.transforms.RandomMap | None = None,
    first_k: int | None = 10,
    repeat: int = 160,
    shard_index: int | None = None,
    shard_count: int | None = None,
) -> grain.MapDataset:
    """The official validation set, with the same batches on every pass for a given seed.

    The official DIV2K configs validate on the first 10 validation images repeated 160 times
    (the defaults `first_k=10, repeat=160`), each with a random scale U(1, 4), a random 48-pixel
    crop, no flips, 2304 queries (the default `transform`), in batches of 16, in order. Pass the
    plain image folder as `source` (without its own `repeat`). Iterate the result (`for batch in
    ds`) once per evaluation; the last batch may be smaller when the length is not a multiple.
    """
    shard_index, shard_count = _shard(shard_index, shard_count)
    per_process = _per_process_batch(batch_size, shard_count)
    if transform is None:
        transform = RandomScaleDownsample(48, 1.0, 4.0, augment=False, sample_q=2304)
    ds = grain.MapDataset.source(source).map_with_index(_with_index)[:first_k].repeat(repeat)
    ds = ds.random_map(_NamingErrors(transform, source), seed=_seeds(seed, 1)[0])
    return ds[shard_index::shard_count].batch(per_process)
