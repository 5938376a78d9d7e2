"""`python -m liif_jax.train --workdir DIR [--config NAME | PATH.py | PATH.yaml | --photos FOLDER] [--config.KEY=VALUE ...]`.

`--config` is a shipped config by name (`edsr-baseline-liif`: `experiments/configs/edsr-baseline-liif.py`,
found wherever the package is installed, see `liif_jax.shipped`; default `quickstart`), the path of
a config file, or an official training YAML (`configs/train-div2k/train_edsr-baseline-liif.yaml`),
read by `liif_jax.configs.from_official_yaml`. `--photos FOLDER` trains on one's own photographs
with the recipe of `liif_jax/own_photos.py` for this machine. Started again on the same DIR, it
resumes from the last checkpoint, data iterator included.

SIGTERM or Ctrl-C stops the run at the end of the current step with a checkpoint there, in one
line, with exit status 143 or 130 (128 + the signal's number); a second signal stops it at once.

Several hosts: every process runs the same command with `--distributed` (JAX finds the cluster
on SLURM, Open MPI, TPU pods and Kubernetes), or with `--coordinator_address HOST:PORT
--num_processes N --process_id I` anywhere else. DIR must be the same shared folder for all.
"""

from __future__ import annotations

import difflib
import os
import pathlib
import signal
import socket
import sys
import time

import ml_collections
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
_PHOTOS = flags.DEFINE_string(
    "photos", None, "train on the photographs under this folder (and its sub-folders) with the recipe for this "
    "machine, holding a few out for validation (liif_jax/own_photos.py); instead of --config")
_CONFIGS_PY = pathlib.Path(__file__).resolve().parent / "configs.py"
_OWN_PHOTOS_PY = pathlib.Path(__file__).resolve().parent / "own_photos.py"
# No default here: ml_collections would load it, and apply the --config.KEY overrides, at import
# time, outside `parse_flags`; `explicit_config` names the quickstart when --config is absent.
config_flags.DEFINE_config_file("config", None, "a shipped config's name (quickstart, edsr-baseline-liif, ...), a "
                                "config file, or an official training .yaml (default: quickstart)", lock_config=True)


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
    from liif_jax.stopping import Stopped

    if _PHOTOS.value:
        say_split(_PHOTOS.value)
    try:
        train_lib.train_and_evaluate(flags.FLAGS.config, _WORKDIR.value)
    except Stopped as e:
        print(e, flush=True)
        sys.exit(e.exit_code)
    except (train_lib.TrainingError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def say_split(folder: str) -> None:
    from liif_jax import own_photos

    parts = own_photos.split(folder)
    names = ", ".join(os.path.relpath(f, folder) for f in parts["val"])
    print(f"{len(parts['train'])} photographs under {folder} train; {len(parts['val'])} held out for validation and "
          f"the final table: {names}", flush=True)


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


def _flag_at(argv: list[str], name: str) -> tuple[int, int, str] | None:
    """(index of `--name`, index of its value, the value) in argv, for `--name V` and `--name=V`."""
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        if flag in (f"--{name}", f"-{name}"):
            at = i if eq else i + 1
            return i, at, value if eq else (argv[at] if at < len(argv) else "")
    return None


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


def explicit_config(argv: list[str]) -> list[str]:
    """argv with `--config` naming the config file ml_collections loads (`resolve_config_flag`):
    `--photos FOLDER` -> `liif_jax/own_photos.py:FOLDER`, nothing -> the quickstart."""
    out = list(argv)
    config, photos = _flag_at(out, "config"), _flag_at(out, "photos")
    if photos is not None:
        if config is not None:
            raise app.UsageError("give --photos FOLDER or --config, not both (the --config.KEY=VALUE overrides "
                                 "apply to either)")
        if any(_flag_at(out, f) for f in ("distributed", "coordinator_address", "num_processes", "process_id")):
            raise app.UsageError("--photos trains on one host (all its devices); for several hosts, write a config "
                                 "from liif_jax/own_photos.py or experiments/configs/photos-edsr-baseline-liif.py")
        from liif_jax import own_photos

        own_photos.list_photos(photos[2])  # a missing or empty folder: one line, before any config is built
        return out[:1] + [f"--config={_OWN_PHOTOS_PY}:{photos[2]}"] + out[1:]  # before the overrides
    if config is None:
        return out[:1] + [f"--config={shipped.config_path('quickstart')}"] + out[1:]
    try:
        return resolve_config_flag(out)
    except ValueError as e:  # an unknown config name
        raise app.UsageError(f"--config: {e}") from None


def unknown_key(argv: list[str]) -> str | None:
    """The first `--config.A.B.C` override of argv that names no key of the config, said in one
    line with the keys at that level; None if every override names a key."""
    config = config_flags_lib.ConfigFileFlagParser(name="config").parse(_flag_at(argv, "config")[2])
    for arg in argv:
        flag = arg.partition("=")[0].lstrip("-")
        if not flag.startswith(("config.", "noconfig.")):
            continue
        path = flag.partition(".")[2].split(".")
        node = config
        for depth, key in enumerate(path):
            where = "config" + "".join(f".{k}" for k in path[:depth])
            if not isinstance(node, ml_collections.ConfigDict):
                return f"--config.{'.'.join(path)}: {where} is a {type(node).__name__}, not a group of keys"
            if key not in node:
                close = difflib.get_close_matches(key, list(node.keys()), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                return (f"--config.{'.'.join(path)}: {where} has no key {key!r}{hint}; it has: "
                        f"{', '.join(sorted(node.keys()))}")
            node = node[key]
    return None


def _unknown_key_or_none(argv: list[str]) -> str | None:
    try:
        return unknown_key(argv)
    except Exception:  # the config itself fails to load: ml_collections' own message follows
        return None


def parse_flags(argv: list[str]) -> list[str]:
    """absl parsing, with a one-line error for a config key that does not exist."""
    try:
        argv = explicit_config(argv)
        return flags.FLAGS(argv)
    except (AttributeError, KeyError, TypeError) as e:  # ml_collections, for --config.<unknown key>
        msg = _unknown_key_or_none(argv) or str(e).strip("'\"").replace("\\n", " ").replace("\\'", "'")
        print(f"error: unknown config key in the command line: {msg}", file=sys.stderr)
        sys.exit(2)
    except (app.UsageError, ValueError) as e:  # ImageError is a ValueError: --photos FOLDER
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except (flags.Error, config_flags_lib.UnsupportedOperationError) as e:
        print(f"error: {e}\nPass --helpfull for the flags.", file=sys.stderr)
        sys.exit(2)


def run() -> None:
    """`python -m liif_jax.train` and the `liif-train` command."""
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
