"""Writes files in PyTorch's zip checkpoint format without PyTorch, for tests of the reader.

The pickle must name `torch._utils._rebuild_tensor_v2` and `torch.FloatStorage` as torch.save
does; stand-in modules under those names are installed only while pickling.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import sys
import types
import zipfile

import numpy as np


class _Storage:
    def __init__(self, key: str, array: np.ndarray):
        self.key, self.array = key, array


def _rebuild_tensor_v2(*args):  # stands in for torch._utils._rebuild_tensor_v2 while pickling
    raise AssertionError("only pickled, never called")


class FloatStorage:  # stand in for torch's storage types while pickling
    pass


class HalfStorage:
    pass


class BFloat16Storage:
    pass


_STORAGES = {"float32": FloatStorage, "float16": HalfStorage, "bfloat16": BFloat16Storage}


@contextlib.contextmanager
def _fake_torch():
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
    utils._rebuild_tensor_v2, _rebuild_tensor_v2.__module__ = _rebuild_tensor_v2, "torch._utils"
    for cls in _STORAGES.values():
        setattr(torch, cls.__name__, cls)
        cls.__module__ = "torch"
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k)
            else:
                sys.modules[k] = v


class _Tensor:
    def __init__(self, storage: _Storage, shape):
        self.storage, self.shape = storage, shape

    def __reduce__(self):
        strides = tuple(int(np.prod(self.shape[i + 1 :])) for i in range(len(self.shape)))
        import collections

        return (_rebuild_tensor_v2, (self.storage, 0, tuple(self.shape), strides, False, collections.OrderedDict()))


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", _STORAGES[obj.array.dtype.name], obj.key, "cpu", obj.array.size)
        return None


def _wrap(obj, storages: list[_Storage]):
    if isinstance(obj, np.ndarray):
        st = _Storage(str(len(storages)), np.ascontiguousarray(obj))
        storages.append(st)
        return _Tensor(st, obj.shape)
    if isinstance(obj, dict):
        return type(obj)((k, _wrap(v, storages)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_wrap(v, storages) for v in obj)
    return obj


def save(path, obj, name: str = "archive") -> None:
    """`torch.save(obj, path)` for objects of dicts, lists, numbers and float32/16, bfloat16 arrays."""
    storages: list[_Storage] = []
    wrapped = _wrap(obj, storages)
    buf = io.BytesIO()
    with _fake_torch():
        _Pickler(buf, protocol=2).dump(wrapped)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}/data.pkl", buf.getvalue())
        z.writestr(f"{name}/byteorder", "little")
        z.writestr(f"{name}/version", "3\n")
        for st in storages:
            z.writestr(f"{name}/data/{st.key}", st.array.tobytes())
