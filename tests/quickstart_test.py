"""The newcomer's path: the quick start names its model, ends with this run and the shipped model
against bicubic on the held-out photographs, and says where the run is."""

import importlib
import json

import jax
import numpy as np
import pytest
from PIL import Image

from liif_jax.configs.common import base_config, liif_spec
from liif_jax.formats import checkpoints
from liif_jax.models import build_model, describe
from liif_jax.training import final_eval

SHIPPED = "pretrained:edsr-baseline-liif"  # liif_jax/pretrained/edsr-baseline-liif


def test_describe_names_the_architecture_from_the_spec():
    quick = importlib.import_module("liif_jax.configs.quickstart").get_config()
    assert describe(build_model(quick.model.to_dict())) == "EDSR-baseline 16x64, MLP 256x4"
    assert describe(build_model(liif_spec("edsr-baseline", hidden_list=(256, 128), cell_decode=False))) == (
        "EDSR-baseline 16x64, MLP 256-128, no cell"
    )
    assert describe(build_model(liif_spec("rdn"))) == "RDN-B G0=64, MLP 256x4"


def test_the_shipped_model_loads_and_the_quickstart_compares_with_it():
    model, params = checkpoints.load_model(SHIPPED)
    assert describe(model) == "EDSR-baseline 16x64, MLP 256x4"
    assert sum(x.size for x in jax.tree.leaves(params)) == 1_567_299
    quick = importlib.import_module("liif_jax.configs.quickstart").get_config()
    assert quick.final_eval.compare_with == SHIPPED
    assert (
        quick.data.train.wrapper.args.inp_size == 32
        and "32 px" in importlib.import_module("liif_jax.configs.quickstart").__doc__
    )


def markdown_table(out: str) -> tuple[list[str], dict[str, list[str]]]:
    """(header cells, {first cell: cells}) of the one markdown table in `out`."""
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines() if line.startswith("|")]
    return rows[0], {row[0]: row for row in rows[2:]}


def test_training_ends_with_both_models_against_bicubic_and_the_workdir(tmp_path, capsys, monkeypatch):
    """`final_evaluation`, which `train_and_evaluate` calls after the last step; the shipped
    model's numbers come from the evaluation cache the second time, and a damaged cache entry is
    evaluated again."""
    monkeypatch.setenv("LIIF_JAX_CACHE", str(tmp_path / "cache"))
    tiny = lambda feats, width: liif_spec("edsr-baseline", {"n_resblocks": 1, "n_feats": feats}, hidden_list=(width,))
    for k, name in enumerate(("b.png", "a.png")):
        (tmp_path / "held").mkdir(exist_ok=True)
        Image.fromarray(np.random.default_rng(k).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
            tmp_path / "held" / name
        )
    c = base_config(tiny(8, 16), {"name": "samples", "args": {"split": "train"}}, None)
    c.final_eval.dataset = {"name": "image-folder", "args": {"root_path": str(tmp_path / "held")}}
    c.final_eval.scales = (3,)
    c.final_eval.compare_with = SHIPPED
    model = build_model(tiny(8, 16))
    workdir = tmp_path / "quick"
    workdir.mkdir()
    params = jax.tree.map(
        lambda s: np.zeros(s.shape, s.dtype), jax.eval_shape(model.init, jax.random.key(0))
    )  # no compile
    final_eval.final_evaluation(c, model, params, workdir)
    out = capsys.readouterr().out
    header, rows = markdown_table(out)
    ours, shipped = f"quick ({describe(model)})", f"{SHIPPED} (EDSR-baseline 16x64, MLP 256x4)"
    assert header == ["scale", "bicubic (dB)", f"{ours} (dB)", "gain", f"{shipped} (dB)", "gain"]
    assert list(rows) == ["x3"]
    bicubic, mine, gain, theirs, their_gain = (float(cell) for cell in rows["x3"][1:])
    saved = json.loads((workdir / "final_eval.json").read_text())["scales"]["3"]
    assert saved["n_images"] == 2
    assert (mine, bicubic) == pytest.approx((saved["psnr"], saved["bicubic_psnr"]), abs=0.006)
    assert gain == pytest.approx(mine - bicubic, abs=0.011) and their_gain == pytest.approx(theirs - bicubic, abs=0.011)
    assert theirs > bicubic > mine  # the shipped model beats bicubic; zero weights do not
    assert "a.png" in out and "b.png" in out
    assert str(workdir) in out and f"-m liif_jax.demo --model {workdir}" in out
    assert " steps" not in out  # no verdict (`report.verdict`) without the run's progress
    [entry] = (tmp_path / "cache").iterdir()

    def not_loaded(*args, **kwargs):
        raise AssertionError("the cached model was loaded again")

    with monkeypatch.context() as patch:
        patch.setattr(checkpoints, "load_model", not_loaded)
        final_eval.final_evaluation(c, model, params, workdir)
    again = capsys.readouterr().out
    assert markdown_table(again) == (header, rows) and str(entry) in again

    entry.write_text("{not json")
    final_eval.final_evaluation(c, model, params, workdir)
    captured = capsys.readouterr()
    assert markdown_table(captured.out) == (header, rows)
    assert str(entry) in captured.err and captured.err.startswith("warning: ")
    assert json.loads(entry.read_text())["label"] == shipped
