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
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from liif_jax.data.imaging import ImageError, in_folder, list_images, load_rgb

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


def _bin_cache(
    files: Sequence[pathlib.Path],
    names: Sequence[str],
    folder: pathlib.Path,
    decode: Callable[[pathlib.Path], np.ndarray],
) -> list[pathlib.Path]:
    """Decodes each image once into `folder/<name>.npy` (kept across runs) and returns the paths.

    Readers memory-map these files, so worker processes share one copy through the page cache
    instead of each holding the decoded set (the official `cache: bin`, as .npy). A file newer
    than its cached copy is decoded again.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ImageError(
            f"cannot create the image cache folder {folder}: {err}; set cache_dir to a writable folder"
        ) from err
    paths = [folder / f"{name}.npy" for name in names]
    stale = [(f, p) for f, p in zip(files, paths) if not p.exists() or p.stat().st_mtime < f.stat().st_mtime]
    if stale:
        print(f"decoding {len(stale)} image(s) once into {folder}", flush=True)
    for f, path in stale:
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, decode(f))
        os.replace(tmp, path)  # atomic: a killed run never leaves a half-written cache file
    return paths


def cache_names(files: Sequence[pathlib.Path], root: str | os.PathLike) -> list[str]:
    """A cache file name per image: its path under `root`, sub-folders joined by `__`."""
    root = pathlib.Path(root)
    return [f.relative_to(root).as_posix().replace("/", "__") if f.is_relative_to(root) else f.name for f in files]


class CachedImages:
    """The images of a list of files, decoded on each access or cached once (see `ImageFolder`).

    `decode` turns a file into the uint8 image (default `load_rgb`); `names` name the cache files.
    """

    def __init__(
        self,
        files: Sequence[pathlib.Path],
        cache: CacheMode,
        bin_dir: str | os.PathLike | None,
        names: Sequence[str] | None = None,
        decode: Callable[[pathlib.Path], np.ndarray] = load_rgb,
    ):
        if cache not in _CACHE_MODES:
            raise ValueError(f"cache must be one of none, in_memory, bin (or a bool), got {cache!r}")
        self.files, self.mode, self._decode = list(files), _CACHE_MODES[cache], decode
        if self.mode == "bin" and bin_dir is None:
            raise ValueError(
                "cache 'bin' needs cache_dir, the folder for the decoded images (training puts it "
                "under the workdir unless the config names one)"
            )
        names = [f.name for f in self.files] if names is None else list(names)
        self._images = [self._read(f) for f in self.files] if self.mode == "in_memory" else None
        self._bins = _bin_cache(self.files, names, pathlib.Path(bin_dir), self._read) if self.mode == "bin" else None

    def _read(self, path: pathlib.Path) -> np.ndarray:
        try:
            return self._decode(path)
        except ImageError as err:
            raise in_folder(err, path) from None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> np.ndarray:
        if self._images is not None:
            return self._images[i]
        if self._bins is not None:
            return np.load(self._bins[i], mmap_mode="r")
        return self._read(self.files[i])


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


class Repeated:
    """The official `first_k` and `repeat` of every source here (folders, TFDS): the first
    `first_k` of `n` elements, `repeat` times over, so that index i reads element i % n. A source
    subclasses it and reads its element k in `_element(k)`."""

    def __init__(self, n: int, first_k: int | None, repeat: int):
        _check_counts(first_k, repeat)
        self.size = n if first_k is None else min(n, first_k)
        self.repeat = repeat

    def _element(self, k: int) -> Element:
        raise NotImplementedError

    def __len__(self) -> int:
        return self.size * self.repeat

    def __getitem__(self, index: int) -> Element:
        return self._element(_check_index(index, len(self)) % self.size)


class ImageFolder(Repeated):
    """The official `image-folder`: sorted images of one folder (e.g. `DIV2K_train_HR`).

    With `split_file` (JSON {split_key: [file names]}, as the official CelebA-HQ configs) the
    files are that split's, in its order.

    `repeat` makes the source `repeat` times longer (index i reads file i % n), as the official
    config does to lengthen an epoch. `cache`:
      * False / "none": decode on every access;
      * True / "in_memory": decode every image once, here (uint8, 4x less than the official
        float32). Each worker process (num_workers > 0) receives its own copy: small sets only;
      * "bin": decode once into .npy files under `cache_dir` and memory-map them: shared by all
        workers, for DIV2K. Training sets `cache_dir` under its workdir unless the config names
        one; nothing is written beside the data unless `cache_dir` says so.
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
        files = files[:first_k]  # only these are decoded
        super().__init__(len(files), None, repeat)
        self._images = CachedImages(files, cache, cache_dir, cache_names(files, root))
        self.files = self._images.files

    def _element(self, k: int) -> np.ndarray:
        return self._images[k]

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


class PairedImageFolders(Repeated):
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
            pairs = list(
                zip(_split_files(lr_root, split_file, split_key), _split_files(hr_root, split_file, split_key))
            )
        pairs = pairs[:first_k]
        super().__init__(len(pairs), None, repeat)
        lr_files, hr_files = [lr for lr, _ in pairs], [hr for _, hr in pairs]
        bin_dir = lambda sub: None if cache_dir is None else pathlib.Path(cache_dir) / sub
        self._lr = CachedImages(lr_files, cache, bin_dir("lr"), cache_names(lr_files, lr_root))
        self._hr = CachedImages(hr_files, cache, bin_dir("hr"), cache_names(hr_files, hr_root))
        self.pairs = pairs

    def _element(self, k: int) -> dict[str, np.ndarray]:
        return {"lr": self._lr[k], "hr": self._hr[k]}

    def describe(self, index: int) -> str:
        lr, hr = self.pairs[index % len(self.pairs)]
        return f"{os.fspath(lr)} / {os.fspath(hr)}"


class TfdsSource(Repeated):
    """A prepared TFDS data set in ArrayRecord form (e.g. `div2k/bicubic_x4`), without TensorFlow.

    Elements are the `hr_key` image, or {'lr', 'hr'} when `lr_key` is given, in the set's record
    order; `first_k` and `repeat` are the folders' (`Repeated`), so the official DIV2K schedule
    (`repeat: 20`; validation `first_k: 10, repeat: 160`) reads the same from TFDS.
    """

    def __init__(
        self,
        name: str,
        data_dir: str | os.PathLike,
        split: str,
        hr_key: str = "hr",
        lr_key: str | None = None,
        first_k: int | None = None,
        repeat: int = 1,
    ):
        _check_counts(first_k, repeat)
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
            raise ImageError(f"TFDS data set {name!r} has no feature {sorted(missing)}; it has {sorted(keys)}")
        self.name, self.split, self.hr_key, self.lr_key = name, split, hr_key, lr_key
        super().__init__(len(self._source), first_k, repeat)

    def _element(self, k: int) -> Element:
        record = self._source[k]
        if self.lr_key is None:
            return record[self.hr_key]
        return {"lr": record[self.lr_key], "hr": record[self.hr_key]}

    def describe(self, index: int) -> str:
        return f"{self.name}[{self.split}][{index % self.size}]"


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
