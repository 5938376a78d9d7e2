"""A training run's log: `metrics.jsonl`, TensorBoard events and `curves.png` (process 0 only),
and durations as the progress lines print them; progress lines for long renders and evaluations.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import time
from collections.abc import Callable

import jax

from liif_jax.formats.atomic import written_whole

CURVES = "curves.png"


class MetricWriter:
    """metrics.jsonl (one JSON object per row) and TensorBoard events, on process 0 only."""

    def __init__(self, workdir: pathlib.Path, resume_step: int):
        self.enabled = jax.process_index() == 0
        self.workdir, self.path, self.told = workdir, workdir / "metrics.jsonl", False
        if not self.enabled:
            return
        self._truncate_after(resume_step)
        from tensorboardX import SummaryWriter

        self._tb = SummaryWriter(
            os.fspath(workdir / "tensorboard"), purge_step=resume_step + 1 if resume_step else None
        )

    def _truncate_after(self, step: int) -> None:
        """Rows logged after the checkpoint we resume from are logged again by the resumed run."""
        if not self.path.exists():
            return
        rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        kept = [r for r in rows if r["step"] <= step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def write(self, step: int, **scalars: float) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **scalars}) + "\n")
        for k, v in scalars.items():
            self._tb.add_scalar(k, v, step)
        self._tb.flush()

    def plot_curves(self) -> None:
        """`curves.png`: a picture of the run so far that any image viewer opens; the first time,
        says where it is and how to follow the run in TensorBoard."""
        if not self.enabled:
            return
        try:
            plot_curves(self.path, self.workdir / CURVES)
        except OSError as err:  # a picture is not worth stopping the run for
            print(f"warning: cannot write {self.workdir / CURVES}: {err}", file=sys.stderr, flush=True)
            return
        if not self.told:
            self.told = True
            print(
                f"loss and validation PSNR: {self.workdir / CURVES} (redrawn at each validation); live: "
                f"tensorboard --logdir {self.workdir / 'tensorboard'}",
                flush=True,
            )

    def close(self) -> None:
        if self.enabled:
            self._tb.close()


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class ProgressLines:
    """A `progress(done, total)` callback that prints `WHAT: done/total UNIT, elapsed, ETA` lines, so
    that work of more than a few seconds is not silent: nothing before `after` seconds (short work
    stays quiet), then at most one line every `every` seconds, and the last one when it ends."""

    def __init__(
        self,
        what: str,
        unit: str = "blocks",
        after: float = 3.0,
        every: float = 3.0,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.what, self.unit, self.after, self.every, self.clock = what, unit, after, every, clock
        self.start, self.last = clock(), None

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        elapsed = now - self.start
        finished = done >= total
        if elapsed < self.after or (self.last is None and finished):
            return
        if self.last is not None and now - self.last < self.every and not finished:
            return
        self.last = now
        eta = format_duration(elapsed * (total - done) / done) if done else "?"
        print(
            f"{self.what}: {done}/{total} {self.unit}, {format_duration(elapsed)} elapsed, ETA {eta}",
            file=sys.stderr,
            flush=True,
        )


def plot_curves(metrics: pathlib.Path, path: pathlib.Path) -> None:
    """Training loss and validation PSNR against the step, side by side, from `metrics.jsonl`."""
    from matplotlib.figure import Figure  # no pyplot: no display, no global state

    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    figure = Figure(figsize=(9, 3.5), dpi=100, layout="tight")
    for axes, key, label in zip(
        figure.subplots(1, 2), ("loss", "val_psnr"), ("training loss (L1)", "validation PSNR (dB)")
    ):
        points = [(r["step"], r[key]) for r in rows if key in r]
        if points:
            axes.plot(*zip(*points), "o-" if len(points) < 30 else "-")
        axes.set_xlabel("step")
        axes.set_ylabel(label)
        axes.grid(True, alpha=0.3)
    with written_whole(path) as tmp:
        figure.savefig(tmp, format="png")
