"""Training and validation pipelines: a source and a wrapper as fixed-size batches (grain).

`make_train_dataset` (shuffled every epoch, repeated, checkpointable iterator) and
`make_val_dataset` (the official validation set, identical batches on every pass).

Randomness comes only from the generator grain derives from (seed, example index), so a batch
depends on the seed and its position in the stream: not on the number of worker processes, on
prefetching, or on where a run was interrupted.
"""

from __future__ import annotations

from typing import Any

import grain
import numpy as np

from liif_jax.imaging import ImageError
from liif_jax.sources import DataSource, Element
from liif_jax.wrappers import Batch, PositionalRandomMap, RandomScaleDownsample


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
