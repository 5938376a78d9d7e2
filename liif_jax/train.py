"""`python -m liif_jax.train --workdir DIR [--config NAME | PATH.py | PATH.yaml | --photos FOLDER] [--config.KEY=VALUE ...]`.

`--config` is a shipped config by name (`edsr_baseline_liif` or `edsr-baseline-liif`: the module
`liif_jax/configs/edsr_baseline_liif.py`; default `quickstart`), the path of a config file, or an
official training YAML (`configs/train-div2k/train_edsr-baseline-liif.yaml`); `--config.KEY=VALUE`
sets any field of it (`liif_jax.configs.load` and `apply_overrides`). `--photos FOLDER` trains on
one's own photographs with the recipe for this machine (`liif_jax/configs/own_photos.py`).
`--init MODEL` starts from another model's params (fine-tuning) with a new optimizer.
Started again on the same DIR, it resumes from the last checkpoint, data iterator included.

SIGTERM or Ctrl-C stops the run at the end of the current step with a checkpoint there, in one
line, with exit status 143 or 130 (128 + the signal's number); a second signal stops it at once.

Several hosts: every process runs the same command with `--distributed` (JAX finds the cluster
on SLURM, Open MPI, TPU pods and Kubernetes), or with `--coordinator_address HOST:PORT
--num_processes N --process_id I` anywhere else. DIR must be the same shared folder for all.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time

import ml_collections
from absl import app, flags, logging

from liif_jax import configs

_WORKDIR = flags.DEFINE_string(
    "workdir", None, "directory for checkpoints, metrics and the resolved config", required=True
)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed",
    False,
    "several processes: call jax.distributed.initialize(), which detects SLURM, Open MPI, "
    "TPU pods and Kubernetes; elsewhere give the three flags below (they imply --distributed)",
)
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0's coordinator service")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "number of processes", lower_bound=1)
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "this process's index, 0 .. num_processes - 1", lower_bound=0)
_INIT_TIMEOUT = flags.DEFINE_integer(
    "initialization_timeout", 300, "seconds to wait for the coordinator and every process to join", lower_bound=1
)
_HEARTBEAT_TIMEOUT = flags.DEFINE_integer(
    "heartbeat_timeout",
    100,
    "seconds without a heartbeat after which a process counts as dead and the others stop with an error",
    lower_bound=1,
)
_PHOTOS = flags.DEFINE_string(
    "photos",
    None,
    "train on the photographs under this folder (and its sub-folders) with the recipe for this "
    "machine, holding a few out for validation (liif_jax/configs/own_photos.py); instead of --config",
)
_INIT = flags.DEFINE_string(
    "init",
    None,
    "start from this model's params with a new optimizer (fine-tuning): pretrained:NAME, a workdir, a "
    "checkpoint, or an official or LTE .pth; its model must be the config's (config.init)",
)
_CONFIG = flags.DEFINE_string(
    "config",
    "quickstart",
    "a shipped config's name (quickstart, edsr_baseline_liif, ...; liif_jax/configs/), a "
    "config file (FILE.py or FILE.py:ARG), or an official training .yaml; --config.KEY=VALUE overrides its fields",
)


def main(argv: list[str]) -> None:
    try:
        _main(argv)
    except KeyboardInterrupt:  # Ctrl-C before training took over the signal (imports, cluster start)
        print("stopped before training started; nothing was saved", flush=True)
        sys.exit(128 + signal.SIGINT)


def _main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:  # progress lines only; orbax/grain INFO logs with --verbosity=0
        logging.set_verbosity(logging.WARNING)
    import jax

    explicit = {
        "coordinator_address": _COORDINATOR.value,
        "num_processes": _NUM_PROCESSES.value,
        "process_id": _PROCESS_ID.value,
    }
    if _DISTRIBUTED.value or any(v is not None for v in explicit.values()):
        try:
            if _COORDINATOR.value and _PROCESS_ID.value:  # not process 0, which starts the coordinator
                wait_for_coordinator(_COORDINATOR.value, _INIT_TIMEOUT.value)
            jax.distributed.initialize(
                **explicit,
                initialization_timeout=_INIT_TIMEOUT.value,
                heartbeat_timeout_seconds=_HEARTBEAT_TIMEOUT.value,
            )
        except (RuntimeError, ValueError, OSError) as e:  # XlaRuntimeError is a RuntimeError
            where = _COORDINATOR.value or "the auto-detected coordinator"
            print(
                f"error: cannot start the distributed run ({where}, --initialization_timeout "
                f"{_INIT_TIMEOUT.value} s): {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                file=sys.stderr,
            )
            sys.exit(1)
    from liif_jax.training import trainer
    from liif_jax.training.stopping import Stopped

    if _PHOTOS.value:
        say_split(_PHOTOS.value)
    try:
        trainer.train_and_evaluate(_RUN_CONFIG, _WORKDIR.value)
    except Stopped as e:
        print(e, flush=True)
        sys.exit(e.exit_code)
    except (trainer.TrainingError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def say_split(folder: str) -> None:
    from liif_jax.data import own_photos

    parts = own_photos.split(folder)
    names = ", ".join(os.path.relpath(f, folder) for f in parts["val"])
    print(
        f"{len(parts['train'])} photographs under {folder} train; {len(parts['val'])} held out for validation and "
        f"the final table: {names}",
        flush=True,
    )


def wait_for_coordinator(address: str, timeout: float) -> None:
    """Waits until process 0's coordinator accepts connections. JAX aborts the whole process,
    with no Python error to catch, when it cannot register with the coordinator in time; this
    check turns the common case (wrong address, process 0 not started) into a one-line error."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--coordinator_address {address!r} must be HOST:PORT")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
                return
        except OSError as e:
            if time.monotonic() > deadline:
                raise ConnectionError(f"nothing answers at {address}: {e}") from None
            time.sleep(0.5)


def config_overrides(args: list[str]) -> list[tuple[str, str]]:
    """`--config.KEY=VALUE`, `--config.KEY VALUE`, `--config.KEY` and `--noconfig.KEY` of the
    arguments absl left unparsed, as (KEY, VALUE) pairs; anything else is a usage error."""
    out, i = [], 0
    while i < len(args):
        flag, eq, value = args[i].partition("=")
        name = flag.lstrip("-")
        if not flag.startswith("-") or not name.startswith(("config.", "noconfig.")):
            raise app.UsageError(f"unknown flag or argument {args[i]!r} (--help lists the flags)")
        if name.startswith("noconfig."):
            out.append((name.removeprefix("noconfig."), "False"))
        elif eq:
            out.append((name.removeprefix("config."), value))
        elif i + 1 < len(args) and not args[i + 1].startswith("-"):
            out.append((name.removeprefix("config."), args[i + 1]))
            i += 1
        else:
            out.append((name.removeprefix("config."), "True"))
        i += 1
    return out


def build_config(argv: list[str]) -> ml_collections.ConfigDict:
    """The run's config: `--photos FOLDER` (the own-photos recipe) or `--config VALUE`
    (`liif_jax.configs.load`), then the `--config.KEY=VALUE` overrides of `argv`."""
    if _PHOTOS.value is not None:
        if flags.FLAGS["config"].present:
            raise app.UsageError(
                "give --photos FOLDER or --config, not both (the --config.KEY=VALUE overrides apply to either)"
            )
        if _DISTRIBUTED.value or any(
            flags.FLAGS[f].present for f in ("coordinator_address", "num_processes", "process_id")
        ):
            raise app.UsageError(
                "--photos trains on one host (all its devices); for several hosts, write a config "
                "from liif_jax/configs/own_photos.py"
            )
        from liif_jax.data import own_photos

        own_photos.list_photos(_PHOTOS.value)  # a missing or empty folder: one line, before any config is built
        config = configs.get("own_photos", _PHOTOS.value)
    else:
        config = configs.load(_CONFIG.value)
    configs.apply_overrides(config, config_overrides(argv[1:]))
    if _INIT.value is not None:
        config.init = _INIT.value
    return config


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flags, then the config; any mistake is one line and exit status 2."""
    global _RUN_CONFIG
    try:
        rest = flags.FLAGS(argv, known_only=True)
        _RUN_CONFIG = build_config(rest)
        return rest[:1]
    except (app.UsageError, ValueError, OSError, flags.Error) as e:  # ImageError is a ValueError: --photos FOLDER
        print(f"error: {str(e).strip()}", file=sys.stderr)
        sys.exit(2)


_RUN_CONFIG: ml_collections.ConfigDict | None = None


def run() -> None:
    """`python -m liif_jax.train` and the `liif-train` command."""
    main_module = sys.modules["__main__"]
    if not main_module.__doc__:  # the console script's wrapper: absl's --help prints __main__'s docstring
        main_module.__doc__ = __doc__
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
