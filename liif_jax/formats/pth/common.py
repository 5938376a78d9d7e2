"""What a `torch.save` zip file holds, shared by the `.pth` reader and writer.

A `torch.save` file is a zip holding `<name>/data.pkl` (a pickle that names tensor storages by
key), `<name>/byteorder` and `<name>/data/<key>` (raw storage bytes). Storages are typed by the
pickle global `torch.<X>Storage`; these are the only element types either side accepts.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

# File names that mean "an official PyTorch checkpoint" to every CLI.
OFFICIAL_SUFFIXES = (".pth", ".pt")

STORAGE_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(dtype)
    for name, dtype in {
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
    }.items()
}
# `torch.<dtype>` globals, which some torch versions name instead of a storage class.
TORCH_DTYPES: dict[str, np.dtype] = {
    "float32": STORAGE_DTYPES["FloatStorage"],
    "float64": STORAGE_DTYPES["DoubleStorage"],
    "float16": STORAGE_DTYPES["HalfStorage"],
    "bfloat16": STORAGE_DTYPES["BFloat16Storage"],
    "int64": STORAGE_DTYPES["LongStorage"],
    "int32": STORAGE_DTYPES["IntStorage"],
    "int16": STORAGE_DTYPES["ShortStorage"],
    "int8": STORAGE_DTYPES["CharStorage"],
    "uint8": STORAGE_DTYPES["ByteStorage"],
    "bool": STORAGE_DTYPES["BoolStorage"],
}
ALLOWED_DTYPES = frozenset(STORAGE_DTYPES.values())
