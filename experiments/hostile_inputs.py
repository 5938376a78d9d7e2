"""Time and peak memory of each CLI on hostile inputs (crafted checkpoints and images), as separate processes.

    PYTHONPATH=. python experiments/hostile_inputs.py OUT_DIR > experiments/results/hostile_inputs.md

Each case must end in one `error:` line with exit 1 or 2; the table gives wall time and the peak
resident memory of the process (/usr/bin/time), jax import included. The crafted files are made by the
helpers of tests/pth_hostile_test.py.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time
import zipfile

import numpy as np
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
from pth_hostile_test import Tensor, craft  # noqa: E402

from liif_jax.formats.checkpoints import save_model  # noqa: E402
from liif_jax.formats.pth import save_pth  # noqa: E402
from liif_jax.models import build_model  # noqa: E402

TINY = {
    "name": "liif",
    "args": {
        "encoder_spec": {"name": "edsr-baseline", "args": {"n_resblocks": 1, "n_feats": 4, "no_upsampling": True}},
        "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [8]}},
    },
}


def bomb(path: pathlib.Path, gib: int) -> pathlib.Path:
    """A storage honestly declaring `gib` GiB of float32 zeros, deflated to a few MB."""
    numel = gib << 28
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", craft_pickle({"model": {"w": Tensor(numel=numel, size=(numel,))}}))
        with z.open(zipfile.ZipInfo("archive/data/0"), "w", force_zip64=True) as f:
            zeros = bytes(64 << 20)
            for _ in range(gib * 16):
                f.write(zeros)
    return path


def craft_pickle(obj) -> bytes:
    from pth_hostile_test import pickled

    return pickled(obj)


def make_cases(out: pathlib.Path) -> list[tuple[str, list[str]]]:
    photo = out / "photo.png"
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(photo)
    Image.new("RGB", (8, 8)).save(out / "disguised.png", "EPS")
    f32 = lambda n: np.zeros(n, np.float32).tobytes()
    pth = {
        "view over 1 element": craft(
            out / "oob.pth", {"model": {"w": Tensor(numel=1, size=(4096, 76), stride=(76, 1))}}, {"0": f32(1)}
        ),
        "stride 2^40": craft(
            out / "stride.pth", {"model": {"w": Tensor(numel=4, size=(2,), stride=(2**40,))}}, {"0": f32(4)}
        ),
        "stride 0, 40000x40000": craft(
            out / "zero.pth", {"model": {"w": Tensor(numel=1, size=(40000, 40000), stride=(0, 0))}}, {"0": f32(1)}
        ),
        "2 GiB deflate bomb": bomb(out / "bomb.pth", 2),
        "100000-deep nesting": craft(out / "deep.pth", pkl=b"\x80\x02" + b"]" * 100_000 + b"a" * 99_999 + b"."),
    }
    save_pth(
        out / "spec.pth",
        {
            "model": {
                "name": "liif",
                "args": {
                    "encoder_spec": {"name": "edsr-baseline", "args": {"no_upsampling": True, "n_resblocks": 10**7}}
                },
                "sd": {},
            }
        },
    )
    pth["n_resblocks 10^7"] = out / "spec.pth"
    import jax

    model = build_model(TINY)
    params = jax.tree.map(lambda x: np.full_like(x, np.nan), model.init(jax.random.key(0)))
    save_model(out / "nan_ckpt", TINY, params)
    demo = [sys.executable, "-m", "liif_jax.demo", "--input", str(photo), "--output", str(out / "out.png")]
    cases = [(f"demo: {name}", demo + ["--model", str(p), "--scale", "2"]) for name, p in pth.items()]
    cases += [
        ("demo: NaN weights", demo + ["--model", str(out / "nan_ckpt"), "--scale", "2"]),
        (
            "demo: EPS named .png",
            demo[:3]
            + [
                "--input",
                str(out / "disguised.png"),
                "--output",
                str(out / "o.png"),
                "--model",
                str(out / "nan_ckpt"),
                "--scale",
                "2",
            ],
        ),
        ("demo: --scale inf", demo + ["--model", str(out / "nan_ckpt"), "--scale", "inf"]),
        (
            "demo: --resolution 100000,100000",
            demo + ["--model", str(out / "nan_ckpt"), "--resolution", "100000,100000"],
        ),
        ("convert: NaN weights", [sys.executable, "-m", "liif_jax.convert", str(out / "nan_ckpt"), str(out / "c.pth")]),
        (
            "evaluate: --json is a folder",
            [
                sys.executable,
                "-m",
                "liif_jax.evaluate",
                "--model",
                str(out / "nan_ckpt"),
                "--hr-dir",
                str(out),
                "--scale",
                "2",
                "--protocol",
                "plain",
                "--json",
                str(out),
            ],
        ),
        (
            "train: num_steps -5",
            [sys.executable, "-m", "liif_jax.train", "--workdir", str(out / "wd"), "--config.num_steps=-5"],
        ),
        ("train: params-only workdir", [sys.executable, "-m", "liif_jax.train", "--workdir", str(out / "nan_ckpt")]),
    ]
    return cases


def main(out: str) -> None:
    out_dir = pathlib.Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    print("| case | exit | seconds | peak MB | last line |\n| --- | ---: | ---: | ---: | --- |")
    for name, cmd in make_cases(out_dir):
        # /usr/bin/time measures the peak: a child forked from this (jax-importing) process would
        # inherit this process's peak as its own ru_maxrss.
        peak_file = out_dir / "peak_kb"
        start = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", str(peak_file), *cmd],
            capture_output=True,
            text=True,
            env={**os.environ, "JAX_PLATFORMS": "cpu"},
        )
        seconds = time.perf_counter() - start
        err = proc.stderr.strip().splitlines()
        code, peak_mb = proc.returncode, int(peak_file.read_text().split()[-1]) / 1024
        last = err[-1] if err else ""
        one_line = len(err) == 1 and last.startswith("error:")
        print(
            f"| {name} | {code} | {seconds:.1f} | {peak_mb:.0f} | "
            f"{'one line: ' if one_line else f'{len(err)} lines, last: '}`{last[:110]}` |",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1])
