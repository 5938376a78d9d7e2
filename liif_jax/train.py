"""`python -m liif_jax.train --workdir DIR [--config experiments/configs/X.py] [--config.KEY=VALUE ...]`.

`--config` may also be an official training YAML (`configs/train-div2k/train_edsr-baseline-liif.yaml`),
read by `liif_jax.configs.from_official_yaml`. Started again on the same DIR, it resumes from the
last checkpoint, data iterator included.
"""

from __future__ import annotations

import pathlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags
from ml_collections.config_flags import config_flags as config_flags_lib

_WORKDIR = flags.DEFINE_string("workdir", None, "directory for checkpoints, metrics and the resolved config", required=True)
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize() (multi-host TPU/GPU)")
_QUICKSTART = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "configs" / "quickstart.py"
_CONFIGS_PY = pathlib.Path(__file__).resolve().parent / "configs.py"
config_flags.DEFINE_config_file("config", str(_QUICKSTART), "experiment config file (default: the quickstart)", lock_config=True)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:  # progress lines only; orbax/grain INFO logs with --verbosity=0
        logging.set_verbosity(logging.WARNING)
    import jax

    if _DISTRIBUTED.value:
        jax.distributed.initialize()
    from liif_jax import train_lib

    try:
        train_lib.train_and_evaluate(flags.FLAGS.config, _WORKDIR.value)
    except (train_lib.TrainingError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def official_yaml_to_config_file(argv: list[str]) -> list[str]:
    """`--config X.yaml` -> `--config liif_jax/configs.py:X.yaml`, which converts the official YAML."""
    out = list(argv)
    for i, arg in enumerate(out):
        name, eq, value = arg.partition("=")
        if name not in ("--config", "-config"):
            continue
        at = i if eq else i + 1  # --config=X.yaml, or --config X.yaml
        value = value if eq else (out[at] if at < len(out) else "")
        if value.endswith((".yaml", ".yml")):
            out[at] = (f"{name}=" if eq else "") + f"{_CONFIGS_PY}:{value}"
    return out


def parse_flags(argv: list[str]) -> list[str]:
    """absl parsing, with a one-line error for a config key that does not exist."""
    argv = official_yaml_to_config_file(argv)
    try:
        return flags.FLAGS(argv)
    except (AttributeError, KeyError) as e:  # raised by ml_collections for --config.<unknown key>
        msg = str(e).strip("'\"").replace("\\n", " ").replace("\\'", "'")
        print(f"error: unknown config key in the command line: {msg}", file=sys.stderr)
        sys.exit(2)
    except (flags.Error, config_flags_lib.UnsupportedOperationError) as e:
        print(f"error: {e}\nPass --helpfull for the flags.", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
