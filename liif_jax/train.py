"""`python -m liif_jax.train --workdir DIR [--config NAME | PATH.py | PATH.yaml] [--config.KEY=VALUE ...]`.

`--config` is a shipped config by name (`edsr-baseline-liif`: `experiments/configs/edsr-baseline-liif.py`,
found wherever the package is installed, see `liif_jax.shipped`; default `quickstart`), the path of
a config file, or an official training YAML (`configs/train-div2k/train_edsr-baseline-liif.yaml`),
read by `liif_jax.configs.from_official_yaml`. Started again on the same DIR, it resumes from the
last checkpoint, data iterator included.

Several hosts: every process runs the same command with `--distributed` (JAX finds the cluster
on SLURM, Open MPI, TPU pods and Kubernetes), or with `--coordinator_address HOST:PORT
--num_processes N --process_id I` anywhere else. DIR must be the same shared folder for all.
"""

from __future__ import annotations

import pathlib
import socket
import sys
import time

from absl import app, flags, logging
from ml_collections import config_flags
from ml_collections.config_flags import config_flags as config_flags_lib

from liif_jax import shipped

_WORKDIR = flags.DEFINE_string("workdir", None, "directory for checkpoints, metrics and the resolved config", required=True)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "several processes: call jax.distributed.initialize(), which detects SLURM, Open MPI, "
    "TPU pods and Kubernetes; elsewhere give the three flags below (they imply --distributed)")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0's coordinator service")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "number of processes", lower_bound=1)
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "this process's index, 0 .. num_processes - 1", lower_bound=0)
_INIT_TIMEOUT = flags.DEFINE_integer(
    "initialization_timeout", 300, "seconds to wait for the coordinator and every process to join", lower_bound=1)
_HEARTBEAT_TIMEOUT = flags.DEFINE_integer(
    "heartbeat_timeout", 100, "seconds without a heartbeat after which a process counts as dead and the others "
    "stop with an error", lower_bound=1)
_CONFIGS_PY = pathlib.Path(__file__).resolve().parent / "configs.py"
config_flags.DEFINE_config_file("config", str(shipped.configs_dir() / "quickstart.py"), "a shipped config's name "
                                "(quickstart, edsr-baseline-liif, ...), a config file, or an official training .yaml "
                                "(default: quickstart)", lock_config=True)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:  # progress lines only; orbax/grain INFO logs with --verbosity=0
        logging.set_verbosity(logging.WARNING)
    import jax

    explicit = {"coordinator_address": _COORDINATOR.value, "num_processes": _NUM_PROCESSES.value,
                "process_id": _PROCESS_ID.value}
    if _DISTRIBUTED.value or any(v is not None for v in explicit.values()):
        try:
            if _COORDINATOR.value and _PROCESS_ID.value:  # not process 0, which starts the coordinator
                wait_for_coordinator(_COORDINATOR.value, _INIT_TIMEOUT.value)
            jax.distributed.initialize(**explicit, initialization_timeout=_INIT_TIMEOUT.value,
                                       heartbeat_timeout_seconds=_HEARTBEAT_TIMEOUT.value)
        except (RuntimeError, ValueError, OSError) as e:  # XlaRuntimeError is a RuntimeError
            where = _COORDINATOR.value or "the auto-detected coordinator"
            print(f"error: cannot start the distributed run ({where}, --initialization_timeout "
                  f"{_INIT_TIMEOUT.value} s): {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
            sys.exit(1)
    from liif_jax import train_lib

    try:
        train_lib.train_and_evaluate(flags.FLAGS.config, _WORKDIR.value)
    except (train_lib.TrainingError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


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


def config_file_argument(value: str) -> str:
    """What `--config VALUE` hands to ml_collections: a shipped config's name -> its file,
    `X.yaml` -> `liif_jax/configs.py:X.yaml` (which converts the official YAML), a path unchanged."""
    if value.endswith((".yaml", ".yml")):
        return f"{_CONFIGS_PY}:{value}"
    if shipped.is_config_name(value) and not pathlib.Path(value).is_file():
        return str(shipped.config_path(value))
    return value


def resolve_config_flag(argv: list[str]) -> list[str]:
    """argv with `--config VALUE` (or `--config=VALUE`) passed through `config_file_argument`."""
    out = list(argv)
    for i, arg in enumerate(out):
        name, eq, value = arg.partition("=")
        if name not in ("--config", "-config"):
            continue
        at = i if eq else i + 1  # --config=VALUE, or --config VALUE
        if at < len(out):
            out[at] = (f"{name}=" if eq else "") + config_file_argument(value if eq else out[at])
    return out


def parse_flags(argv: list[str]) -> list[str]:
    """absl parsing, with a one-line error for a config key that does not exist."""
    try:
        argv = resolve_config_flag(argv)
    except ValueError as e:  # an unknown config name
        print(f"error: --config: {e}", file=sys.stderr)
        sys.exit(2)
    try:
        return flags.FLAGS(argv)
    except (AttributeError, KeyError) as e:  # raised by ml_collections for --config.<unknown key>
        msg = str(e).strip("'\"").replace("\\n", " ").replace("\\'", "'")
        print(f"error: unknown config key in the command line: {msg}", file=sys.stderr)
        sys.exit(2)
    except (flags.Error, config_flags_lib.UnsupportedOperationError) as e:
        print(f"error: {e}\nPass --helpfull for the flags.", file=sys.stderr)
        sys.exit(2)


def run() -> None:
    """`python -m liif_jax.train` and the `liif-train` command."""
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
