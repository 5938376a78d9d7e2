"""A training run's log: `metrics.jsonl` and TensorBoard events (process 0 only), and durations
as the progress lines print them.
"""

from __future__ import annotations

import json
import os
import pathlib

import jax


class MetricWriter:
    """metrics.jsonl (one JSON object per row) and TensorBoard events, on process 0 only."""

    def __init__(self, workdir: pathlib.Path, resume_step: int):
        self.enabled = jax.process_index() == 0
        self.path = workdir / "metrics.jsonl"
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

    def close(self) -> None:
        if self.enabled:
            self._tb.close()


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"
