"""Training and validation pipelines: a source and a wrapper as fixed-size batches (grain).

`make_train_dataset` (shuffled every epoch, repeated, checkpointable iterator) and
`make_val_dataset` (the official validation set, identical batches on every pass).

Randomness comes only from the generator grain derives from (seed, example index), so a batch
depends on the seed and its position in the stream: not on the number of worker processes, on
prefetching, or on where a run was interrupted.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import grain
import numpy as np

from liif_jax.data.imaging import ImageError
from liif_jax.data.sources import DataSource, Element
from liif_jax.data.wrappers import Batch, PositionalRandomMap, RandomScaleDownsample


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


def process_rows(batch_size: int, shard_index: int | None = None, shard_count: int | None = None) -> list[int]:
    """The positions in each global batch that shard `shard_index` of `shard_count` provides: a
    contiguous block, the one `jax.make_array_from_process_local_data` expects from process p of P
    on a 1-D data mesh whose devices are in process order. Defaults to the JAX process (imported
    late: workers need no JAX)."""
    if shard_index is None or shard_count is None:
        import jax

        shard_index = jax.process_index() if shard_index is None else shard_index
        shard_count = jax.process_count() if shard_count is None else shard_count
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"need 0 <= shard_index < shard_count, got {shard_index}, {shard_count}")
    if batch_size < 1 or batch_size % shard_count:
        raise ValueError(f"global batch_size {batch_size} must be a positive multiple of the {shard_count} processes")
    n = batch_size // shard_count
    return list(range(shard_index * n, (shard_index + 1) * n))


def _check_rows(rows: Sequence[int], batch_size: int) -> list[int]:
    rows = [int(r) for r in rows]
    if not rows or rows != sorted(set(rows)) or rows[0] < 0 or rows[-1] >= batch_size:
        raise ValueError(f"rows must be increasing positions in a global batch of {batch_size}, got {rows}")
    return rows


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


# The main process decides when a run stops (`liif_jax.training.stopping`); its workers must not die first.
_MAIN_PROCESS_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def _worker_signals_blocked() -> Iterator[None]:
    """Blocks SIGINT and SIGTERM in this thread while grain starts its worker processes (as
    CPython's resource tracker is started): the threads created meanwhile, and the processes they
    spawn, keep them blocked for life, so Ctrl-C to the process group or SIGTERM to the whole group
    (systemd, docker) reaches the main process only, even while a worker is still starting up.
    Pending signals are delivered to this thread when it unblocks them."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    # The first thread to make a multiprocessing lock starts the resource tracker, and then
    # unblocks SIGINT and SIGTERM in itself: start it here, before blocking them.
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _MAIN_PROCESS_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _exit_with_parent() -> None:
    """Ends this worker process as soon as its parent is gone, however that ended (SIGKILL, a
    second Ctrl-C, a crash): grain's workers otherwise wait forever on a queue nobody reads."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()  # returns when the parent's end of the pipe closes, i.e. when it exits
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _init_worker(index: int, count: int) -> None:
    """grain's `worker_init_fn`, run first in every worker process."""
    del index, count
    _exit_with_parent()


class _Rows:
    """Local element i -> example (first_batch + i // n) * B + rows[i % n] of the global stream:
    this process's part of every global batch, computed from indices alone (picklable for workers)."""

    def __init__(self, ds: grain.MapDataset, batch_size: int, rows: Sequence[int], first_batch: int):
        self.ds, self.batch_size, self.rows, self.first_batch = ds, batch_size, list(rows), first_batch

    def index(self, i: int) -> int:
        return (self.first_batch + i // len(self.rows)) * self.batch_size + self.rows[i % len(self.rows)]

    def __call__(self, i: int) -> Batch:
        return self.ds[self.index(i)]


class TrainIterator(grain.DatasetIterator):
    """This process's batches of a global example stream; checkpointable with `grain.checkpoint`.

    Global batch k is examples [k * B, (k + 1) * B) of the stream; this process computes only the
    examples at its `rows` of each (see `process_rows`), in order, so that the global batch
    assembled from all processes is the same whatever the number of processes and devices. The
    state is only the index of the next global example, the same in every process: a checkpoint
    restores the same batches under any `num_workers`, and the same global batches under any
    number of processes with the same global batch size.
    """

    def __init__(self, ds: grain.MapDataset, batch_size: int, rows: Sequence[int], num_workers: int = 0):
        super().__init__()
        self._iterator: grain.DatasetIterator | None = None
        self._ds, self._batch_size, self._rows = ds, batch_size, _check_rows(rows, batch_size)
        self._num_workers = num_workers
        self._next_example = 0
        self._started = False  # whether the open grain iterator has started its workers

    def _open(self) -> grain.DatasetIterator:
        first = self._next_example // self._batch_size
        n = len(self._rows)
        local = grain.MapDataset.range((len(self._ds) // self._batch_size - first) * n)
        ds = local.map(_Rows(self._ds, self._batch_size, self._rows, first)).batch(n, drop_remainder=True)
        it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=4))
        if self._num_workers > 0:
            _ensure_absl_flags_parsed()
            it_ds = it_ds.mp_prefetch(
                grain.MultiprocessingOptions(num_workers=self._num_workers), worker_init_fn=_init_worker
            )
        return iter(it_ds)

    def __next__(self) -> Batch:
        self._assert_not_closed()
        if self._started:
            batch = next(self._iterator)
        else:  # grain creates its threads and starts its workers here
            with self._starting_workers():
                if self._iterator is None:
                    self._iterator = self._open()
                batch = next(self._iterator)
            self._started = True
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
        with self._starting_workers():
            if self._iterator is None:
                self._iterator = self._open()
            self._iterator.start_prefetch()

    def _starting_workers(self) -> contextlib.AbstractContextManager:
        return _worker_signals_blocked() if self._num_workers > 0 else contextlib.nullcontext()

    def _close_inner(self) -> None:
        if self._iterator is not None:
            self._iterator.close()
            self._iterator = None
            self._started = False

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
    rows: Sequence[int] | None = None,
) -> TrainIterator:
    """The official training loader: reshuffled every epoch, random transform, fixed-size batches.

    `batch_size` is the global batch (the official config's `batch_size`); this process gets the
    examples at `rows` of each global batch (default: block `shard_index` of `shard_count`, by
    default the JAX process's; see `process_rows`).
    `num_epochs=None` repeats forever; otherwise the stream ends after the last full global batch.
    `num_workers > 0` runs the transform in that many worker processes (grain `mp_prefetch`).
    """
    rows = process_rows(batch_size, shard_index, shard_count) if rows is None else rows
    shuffle_seed, map_seed = _seeds(seed, 2)
    ds = grain.MapDataset.source(source).map_with_index(_with_index)
    ds = ds.shuffle(shuffle_seed).repeat(num_epochs)
    ds = ds.random_map(_NamingErrors(transform, source), seed=map_seed)
    if num_epochs is not None:
        ds = ds[: len(ds) // batch_size * batch_size]
    return TrainIterator(ds, batch_size, rows, num_workers)


class _PaddedRows(_Rows):
    """`_Rows` over a finite set, padded to whole global batches: positions past its end repeat
    its last example with `weight` 0, so every process has full batches whatever the layout."""

    def __call__(self, i: int) -> Batch:
        index = self.index(i)
        example = self.ds[min(index, len(self.ds) - 1)]
        return {**example, "weight": np.float32(index < len(self.ds))}


def make_val_dataset(
    source: DataSource,
    batch_size: int = 16,
    seed: int = 0,
    transform: grain.transforms.RandomMap | None = None,
    first_k: int | None = 10,
    repeat: int = 160,
    shard_index: int | None = None,
    shard_count: int | None = None,
    rows: Sequence[int] | None = None,
) -> grain.MapDataset:
    """The official validation set, with the same batches on every pass for a given seed.

    The official DIV2K configs validate on the first 10 validation images repeated 160 times
    (the defaults `first_k=10, repeat=160`), each with a random scale U(1, 4), a random 48-pixel
    crop, no flips, 2304 queries (the default `transform`), in batches of 16, in order. Pass the
    plain image folder as `source` (without its own `repeat`). Iterate the result (`for batch in
    ds`) once per evaluation. This process gets `rows` of each global batch, as
    `make_train_dataset`; every batch is full, and `weight` (B,) is 0 for the padding that
    completes the last global batch (1 otherwise), so metrics skip it whatever the layout.
    """
    rows = _check_rows(process_rows(batch_size, shard_index, shard_count) if rows is None else rows, batch_size)
    if transform is None:
        transform = RandomScaleDownsample(48, 1.0, 4.0, augment=False, sample_q=2304)
    ds = grain.MapDataset.source(source).map_with_index(_with_index)[:first_k].repeat(repeat)
    ds = ds.random_map(_NamingErrors(transform, source), seed=_seeds(seed, 1)[0])
    n_batches = -(-len(ds) // batch_size)
    local = grain.MapDataset.range(n_batches * len(rows)).map(_PaddedRows(ds, batch_size, rows, 0))
    return local.batch(len(rows))
