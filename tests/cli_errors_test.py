"""Bad flags, paths, images and checkpoints end every CLI in one `error:` line, before the work:
the model given to the early checks below does not exist, so an error naming anything else shows
that it came before the model was loaded."""

import json
import pathlib
import shutil
import time

import jax
import numpy as np
import pytest
from PIL import Image

from liif_jax import convert, demo, evaluate
from liif_jax.evaluation import evaluator, report
from liif_jax.formats.checkpoints import save_model
from liif_jax.formats.pth import save_pth
from liif_jax.formats.state_dict import official_state_dict
from liif_jax.models import build_model
from liif_jax.training import trainer

TINY_SPEC = {
    "name": "liif",
    "args": {
        "encoder_spec": {"name": "edsr-baseline", "args": {"n_resblocks": 1, "n_feats": 4, "no_upsampling": True}},
        "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [8]}},
    },
}


def exit_code(main, argv) -> int:
    """A CLI's exit status, whether it returns it or raises SystemExit."""
    try:
        return main(argv)
    except SystemExit as exit:
        return exit.code


def one_error_line(capsys, code: int, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code in (1, 2) and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def tiny():
    model = build_model(TINY_SPEC)
    return model, model.init(jax.random.key(0))


@pytest.fixture
def photo(tmp_path) -> pathlib.Path:
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--scale", "inf"], "--scale must be a positive number, got inf"),
        (["--scale", "nan"], "--scale must be a positive number, got nan"),
        (["--scale", "1e200"], "over the limit of 134217728; raise it with --max-pixels"),
        (
            ["--resolution", "100000,100000"],
            "--resolution: the output is 100000x100000 = 10000000000 pixels, over the limit",
        ),
        (["--resolution", "400000,400000", "--max-pixels", str(10**12)], "GiB of memory, and"),
        (["--scale", "2", "--max-pixels", "0"], "--max-pixels must be a positive integer, got 0"),
        (["--scale", "2", "--step", "-1"], "--step must be a checkpoint step (>= 0), got -1"),
        (["--scale", "2", "--output", "{tmp}/nowhere/out.png"], "does not exist; create it first"),
        (["--scale", "2", "--output", "{tmp}/out.xyz"], "unsupported file type '.xyz'"),
        (["--scale", "2", "--output", "{tmp}"], "is a folder; give a file name"),
        (["--scale", "2", "--input", "{tmp}/disguised.png"], "disguised.png': cannot identify image file"),
        (["--scale", "2", "--input", "{tmp}/missing.png"], "missing.png"),
    ],
)
def test_demo_checks_everything_before_loading_the_model(flags, message, tmp_path, photo, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "disguised.png", "EPS")
    argv = ["--input", str(photo), "--model", str(tmp_path / "missing.pth"), "--output", str(tmp_path / "out.png")]
    argv += [f.format(tmp=tmp_path) for f in flags]
    start = time.perf_counter()
    line = one_error_line(capsys, exit_code(demo.main, argv), message)
    assert "missing.pth" not in line and time.perf_counter() - start < 5
    assert "folder" not in line or "--output" in flags  # one image: no advice about folders
    assert not (tmp_path / "out.png").exists()


def _nan_pth(path, model, params):
    sd = official_state_dict(model, params)
    sd["imnet.layers.0.bias"] = sd["imnet.layers.0.bias"].copy()
    sd["imnet.layers.0.bias"][1] = np.nan
    save_pth(path, {"model": {**TINY_SPEC, "sd": sd}})
    return path


def test_non_finite_and_hostile_checkpoints_end_demo_and_convert_in_one_line(tmp_path, photo, tiny, capsys):
    nan = _nan_pth(tmp_path / "nan.pth", *tiny)
    out = tmp_path / "out.png"
    assert demo.main(["--input", str(photo), "--model", str(nan), "--scale", "2", "--output", str(out)]) == 1
    one_error_line(capsys, 1, f"{nan}: tensor model/sd/imnet.layers.0.bias holds NaN or Inf values")
    assert not out.exists()
    assert convert.main([str(nan), str(tmp_path / "converted")]) == 1
    one_error_line(capsys, 1, "holds NaN or Inf values")
    assert not (tmp_path / "converted").exists()

    spec = {
        **TINY_SPEC,
        "args": {**TINY_SPEC["args"], "encoder_spec": {"name": "edsr-baseline", "args": {"n_feats": 10**6}}},
    }
    save_pth(tmp_path / "spec.pth", {"model": {**spec, "sd": {}}})
    assert (
        demo.main(["--input", str(photo), "--model", str(tmp_path / "spec.pth"), "--scale", "2", "--output", str(out)])
        == 1
    )
    one_error_line(capsys, 1, "spec.pth: model spec.args.encoder_spec.args.n_feats must be an integer in [1, 1024]")

    ok = tmp_path / "ok"
    save_model(ok, TINY_SPEC, jax.tree.map(lambda x: np.full_like(x, np.inf), tiny[1]))
    assert convert.main([str(ok), str(tmp_path / "ok.pth")]) == 1
    one_error_line(capsys, 1, f"{ok / '0'}: parameter encoder/body_0/body_0/", "holds NaN or Inf values")
    (tmp_path / "file").write_text("")
    assert convert.main([str(ok), str(tmp_path / "file")]) == 1
    one_error_line(capsys, 1, "output is a file")


def test_evaluate_checks_outputs_and_every_image_header_before_the_model(tmp_path, photo, capsys):
    hr = tmp_path / "hr"
    hr.mkdir()
    shutil.copy(photo, hr / "a.png")
    base = ["--model", str(tmp_path / "missing.pth"), "--hr-dir", str(hr), "--scale", "2", "--protocol", "plain"]
    for flags, message in [
        (["--json", str(tmp_path)], "is a folder; give a file name"),
        (["--json", str(photo / "r.json")], "photo.png exists and is not a folder"),
        (["--json", str(tmp_path / "r.txt")], "unsupported file type '.txt'; use one of .json"),
        (["--save-images", str(photo)], "exists and is not a folder"),
        (["--step", "-2"], "--step must be"),
        (["--max-pixels", "100"], "a.png' is 12x10 = 120 pixels, over the limit of 100"),
    ]:
        one_error_line(capsys, evaluate.main(base + flags), message)
    (hr / "b.png").write_bytes(b"GIF89a not what it says")
    line = one_error_line(capsys, evaluate.main(base), "b.png': cannot identify image file", f"remove it from '{hr}'")
    assert "missing.pth" not in line


def test_evaluate_saves_results_as_it_goes_and_prints_the_table_when_json_fails(
    tmp_path, photo, tiny, capsys, monkeypatch
):
    ckpt = save_model(tmp_path / "ckpt", TINY_SPEC, tiny[1])
    hr = tmp_path / "hr"
    hr.mkdir()
    shutil.copy(photo, hr / "a.png")
    shutil.copy(photo, hr / "b.png")
    argv = [
        "--model",
        str(ckpt),
        "--hr-dir",
        str(hr),
        "--scale",
        "2",
        "--protocol",
        "plain",
        "--json",
        str(tmp_path / "r.json"),
    ]
    data = (hr / "b.png").read_bytes()
    (hr / "b.png").write_bytes(data[: len(data) - 40])  # the header reads; the pixels do not
    line = one_error_line(
        capsys, evaluate.main(argv), "b.png", f"(the 1 results before it are in {tmp_path / 'r.json'})"
    )
    assert [r["name"] for r in json.loads((tmp_path / "r.json").read_text())["images"]] == ["a.png"], line

    (hr / "b.png").write_bytes(data)

    def full_disk(path, results):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "write_json", full_disk)
    assert evaluate.main(argv) == 1
    out = capsys.readouterr()
    assert "| x2 |" in out.out  # the table
    assert out.err.strip().splitlines() == [
        f"error: cannot write --json {tmp_path / 'r.json'}: [Errno 28] No space left on device"
    ]


def tiny_config(**overrides):
    from train_test import tiny_config as make

    return make(**overrides)


@pytest.mark.parametrize(
    "key, value",
    [("num_steps", -5), ("num_steps", 0), ("log_every_steps", 0), ("model.args.encoder_spec.args.n_resblocks", 10**7)],
)
def test_train_refuses_a_config_that_cannot_train_before_touching_the_workdir(tmp_path, key, value):
    with pytest.raises(ValueError, match=key.split(".")[-1]):
        trainer.train_and_evaluate(tiny_config(**{key: value}), tmp_path / "wd")
    assert not (tmp_path / "wd").exists()


def test_train_refuses_a_params_only_checkpoint_and_a_restore_that_does_not_fit(tmp_path, tiny):
    save_model(tmp_path / "exported", TINY_SPEC, tiny[1])
    for workdir in (tmp_path / "exported", tmp_path / "exported" / "0"):
        with pytest.raises(
            trainer.TrainingError,
            match=r"holds a params-only checkpoint \(python -m liif_jax.convert "
            r"made it; use it with demo or evaluate\)",
        ):
            trainer.train_and_evaluate(tiny_config(num_steps=1), workdir)
    assert sorted(p.name for p in (tmp_path / "exported").iterdir()) == ["0"]

    run = tmp_path / "run"
    trainer.train_and_evaluate(tiny_config(num_steps=1, eval_every_steps=1000, **{"final_eval.scales": ()}), run)
    (run / "config.json").unlink()  # as when a user copies checkpoints around
    other = tiny_config(num_steps=2, **{"model.args.imnet_spec.args.hidden_list": (32,)})
    with pytest.raises(trainer.TrainingError) as info:
        trainer.train_and_evaluate(other, run)
    assert str(info.value).startswith(f"cannot resume from {run / 'checkpoints' / '1'}") and "\n" not in str(info.value)
    assert not (run / "config.json").exists()  # so the right model can still resume here


def test_ctrl_c_ends_demo_evaluate_and_convert_in_one_line_with_status_130_and_no_partial_output(
    tmp_path, photo, tiny, capsys, monkeypatch
):
    """Ctrl-C during the work: one `stopped` line, exit status 130, and nothing under the output's
    name nor a temporary file beside it; evaluate keeps the results it had, whole."""
    ckpt = save_model(tmp_path / "ckpt", TINY_SPEC, tiny[1])
    out = tmp_path / "out"
    out.mkdir()

    def stopped_line() -> str:
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("stopped (Ctrl-C)"), lines
        return lines[0]

    def half_written_then_interrupted(path, *args, **kwargs):
        pathlib.Path(path).mkdir(exist_ok=True)  # a folder output, or a file
        (pathlib.Path(path) / "part").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "upscale_image", lambda *a, **k: np.zeros((24, 20, 3), np.uint8))
    monkeypatch.setattr(demo.Image.Image, "save", lambda self, path, *a, **k: half_written_then_interrupted(path))
    argv = ["--input", str(photo), "--model", str(ckpt), "--scale", "2", "--output", str(out / "o.png")]
    assert demo.main(argv) == 130
    assert "not written" in stopped_line()

    monkeypatch.setattr(convert, "save_model", half_written_then_interrupted)
    assert convert.main([str(ckpt), str(out / "model")]) == 130
    assert "nothing was written" in stopped_line()
    assert list(out.iterdir()) == []

    hr = tmp_path / "hr"
    hr.mkdir()
    shutil.copy(photo, hr / "a.png")
    shutil.copy(photo, hr / "b.png")
    real, calls = evaluator.upscale, []

    def second_interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluator, "upscale", second_interrupted)
    json_path = out / "r.json"
    argv = ["--model", str(ckpt), "--hr-dir", str(hr), "--scale", "2", "--protocol", "plain", "--json", str(json_path)]
    assert evaluate.main(argv) == 130
    assert str(json_path) in stopped_line()
    assert [r["name"] for r in json.loads(json_path.read_text())["images"]] == ["a.png"]
    assert [p.name for p in out.iterdir()] == ["r.json"]


def test_usage_and_errors_name_the_command_as_typed(photo, capsys, monkeypatch):
    """`liif-demo` (the console script) names itself so; `python -m liif_jax.demo` otherwise."""
    for main, script, module in (
        (demo.main, "liif-demo", "liif_jax.demo"),
        (evaluate.main, "liif-evaluate", "liif_jax.evaluate"),
        (convert.main, "liif-convert", "liif_jax.convert"),
    ):
        for argv0, prog in (
            (f"/venv/bin/{script}", script),
            (f"/src/{module.replace('.', '/')}.py", f"python -m {module}"),
        ):
            monkeypatch.setattr("sys.argv", [argv0])
            assert exit_code(main, ["--no-such-flag"]) == 2
            err = capsys.readouterr().err
            assert err.startswith(f"usage: {prog} ") and f"\n{prog}: error: " in err, err
