"""experiments/benchmark.py: a `--size small` CPU run writes every figure.

Every case runs in float32; bfloat16 runs the cases that take its compute dtype through a model
family's training step and render that no other test runs in bf16 (SwinIR-LTE's training step,
RDN's render) and, in its own process, the 8K render. Each compile costs seconds on the CPU, so
the other cases do not run twice."""

import datetime
import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "benchmark.py"
HEADLINE = (
    "train_edsr_baseline_steps_per_s",
    "train_rdn_steps_per_s",
    "render_x4_div2k_ms",
    "render_x30_3840_ms",
    "render_x4_rdn_div2k_ms",
)
CASES = (
    "train_edsr_baseline",
    "train_rdn",
    "render_x4_div2k",
    "render_x30_3840",
    "render_x4_rdn_div2k",
    "render_x2_8k",
    "train_edsr_baseline_lte",
    "train_swinir_lte",
    "render_x4_lte_div2k",
    "render_x4_swinir_lte_div2k",
)


def run_benchmark(out: pathlib.Path, *args: str) -> tuple[dict, str]:
    """Runs the script on CPU into `out`; returns (its JSON, its markdown table)."""
    cmd = [sys.executable, str(SCRIPT), "--size", "small", "--out", str(out), *args]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return json.loads((out / "benchmark_cpu.json").read_text()), (out / "benchmark_cpu.md").read_text()


def positive(x) -> bool:
    return isinstance(x, (int, float)) and x > 0


BF16_CASES = ("train_swinir_lte", "render_x4_rdn_div2k")


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> tuple[dict, str]:
    return run_benchmark(tmp_path_factory.mktemp("bench"), "--dtypes", "float32")


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory) -> tuple[dict, str]:
    return run_benchmark(tmp_path_factory.mktemp("bench_bf16"), "--dtypes", "bfloat16", "--cases", ",".join(BF16_CASES))


def test_json_has_the_headline_figures_and_provenance(small_run):
    res, _ = small_run
    assert res["device"] == "cpu" and res["size"] == "small" and res["smoke_run"] and res["isolated"] is False
    assert all(positive(res[k]) for k in HEADLINE), {k: res[k] for k in HEADLINE}
    assert res["command"].startswith("python experiments/benchmark.py --size small")
    assert datetime.datetime.fromisoformat(res["date_utc"]).utcoffset() == datetime.timedelta(0)
    assert res["jax_version"]


@pytest.mark.parametrize("dtype, cases", [("float32", CASES), ("bfloat16", BF16_CASES)], ids=["float32", "bfloat16"])
def test_every_case_ran(small_run, bf16_run, dtype, cases):
    res = small_run[0] if dtype == "float32" else bf16_run[0]
    assert list(res["dtypes"]) == [dtype] and set(res["dtypes"][dtype]) == set(cases)
    check_cases(res["dtypes"][dtype])


def check_cases(cases: dict) -> None:
    for name, r in cases.items():
        assert "error" not in r, (name, r)
        assert positive(r["compile_s"]) and positive(r["first_call_s"]), name
        assert r["compiles_after_first_call"] == 0, name  # nothing recompiles once warm
        assert r["peak_bytes"] is None  # the CPU reports no device memory
        if name.startswith("train"):
            assert all(positive(r[m]["ms_per_step"]) for m in ("model_only", "end_to_end")), name
            assert positive(r["pipeline"]["samples_per_s"]) and r["pipeline"]["num_workers"] == 1
            assert all(positive(v) for v in r["pipeline"]["per_worker_samples_per_s"].values())
        else:
            assert positive(r["ms"]) and r["repeats"] == 2, name
    assert cases["train_swinir_lte"]["model"] == "SwinIR-LTE"
    if "train_rdn" in cases:
        assert cases["train_rdn"]["spec"]["args"]["encoder_spec"]["name"] == "rdn"
        assert cases["render_x4_swinir_lte_div2k"]["spec"]["name"] == "lte"


def test_markdown_table_names_the_command_and_is_not_compared_on_cpu(small_run):
    res, md = small_run
    assert f"`{res['command']}`" in md and res["date_utc"] in md
    assert "| float32 (TF32) | Speed-up vs official (float32) |" in md
    assert "27.2 ms (36.7 steps/s)" in md and "n/a (small CPU run)" in md
    assert "failed" not in md


def test_isolated_cases_run_in_their_own_process(tmp_path):
    res, md = run_benchmark(tmp_path, "--isolate", "--dtypes", "bfloat16", "--cases", "render_x2_8k")
    assert res["isolated"] is True and res["device"] == "cpu"
    assert positive(res["dtypes"]["bfloat16"]["render_x2_8k"]["ms"])
    assert res["render_x2_8k_ms"] is None  # headline figures are float32 only
    assert "one process per case" in md
