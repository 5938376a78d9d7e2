"""Reads and writes PyTorch `.pth` checkpoints without PyTorch, and without running code from the file.

A `torch.save` file is a zip holding `*/data.pkl` (a pickle that names tensor storages by key) and
`*/data/<key>` (raw storage bytes, in the order `*/byteorder` names). A pickle can call any
importable function, so the unpickler below resolves only the few globals a state dict needs, each
to a harmless replacement, and refuses everything else. The writer emits only those same globals,
so its files load with our reader and with `torch.load`'s default `weights_only=True`.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import sys
import zipfile
from typing import Any

import ml_dtypes
import numpy as np


# File names that mean "an official PyTorch checkpoint" to every CLI.
OFFICIAL_SUFFIXES = (".pth", ".pt")


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The pickle asks for something a checkpoint never needs (it may be malicious)."""


_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_TORCH_DTYPES = {"float32": np.float32, "float64": np.float64, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "int64": np.int64,
                 "int32": np.int32, "int16": np.int16, "int8": np.int8, "uint8": np.uint8, "bool": np.bool_}


class _StorageType:
    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    """Array view of a storage, as `torch._utils._rebuild_tensor_v2` builds a tensor."""
    item = storage.itemsize
    if not size:
        return storage[storage_offset].copy()
    view = np.lib.stride_tricks.as_strided(
        storage[storage_offset:], shape=tuple(size), strides=tuple(s * item for s in stride)
    )
    return np.ascontiguousarray(view)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("builtins", "set"): set,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, byteorder: str, path: str):
        super().__init__(file)
        self._archive, self._prefix, self._path = archive, prefix, path
        self._order = "<" if byteorder == "little" else ">"
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and name in _TORCH_DTYPES:
            return _StorageType(_TORCH_DTYPES[name])
        raise UnsafeCheckpointError(
            f"{self._path}: refusing to load '{module}.{name}': a model checkpoint holds only tensors, "
            "numbers, strings, lists and dicts. This file may be malicious; load it only if you trust it, "
            "and with PyTorch itself."
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise UnsafeCheckpointError(f"{self._path}: unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise UnsafeCheckpointError(f"{self._path}: storage of unknown type {storage_type!r}")
        if key not in self._storages:
            raw = self._archive.read(f"{self._prefix}/data/{key}")
            dtype = storage_type.dtype.newbyteorder(self._order)
            self._storages[key] = np.frombuffer(raw, dtype=dtype, count=numel).astype(storage_type.dtype)
        return self._storages[key]


def load_pth(path: str | os.PathLike) -> Any:
    """The object a `torch.save` zip file holds, with tensors as numpy arrays."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path}: not a PyTorch zip checkpoint (torch >= 1.6 format). Re-save it with "
            "torch.save(torch.load(path), path) in a trusted PyTorch environment."
        )
    with zipfile.ZipFile(path) as archive:
        pkl = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise ValueError(f"{path}: expected one '<name>/data.pkl' in the archive, found {pkl}")
        prefix = pkl[0].split("/")[0]
        names = set(archive.namelist())
        byteorder = archive.read(f"{prefix}/byteorder").decode().strip() if f"{prefix}/byteorder" in names else "little"
        with archive.open(pkl[0]) as f:
            return _Unpickler(f, archive, prefix, byteorder, path).load()


# Writing. torch.save's layout: `archive/data.pkl` first (torch.load takes the archive's folder name
# from the first record), storages aligned to 64 bytes (as torch does, so `mmap=True` works too).
_STORAGE_NAMES = {np.dtype(dtype): name for name, dtype in _STORAGE_DTYPES.items()}
_ALIGNMENT = 64


class _Global:
    """A name the pickle refers to (`torch._utils._rebuild_tensor_v2`), written without importing it."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name


class _Storage:
    def __init__(self, key: str, storage_name: str, numel: int):
        self.key, self.storage_name, self.numel = key, storage_name, numel


_PLAIN_TYPES = (str, int, float, bool, type(None), list, tuple, dict, collections.OrderedDict, np.ndarray, _Global)
_REBUILD_TENSOR = _Global("torch._utils", "_rebuild_tensor_v2")


class _Pickler(pickle._Pickler):  # the Python pickler: its dispatch table can be extended
    """Pickles numpy arrays as torch.save pickles tensors; refuses anything `torch.load` would."""

    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, file, path: str):
        super().__init__(file, protocol=2)  # torch.save's protocol
        self.storages: list[np.ndarray] = []
        self._path = path

    def reducer_override(self, obj: Any) -> Any:
        # OrderedDict's reduce names the class itself, so the class passes too.
        if type(obj) not in _PLAIN_TYPES and obj is not collections.OrderedDict:
            raise TypeError(
                f"{self._path}: cannot save {type(obj).__name__} {obj!r:.80}: a .pth holds only numpy arrays, "
                "str, int, float, bool, None, list, tuple, dict and OrderedDict; convert it (np.asarray, float(), ...)"
            )
        return NotImplemented

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, _Storage):
            return ("storage", _Global("torch", obj.storage_name), obj.key, "cpu", obj.numel)
        return None

    def _save_global(self, obj: _Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    def _save_array(self, arr: np.ndarray) -> None:
        native = arr.dtype.newbyteorder("=")
        if native not in _STORAGE_NAMES:
            raise TypeError(f"{self._path}: cannot save an array of dtype {arr.dtype} as a tensor")
        data = np.asarray(arr, dtype=native, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
        storage = _Storage(str(len(self.storages)), _STORAGE_NAMES[native], data.size)
        self.storages.append(data)
        stride = tuple(int(np.prod(data.shape[i + 1 :])) for i in range(data.ndim))
        self.save(_REBUILD_TENSOR)
        self.save((storage, 0, data.shape, stride, False, collections.OrderedDict()))
        self.write(pickle.REDUCE)
        self.memoize(arr)

    dispatch[_Global] = _save_global
    dispatch[np.ndarray] = _save_array


def _write_aligned(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    """Stored (uncompressed) record whose data starts at a multiple of _ALIGNMENT, padded as torch does."""
    info = zipfile.ZipInfo(name)
    header = 30 + len(name.encode()) + 4  # local file header, name, padding field's own header
    pad = -(archive.fp.tell() + header) % _ALIGNMENT
    info.extra = struct.pack("<HH", 0x4246, pad) + bytes(pad)  # field id "FB", as torch's writer
    archive.writestr(info, data)


def save_pth(path: str | os.PathLike, obj: Any) -> None:
    """`torch.save(obj, path)` for nested dicts, lists and plain values with numpy arrays as tensors."""
    path = os.fspath(path)
    buf = io.BytesIO()
    pickler = _Pickler(buf, path)
    pickler.dump(obj)
    with zipfile.ZipFile(path, "w") as archive:
        _write_aligned(archive, "archive/data.pkl", buf.getvalue())
        _write_aligned(archive, "archive/byteorder", sys.byteorder.encode())
        for key, data in enumerate(pickler.storages):
            _write_aligned(archive, f"archive/data/{key}", data.tobytes())
        _write_aligned(archive, "archive/version", b"3\n")
