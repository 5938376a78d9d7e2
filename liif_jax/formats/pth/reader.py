"""Reads `torch.save` checkpoints without PyTorch, trusting nothing in the file.

A pickle can call any importable function, so the unpickler resolves only the few globals a
state dict needs, each to a harmless replacement, and refuses everything else. Everything else
the file declares is checked before it is used: the zip's directory size and member count, each
member's compression method and sizes (before decompressing; the decompressed size is enforced
while reading), each storage's element type and byte count, and each tensor's size, stride and
offset, so that a view lies inside its storage. Arrays own memory filled from the file (a tensor
that is exactly its storage takes that buffer; any other view is copied), never memory outside
it. Bytes read and copied, pickle size, nesting depth, container sizes and floating-point values
are limited or checked. Every refusal is a `CheckpointError` naming the file.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import math
import os
import pickle
import re
import reprlib
import zipfile
from typing import Any

import numpy as np

from liif_jax.formats.pth.common import ALLOWED_DTYPES, STORAGE_DTYPES, TORCH_DTYPES


class CheckpointError(ValueError):
    """A checkpoint file that is refused: damaged, over a limit, or asking for something unsafe."""


class UnsafeCheckpointError(CheckpointError):
    """The pickle asks for something a checkpoint never needs (it may be malicious)."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one checkpoint may make the reader do. The defaults hold every official LIIF
    checkpoint (an RDN-LIIF with its Adam state is about 270 MB) with a wide margin."""

    max_bytes: int = 1 << 30  # storage bytes read plus tensor bytes copied
    max_pickle_bytes: int = 4 << 20
    max_members: int = 100_000
    max_directory_bytes: int = 64 << 20
    max_depth: int = 64
    max_items: int = 1_000_000  # container entries, an entry reached twice counted twice
    max_ndim: int = 16


_SHORT = reprlib.Repr(maxlevel=2, maxstring=60, maxother=60, maxlist=4, maxtuple=6, maxdict=4)
_CHUNK = 1 << 20
_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_LEAVES = (str, bytes, int, float, complex, bool, type(None))


def short(value: Any) -> str:
    """A bounded repr: hostile values can be huge or deeply nested."""
    return _SHORT.repr(value)


def _plain(value: Any) -> str:
    """A short printable name as it is, anything else as a bounded repr."""
    return value if type(value) is str and len(value) <= 80 and value.isprintable() else short(value)


class _Frozen:
    """Objects the pickle receives from the reader: its BUILD opcode must not change them (a
    storage whose array it replaced could steer a view past that array's end)."""

    def __setstate__(self, state: Any) -> None:
        raise UnsafeCheckpointError(f"the pickle tries to change a {type(self).__name__.strip('_')} object")


class _Storage(_Frozen):
    def __init__(self, key: str, array: np.ndarray):
        self.key, self.array, self.handed_out = key, array, False  # array: 1-D, filled from the file


def _count(value: Any, what: str) -> int:
    """A non-negative int (not a bool), or a refusal naming `what`."""
    if type(value) is not int or value < 0:
        raise CheckpointError(f"{what} must be a non-negative integer, got {short(value)}")
    return value


class _Reader(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, order: str, limits: Limits):
        super().__init__(io.BytesIO(data))
        self._archive, self._prefix, self._order, self._limits = archive, prefix, order, limits
        self._storages: dict[str, _Storage] = {}
        self._spent = 0
        self._allowed = {
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor,
            ("torch._utils", "_rebuild_parameter"): self._rebuild_parameter,
            ("builtins", "set"): set,
        }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._allowed:
            return self._allowed[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        if module == "torch" and name in TORCH_DTYPES:
            return _StorageType(TORCH_DTYPES[name])
        raise UnsafeCheckpointError(
            f"refusing to load '{_plain(module)}.{_plain(name)}': a model checkpoint holds only tensors, numbers, "
            "strings, lists and dicts. This file may be malicious; load it only if you trust it, and with PyTorch itself."
        )

    def _spend(self, nbytes: int, what: str) -> None:
        if self._spent + nbytes > self._limits.max_bytes:
            raise CheckpointError(
                f"{what} would take the bytes read and copied past the limit of {self._limits.max_bytes} "
                f"(already {self._spent}, this one {nbytes})"
            )
        self._spent += nbytes

    def persistent_load(self, pid: Any) -> _Storage:
        if not (type(pid) is tuple and len(pid) == 5 and pid[0] == "storage"):
            raise UnsafeCheckpointError(f"unexpected persistent id {short(pid)}")
        _, storage_type, key, location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise UnsafeCheckpointError(f"storage of unknown type {short(storage_type)}")
        if type(key) is not str or not _KEY.fullmatch(key) or type(location) is not str:
            raise CheckpointError(f"storage key {short(key)} / location {short(location)} is not a short name")
        numel = _count(numel, f"storage {key}: element count")
        known = self._storages.get(key)
        if known is None:
            known = self._storages[key] = _Storage(key, self._read_storage(key, storage_type.dtype, numel))
        if known.array.dtype != storage_type.dtype or known.array.size != numel:
            raise CheckpointError(f"storage {key} is named twice with different types or sizes")
        return known

    def _read_storage(self, key: str, dtype: np.dtype, numel: int) -> np.ndarray:
        name = f"{self._prefix}/data/{key}"
        try:
            info = self._archive.getinfo(name)
        except KeyError:
            raise CheckpointError(f"storage record {name} is missing") from None
        nbytes = numel * dtype.itemsize
        if info.file_size != nbytes:
            raise CheckpointError(
                f"storage record {name} declares {info.file_size} bytes, but {numel} elements of {dtype} take {nbytes}"
            )
        self._spend(nbytes, f"storage {key}")
        buf = read_member(self._archive, info)
        array = np.frombuffer(buf, dtype=dtype.newbyteorder(self._order))
        if dtype == np.bool_:
            return array.view(np.uint8) != 0  # a byte other than 0/1 is not a bool numpy can hold
        return array if array.dtype == dtype else array.astype(dtype)

    def _rebuild_tensor(
        self, storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
    ) -> np.ndarray:
        """`torch._utils._rebuild_tensor_v2`, for views that lie inside their storage only."""
        if not isinstance(storage, _Storage):
            raise CheckpointError(f"a tensor's storage is {short(storage)}, not a storage record")
        offset = _count(storage_offset, f"storage {storage.key}: tensor offset")
        if type(size) not in (tuple, list) or type(stride) not in (tuple, list) or len(size) != len(stride):
            raise CheckpointError(
                f"storage {storage.key}: tensor size {short(size)} and stride {short(stride)} do not match"
            )
        if len(size) > self._limits.max_ndim:
            raise CheckpointError(
                f"storage {storage.key}: tensor of {len(size)} dimensions (limit {self._limits.max_ndim})"
            )
        size = tuple(_count(n, f"storage {storage.key}: tensor size") for n in size)
        stride = tuple(_count(s, f"storage {storage.key}: tensor stride") for s in stride)
        numel, available, dtype = math.prod(size), storage.array.size, storage.array.dtype
        if numel == 0:
            if offset > available:
                raise CheckpointError(f"storage {storage.key}: offset {offset} is past its {available} elements")
            return np.zeros(size, dtype)
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= available:
            raise CheckpointError(
                f"storage {storage.key}: a tensor of size {size}, stride {stride}, offset {offset} reaches element "
                f"{last}, but the storage holds {available}"
            )
        contiguous = tuple(math.prod(size[i + 1 :]) for i in range(len(size)))
        if offset == 0 and numel == available and stride == contiguous and not storage.handed_out:
            storage.handed_out = True
            return storage.array.reshape(size)
        self._spend(numel * dtype.itemsize, f"a tensor of size {size} from storage {storage.key}")
        item = dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            storage.array[offset:], shape=size, strides=tuple(s * item for s in stride), writeable=False
        )
        return view.copy()

    @staticmethod
    def _rebuild_parameter(data, requires_grad=False, backward_hooks=None) -> np.ndarray:
        if not isinstance(data, np.ndarray):
            raise CheckpointError(f"a parameter wraps {short(data)}, not a tensor")
        return data


class _StorageType(_Frozen):
    def __init__(self, dtype: np.dtype):
        self.dtype = dtype


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytearray:
    """A member's bytes, exactly its declared size, read in bounded chunks (a zip bomb stops at
    the declared size; a short member is refused), CRC-checked by zipfile."""
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise CheckpointError(f"{info.filename}: compression method {info.compress_type} (torch.save stores records)")
    buf = bytearray(info.file_size)
    view, done = memoryview(buf), 0
    with archive.open(info) as f:
        while done < info.file_size:
            chunk = f.read(min(_CHUNK, info.file_size - done))
            if not chunk:
                raise CheckpointError(f"{info.filename}: truncated ({done} of {info.file_size} bytes)")
            view[done : done + len(chunk)] = chunk
            done += len(chunk)
        f.read(1)  # reaches the end, so that zipfile checks the CRC
    return buf


def _check_tree(obj: Any, limits: Limits) -> None:
    """Refuses deep or huge object trees (shared entries counted each time they are reached, so a
    pickle cannot make a small file into an enormous tree), objects no checkpoint holds, and
    non-finite floating-point tensors, named by their path in the file."""
    stack: list[tuple[Any, int, tuple]] = [(obj, 0, ())]
    items, checked = 0, set()
    while stack:
        value, depth, path = stack.pop()
        if depth > limits.max_depth:
            raise CheckpointError(f"nesting deeper than {limits.max_depth} levels at {_where(path)}")
        if isinstance(value, np.ndarray):
            if value.dtype not in ALLOWED_DTYPES:
                raise CheckpointError(f"{_where(path)}: tensor of dtype {value.dtype}")
            if id(value) not in checked and value.dtype.kind == "f" and not np.isfinite(value).all():
                raise CheckpointError(
                    f"tensor {_where(path)} holds NaN or Inf values (a diverged training run?); its weights cannot be used"
                )
            checked.add(id(value))
            continue
        if isinstance(value, dict):
            children = [(v, path + (k,)) for k, v in value.items()] + [(k, path + ("<key>",)) for k in value]
        elif type(value) in (list, tuple, set, frozenset):
            children = [(v, path + (i,)) for i, v in enumerate(value)]
        elif type(value) in _LEAVES:
            continue
        else:
            raise CheckpointError(f"{_where(path)}: unexpected object of type {type(value).__name__}")
        items += len(children)
        if items > limits.max_items:
            raise CheckpointError(f"more than {limits.max_items} entries in its lists and dicts")
        stack.extend((child, depth + 1, p) for child, p in children)


def _where(path: tuple) -> str:
    names = [*map(_plain, path[:4]), "...", *map(_plain, path[-2:])] if len(path) > 8 else list(map(_plain, path))
    return "/".join(names) or "the top level"


def _single(names: list[str], suffix: str) -> str:
    found = [n for n in names if n.endswith(suffix) and n.count("/") == 1]
    if len(found) != 1:
        raise CheckpointError(f"expected one '<name>/{suffix}' record in the archive, found {len(found)}")
    return found[0]


def _open_checked(path: str, limits: Limits) -> zipfile.ZipFile:
    """The zip, after its end record's member count and directory size are known to fit."""
    with open(path, "rb") as fp:
        end = zipfile._EndRecData(fp)  # what zipfile reads first; its entry count and size bound the rest
    if end is None:
        raise CheckpointError(
            "not a PyTorch zip checkpoint (torch >= 1.6 format). Re-save it with "
            "torch.save(torch.load(path), path) in a trusted PyTorch environment."
        )
    if end[zipfile._ECD_ENTRIES_TOTAL] > limits.max_members or end[zipfile._ECD_SIZE] > limits.max_directory_bytes:
        raise CheckpointError(
            f"archive directory of {end[zipfile._ECD_ENTRIES_TOTAL]} records, {end[zipfile._ECD_SIZE]} bytes, is over "
            f"the limits ({limits.max_members} records, {limits.max_directory_bytes} bytes)"
        )
    return zipfile.ZipFile(path)


def load_pth(path: str | os.PathLike, limits: Limits = Limits()) -> Any:
    """The object a `torch.save` zip file holds, with tensors as numpy arrays.

    Raises FileNotFoundError for a missing file and `CheckpointError` ("<path>: what is wrong")
    for anything refused.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        with _open_checked(path, limits) as archive:
            names = archive.namelist()
            pkl = _single(names, "data.pkl")
            prefix = pkl.split("/")[0]
            order = "<"
            if f"{prefix}/byteorder" in names:
                info = archive.getinfo(f"{prefix}/byteorder")
                if info.file_size > 16:
                    raise CheckpointError(f"{info.filename} is {info.file_size} bytes; expected 'little' or 'big'")
                text = bytes(read_member(archive, info)).decode("ascii", "replace").strip()
                if text not in ("little", "big"):
                    raise CheckpointError(f"{info.filename} says {short(text)}; expected 'little' or 'big'")
                order = "<" if text == "little" else ">"
            info = archive.getinfo(pkl)
            if info.file_size > limits.max_pickle_bytes:
                raise CheckpointError(f"{pkl} is {info.file_size} bytes (limit {limits.max_pickle_bytes})")
            obj = _Reader(bytes(read_member(archive, info)), archive, prefix, order, limits).load()
        _check_tree(obj, limits)
        return obj
    except CheckpointError as err:
        raise type(err)(f"{path}: {err}") from None
    except Exception as err:  # anything else a damaged file makes zipfile, zlib or pickle raise
        text = " ".join(str(err).split())
        raise CheckpointError(f"{path}: damaged checkpoint ({type(err).__name__}: {text[:200]})") from err
