"""Random-access image sources for training and evaluation (grain data sources, uint8 HWC).

Reproduces the official `datasets/image_folder.py`: `ImageFolder` (`image-folder`),
`PairedImageFolders` (`paired-image-folders`), plus `TfdsSource` (a prepared TFDS data set),
`ArraySource` (images in memory) and the built-in `sample_images`. Elements are an image, or
{'lr', 'hr'} for paired sources; `describe(index)` names an element in error messages.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from liif_jax.imaging import ImageError, list_images, load_rgb

Element = Any

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

