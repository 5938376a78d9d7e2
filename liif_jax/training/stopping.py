"""Stopping a training run on SIGTERM or SIGINT (Ctrl-C) at a checkpoint instead of dying mid-step.

The first signal is a request: the run finishes the step it is in, saves a checkpoint there (data
position included), stops its grain workers and raises `Stopped`, which the CLI prints as one line
and turns into exit status 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM), the shell's
convention. The first signal also restores the default action of both, so a second one ends the
process at once (the grain workers follow it: `pipeline` makes them exit with their parent).

Several processes (`jax.distributed`): JAX's preemption service owns SIGTERM and makes every
process stop at one common step (`train_lib.stop_point`); SIGINT is passed on to it as SIGTERM, so
Ctrl-C stops a multi-process run the same way. Only the main thread can install signal handlers;
elsewhere (a training thread in a notebook, say) signals keep their usual meaning, and so does a
signal that the parent process set to be ignored (`nohup`, a background job of a script).
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType


def exit_code(signum: int) -> int:
    """The exit status of a run stopped by `signum`: 128 + its number, as the shell reports it."""
    return 128 + signum


class Stopped(Exception):
    """The run stopped on a signal; the message says where and what was saved."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_code = exit_code(signum)


class StopRequest:
    """While active (a context manager), SIGTERM and SIGINT set `signum` instead of ending the process.

    With `defer` set (the training loop), a request waits for the loop to check `requested` at the
    end of the step; otherwise (setup, the final evaluation) the first signal raises `Stopped` at
    once in the main thread, saying it stopped `where`. With `forward_sigint` (several processes),
    SIGTERM is left to JAX and SIGINT is re-sent to this process as SIGTERM.
    """

    def __init__(self, forward_sigint: bool = False):
        self.signum: int | None = None
        self.defer = False
        self.where = "before training started; nothing new was saved"
        self._signals = (signal.SIGINT,) if forward_sigint else (signal.SIGINT, signal.SIGTERM)
        self._forward = forward_sigint
        self._saved: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def raise_if_requested(self) -> None:
        if self.signum is not None:
            raise Stopped(f"stopped {self.where}", self.signum)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            # A signal ignored by whoever started the process (nohup, `cmd &` in a script) stays ignored.
            mine = [sig for sig in self._signals if signal.getsignal(sig) is not signal.SIG_IGN]
            self._saved = {sig: signal.signal(sig, self._handle) for sig in mine}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        del frame
        if self.signum is not None:
            return
        self.signum = signum
        for sig in self._saved:  # a second signal ends the process at once
            signal.signal(sig, signal.SIG_DFL)
        if self._forward:
            os.kill(os.getpid(), signal.SIGTERM)  # to JAX's preemption service
        elif not self.defer:
            self.raise_if_requested()
