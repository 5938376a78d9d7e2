"""The Colab notebook runs top to bottom on CPU, trains, resumes, renders and evaluates.

It is executed with nbclient in a kernel of this interpreter, with tiny settings injected by
replacing its `parameters` cell, on 2 virtual CPU devices (so the data-parallel step splits the
batch). Its last cell prints a JSON summary (`LIIF_SUMMARY {...}`) that the checks read.
"""

import json
import math
import pathlib
import re
import subprocess
import sys
import types

import nbformat
import pytest
from nbclient import NotebookClient

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "experiments" / "notebooks" / "liif_jax_colab.ipynb"
KERNEL = "liif-jax-notebook-test"
SUMMARY = "LIIF_SUMMARY "

# A model and batch small enough for 2 CPU cores; same model on every run, so a run resumes.
TINY_OVERRIDES = {
    "model.args.encoder_spec.args.n_resblocks": 1,
    "model.args.encoder_spec.args.n_feats": 8,
    "model.args.imnet_spec.args.hidden_list": [16],
    "init": "",
    "data.train.wrapper.args.inp_size": 16,
    "data.train.wrapper.args.sample_q": 64,
    "data.train.batch_size": 4,
    "data.val.wrapper.args.inp_size": 16,
    "data.val.wrapper.args.sample_q": 64,
    "log_every_steps": 2,
    "eval_every_steps": 100,
    "checkpoint_every_steps": 2,
    "num_workers": 0,
}
LR_CROP = 8
SCALES = [2, 4, 12, 30]


def parameters_cell(nb) -> int:
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"expected one cell tagged 'parameters', found {len(tagged)}"
    return tagged[0]


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory) -> pathlib.Path:
    """A kernelspec running this interpreter (the venv), on 2 CPU devices."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "liif_jax test",
                "language": "python",
                "env": {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
            }
        )
    )
    return root


def run_notebook(kernel_dir, monkeypatch, **params) -> tuple[str, dict]:
    """Executes the notebook with `params` replacing its parameters cell: (all output text, summary)."""
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_dir))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    values = {
        "CONFIG": "quickstart",
        "DATA": None,
        "PRETRAINED": None,
        "OVERRIDES": TINY_OVERRIDES,
        "SCALES": SCALES,
        "LR_CROP": LR_CROP,
        "EVAL_SCALES": [2],
        "EVAL_IMAGES": None,
        "EVAL_CROP": 48,
        "BATCH_QUERIES": 30000,
        "ZOOM_FRAMES": 3,
        "ZOOM_SCALE": 4,
        "ZOOM_SIZE": 16,
        "REPO_URL": "unused",
        "INSTALL": False,
        **params,
    }
    nb.cells[parameters_cell(nb)].source = "\n".join(f"{k} = {v!r}" for k, v in values.items())
    NotebookClient(
        nb, kernel_name=KERNEL, timeout=300, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()
    text = "".join(
        out.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "stream"
    )
    lines = [line for line in text.splitlines() if line.startswith(SUMMARY)]
    assert len(lines) == 1, text[-3000:]
    assert not any(out.output_type == "error" for c in nb.cells if c.cell_type == "code" for out in c.outputs)
    images = [out for c in nb.cells if c.cell_type == "code" for out in c.outputs if "image/png" in out.get("data", {})]
    assert images, "the render cell showed no figure"
    return text, json.loads(lines[0].removeprefix(SUMMARY))


def steps_in(workdir: pathlib.Path) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def check_renders(summary: dict) -> None:
    assert summary["lr_size"] == [LR_CROP, LR_CROP]
    assert summary["render_sizes"] == {str(s): [LR_CROP * s, LR_CROP * s, 3] for s in SCALES}
    assert summary["photo"] == "chelsea.png"
    assert summary["zoom"] == {"frames": 3, "size": [16, 16]}  # the animated zoom
    (row,) = summary["eval"]
    assert row["scale"] == 2 and row["n_images"] == 2
    assert math.isfinite(row["psnr"]) and 15 < row["bicubic_psnr"] < 60  # LIIF is untrained after a few steps


def test_committed_notebook_is_valid_and_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    parameters_cell(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"outputs not cleared: {cell.source[:80]!r}"


@pytest.mark.parametrize(
    "repo_url, version, message",
    [
        (
            "https://github.com/<org>/liif_jax",
            (3, 12, 1),
            "Set REPO_URL in the parameters cell (1.) to this repository's git URL",
        ),
        ("/content/drive/MyDrive/nowhere", (3, 12, 1), "REPO_URL '/content/drive/MyDrive/nowhere' is not a folder"),
        ("https://github.com/someone/liif_jax", (3, 11, 9), "liif_jax needs Python 3.12 or newer"),
    ],
)
def test_install_cell_stops_with_what_to_do(repo_url, version, message, monkeypatch):
    """In Colab (as the cell sees it), before anything is cloned or installed."""
    cell = next(c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if 'git", "clone' in c.source)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(sys, "version_info", version)
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: pytest.fail(f"ran {args}"))
    drive = types.SimpleNamespace(mount=lambda path: None)
    monkeypatch.setitem(sys.modules, "google.colab.drive", drive)
    sys.modules["google.colab"].drive = drive
    with pytest.raises(SystemExit, match=re.escape(message)):
        exec(cell, {"REPO_URL": repo_url, "INSTALL": True, "WORKDIR": "/content/run", "DATA": None, "PRETRAINED": None})


def test_notebook_trains_resumes_renders_and_evaluates(tmp_path, kernel_dir, monkeypatch):
    workdir = tmp_path / "run"
    text, summary = run_notebook(kernel_dir, monkeypatch, WORKDIR=str(workdir), NUM_STEPS=4)
    assert "resumed from" not in text
    assert "step 4/4" in text and "steps/s" in text and "ETA" in text
    assert steps_in(workdir)[-1] == 4 and (workdir / "renders.png").is_file()
    assert summary["trained"] and summary["step"] == 4
    assert summary["backend"] == "cpu" and summary["device_count"] == 2
    check_renders(summary)
    assert "| x2 |" in text  # the evaluation table

    # Run again on the same workdir with more steps: it continues from the checkpoint.
    text, summary = run_notebook(kernel_dir, monkeypatch, WORKDIR=str(workdir), NUM_STEPS=6)
    assert f"resumed from {workdir.resolve() / 'checkpoints' / '4'}" in text
    assert "steps 4 -> 6" in text and "step 6/6" in text
    assert steps_in(workdir)[-1] == 6 and summary["step"] == 6

    # PRETRAINED: no training, the given model is rendered and evaluated.
    other = tmp_path / "other"
    text, summary = run_notebook(
        kernel_dir, monkeypatch, WORKDIR=str(other), NUM_STEPS=6, PRETRAINED=str(workdir / "checkpoints")
    )
    assert "PRETRAINED is set" in text and "steps/s" not in text
    assert not (other / "checkpoints").exists()
    assert not summary["trained"] and summary["step"] == 6
    check_renders(summary)


def test_notebook_trains_on_a_tfds_data_set(tmp_path, kernel_dir, monkeypatch):
    """DATA='tfds:NAME@DIR': the DIV2K config on a prepared TFDS set, with the official validation
    (first 10 images x 160 crops) and the training set `repeat`ed as the config's folder."""
    tfds_dir = REPO / "tests" / "data" / "tfds"
    workdir = tmp_path / "tfds_run"
    overrides = {**TINY_OVERRIDES, "data.val.batch_size": 64}
    text, summary = run_notebook(
        kernel_dir,
        monkeypatch,
        WORKDIR=str(workdir),
        NUM_STEPS=2,
        DATA=f"tfds:tiny_div2k_like@{tfds_dir}",
        OVERRIDES=overrides,
    )
    assert "config edsr-baseline-liif" in text and "2 held-out images" in text
    assert "15 steps/epoch" in text  # 3 training images x repeat 20, batches of 4
    assert "step 2/2" in text and "val_psnr" in text and steps_in(workdir)[-1] == 2
    assert summary["trained"] and summary["photo"] == "tiny_div2k_like[validation][0]"
    assert summary["eval"][0]["n_images"] == 2
