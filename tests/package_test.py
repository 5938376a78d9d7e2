"""The package works wherever it is installed: the wheel `pip wheel .` builds, in a fresh venv,
used from an empty folder, with no clone in sight.

The wheel is built from a copy of the source tree (a stale `build/` cannot leak into it) and
installed with its dependencies from the package registry, as a user would. Then, from an empty
folder: the quick start (a few steps, one scale in the final table, to stay quick) ends with the
shipped model's column; `demo` renders with the run and with the shipped model by name; a config
is found by name.
"""

import email
import os
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import skimage.data
from PIL import Image

import liif_jax

from conftest import REPO

# What the wheel carries besides the package's modules: the configs' split files, the shipped
# model and its provenance, the GPU target descriptions and the app's page (package data, inside liif_jax/).
DATA = {
    "liif_jax/configs": ["splits/*.json"],
    "liif_jax/pretrained": ["*.md", "*.json", "*.jsonl", "edsr-baseline-liif/**/*"],
    "liif_jax/aot": ["gpu_targets/*"],
    "liif_jax/app": ["static/*"],
}
DIST_INFO = {"METADATA", "WHEEL", "RECORD", "entry_points.txt", "top_level.txt", "licenses/LICENSE"}
SCRIPTS = {
    "liif-train": "liif_jax.train:run",
    "liif-evaluate": "liif_jax.evaluate:main",
    "liif-demo": "liif_jax.demo:main",
    "liif-convert": "liif_jax.convert:main",
    "liif-app": "liif_jax.app.__main__:main",
}
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "runs", "workdirs", "tmp", ".whl"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
    src = tmp_path_factory.mktemp("src") / "liif_jax"
    shutil.copytree(REPO, src, ignore=NOT_SOURCE)
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(src)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    [whl] = dist.glob("liif_jax-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> pathlib.Path:
    """A fresh venv holding the wheel and its dependencies, and nothing of the clone."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=300)
    # This interpreter's pip installs into it; --no-compile: Python compiles what it imports (half the time).
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", root / "bin" / "python", "install", "-q", "--no-compile", str(wheel)],
        check=True,
        capture_output=True,
        timeout=900,
    )
    return root


def data_files() -> set[str]:
    """The package data files of the source tree, as wheel paths."""
    return {
        p.relative_to(REPO).as_posix()
        for folder, patterns in DATA.items()
        for pattern in patterns
        for p in (REPO / folder).glob(pattern)
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_the_wheel_holds_the_modules_the_configs_and_the_shipped_model_and_nothing_else(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        dist_info = f"liif_jax-{liif_jax.__version__}.dist-info/"
        assert {n.removeprefix(dist_info) for n in names if n.startswith(dist_info)} == DIST_INFO
        modules = {
            p.relative_to(REPO).as_posix() for p in (REPO / "liif_jax").rglob("*.py") if "__pycache__" not in p.parts
        }
        assert {n for n in names if not n.startswith(dist_info)} == modules | data_files()
        assert not any(n.startswith("experiments/") for n in names)
        meta = email.message_from_bytes(z.read(dist_info + "METADATA"))
        scripts = z.read(dist_info + "entry_points.txt").decode()
    assert meta["Version"] == liif_jax.__version__ and meta["Requires-Python"] == ">=3.12"
    assert meta["License-Expression"] == "BSD-3-Clause" and meta["License-File"] == "LICENSE"
    assert {line.split(" = ")[0]: line.split(" = ")[1] for line in scripts.splitlines() if " = " in line} == SCRIPTS
    # The README says how big the wheel is.
    stated = float(re.search(r"the wheel is ([\d.]+) MB", (REPO / "README.md").read_text()).group(1))
    assert abs(wheel.stat().st_size / 1e6 - stated) <= 0.05 * stated, (wheel.stat().st_size, stated)


def test_from_an_empty_folder_the_installed_wheel_trains_compares_with_the_shipped_model_and_renders(venv, tmp_path):
    here = tmp_path / "empty"
    here.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["JAX_PLATFORMS"] = "cpu"
    bin_ = venv / "bin"

    def run(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(c) for c in cmd], cwd=here, env=env, capture_output=True, text=True, timeout=600)

    where = run(bin_ / "python", "-c", "import liif_jax; print(liif_jax.__file__)")
    assert pathlib.Path(where.stdout.strip()).is_relative_to(venv), where  # the wheel's copy, not the clone

    # The quick start's command (defaults: the quickstart config), a few steps, the final table at x4.
    out = run(
        bin_ / "python",
        "-m",
        "liif_jax.train",
        "--workdir",
        "runs/q",
        "--config.num_steps=10",
        "--config.final_eval.scales=(4,)",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "step 10/10" in out.stdout
    assert (
        "| scale | bicubic (dB) | q (EDSR-baseline 16x64, MLP 256x4) (dB) | gain | "
        "pretrained:edsr-baseline-liif (EDSR-baseline 16x64, MLP 256x4) (dB) | gain |"
    ) in out.stdout
    [row] = [line for line in out.stdout.splitlines() if line.startswith("| x4 |")]
    bicubic, _, _, shipped, gain = (float(x) for x in row.strip("| ").split("|")[1:])
    assert shipped > bicubic and gain > 0.5  # the shipped model, not just a column
    assert f"the run is in {here / 'runs' / 'q'}" in out.stdout

    # demo with the run (console script) and with the shipped model by name (python -m).
    photo = np.asarray(Image.open(pathlib.Path(skimage.data.__file__).parent / "chelsea.png").convert("RGB"))
    Image.fromarray(photo[100:148, 150:214]).save(here / "photo.png")
    out = run(bin_ / "liif-demo", "--model", "runs/q", "--input", "photo.png", "--scale", "2", "--output", "q_x2.png")
    assert out.returncode == 0, out.stderr[-3000:]
    out = run(
        bin_ / "python",
        "-m",
        "liif_jax.demo",
        "--model",
        "pretrained:edsr-baseline-liif",
        "--input",
        "photo.png",
        "--scale",
        "3",
        "--output",
        "shipped_x3.png",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert Image.open(here / "q_x2.png").size == (128, 96) and Image.open(here / "shipped_x3.png").size == (192, 144)

    # Any shipped config by name: this one reads its split file from the wheel, then stops on the
    # photographs it needs (a one-line error naming the Debian packages).
    out = run(
        bin_ / "liif-train",
        "--workdir",
        "runs/photos",
        "--config",
        "photos-edsr-baseline-liif",
        "--config.photos_dir=nowhere",
    )
    assert out.returncode == 1 and out.stderr.startswith("error: 24 of the 24 'train' photographs of "), out.stderr[
        -3000:
    ]
    assert "liif_jax/configs/splits/photos.json" in out.stderr and "lomiri-wallpapers" in out.stderr
    assert sorted(p.name for p in here.iterdir()) == ["photo.png", "q_x2.png", "runs", "shipped_x3.png"]
