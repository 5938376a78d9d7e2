"""Reads and writes PyTorch `.pth` checkpoints without PyTorch, and without running code from the file.

The reader (`liif_jax.formats.pth.reader`) trusts nothing in the file and refuses with one error type,
`CheckpointError`; the writer (`liif_jax.formats.pth.writer`) makes files that `torch.load` reads with its
default `weights_only=True`.
"""

from liif_jax.formats.pth.common import OFFICIAL_SUFFIXES
from liif_jax.formats.pth.reader import CheckpointError, Limits, UnsafeCheckpointError, load_pth
from liif_jax.formats.pth.writer import save_pth

__all__ = ["OFFICIAL_SUFFIXES", "CheckpointError", "Limits", "UnsafeCheckpointError", "load_pth", "save_pth"]
