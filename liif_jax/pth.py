"""Reads PyTorch `.pth` checkpoints without PyTorch, and without running code from the file.

A `torch.save` file is a zip holding `*/data.pkl` (a pickle that names tensor storages by key) and
`*/data/<key>` (raw little-endian storage bytes). A pickle can call any importable function, so
the unpickler below resolves only the few globals a state dict needs, each to a harmless
replacement, and refuses everything else.
"""

from __future__ import annotations

import collections
import os
import pickle
import zipfile
from typing import Any

import ml_dtypes
import numpy as np


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
