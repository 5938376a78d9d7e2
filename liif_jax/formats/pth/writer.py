"""Writes `torch.save` checkpoints without PyTorch, naming only globals `torch.load` allows.

The writer emits only the globals the reader (`liif_jax.formats.pth.reader`) resolves, so its files load
with our reader and with `torch.load`'s default `weights_only=True`.
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

import numpy as np

from liif_jax.formats.pth.common import STORAGE_DTYPES

# torch.save's layout: `archive/data.pkl` first (torch.load takes the archive's folder name
# from the first record), storages aligned to 64 bytes (as torch does, so `mmap=True` works too).
_STORAGE_NAMES = {dtype: name for name, dtype in STORAGE_DTYPES.items()}
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
