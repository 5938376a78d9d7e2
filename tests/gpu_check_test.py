"""experiments/gpu_check.sh: the one-command GPU check, dry-run on the CPU with tiny sizes."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
from PIL import Image

from liif_jax.formats.checkpoints import save_model
from liif_jax.models import build_model

from conftest import REPO, load_module

SPEC = {
    "name": "liif",
    "args": {
        "encoder_spec": {"name": "edsr-baseline", "args": {"n_resblocks": 1, "n_feats": 8, "no_upsampling": True}},
        "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [16, 16]}},
    },
}


def test_dry_run_writes_every_result_into_one_folder(tmp_path):
    model = build_model(SPEC)
    ckpt = save_model(tmp_path / "ckpt", SPEC, model.init(jax.random.key(0)))
    (tmp_path / "hr").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 30, 3), dtype=np.uint8)).save(
        tmp_path / "hr" / "a.png"
    )
    out = tmp_path / "out"
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "OUT": str(out),
        "SMALL": "1",
        "PY": sys.executable,
        "CASES": "render_x4_div2k",
        "WORKERS": "1",
        "MODEL": str(ckpt),
        "HR_DIR": str(tmp_path / "hr"),
        "PREC_SCALES": "2",
        "BENCH_S": "500",
        "PROF_S": "500",
        "FUSED_S": "500",
        "PREC_S": "500",
    }  # a busy CPU compiles slowly
    proc = subprocess.run(
        ["bash", str(REPO / "experiments" / "gpu_check.sh")], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = (out / "summary.txt").read_text()
    for step in ("benchmark", "profile", "fused", "precision"):
        assert f"{step} rc=0" in summary, summary + (out / f"{step}.log").read_text()[-3000:]
    assert "compare_official skipped: no OFFICIAL" in summary
    assert "aot_compare skipped: no GPU benchmark" in summary  # a CPU run has nothing to estimate for a GPU
    bench = json.loads((out / "benchmark_cpu.json").read_text())
    case = bench["dtypes"]["float32"]["render_x4_div2k"]
    assert bench["isolated"] and case["compiles_in_measuring_process"] == 0  # programs came from the cache
    assert case["host_peak_rss_bytes"] > 0 and case["host_peak_rss_bytes_with_compile"] > 0
    profile = json.loads((out / "profile_cpu.json").read_text())
    assert set(profile["programs"]) == {"train_step", "render_xla", "render_pallas"}
    assert all(p["top"] and p["total_ms_per_call"] > 0 for p in profile["programs"].values())
    assert (out / "precision_cpu.md").exists() and (out / "env.txt").exists()
    fused = json.loads((out / "fused_check_cpu.json").read_text())
    assert fused["agreement"]["float32-highest"]["max_abs"] < 1e-5 and fused["speed"]["pallas"]["render_ms"] > 0


def test_op_table_reads_device_op_lines_of_a_trace():
    """A GPU trace's 'XLA Ops' line wins over its streams and the host's threads."""
    profile = load_module(REPO / "experiments" / "profile_ops.py")
    meta = lambda pid, tid, kind, name: {"ph": "M", "pid": pid, "tid": tid, "name": kind, "args": {"name": name}}
    span = lambda pid, tid, name, dur: {"ph": "X", "pid": pid, "tid": tid, "name": name, "dur": dur}
    events = [
        meta(1, None, "process_name", "/device:GPU:0"),
        meta(1, 7, "thread_name", "XLA Ops"),
        meta(1, 8, "thread_name", "Stream #13(Compute)"),
        meta(2, None, "process_name", "/host:CPU"),
        meta(2, 9, "thread_name", "tf_XLAPjRtCpuClient/1"),
        span(1, 7, "fusion.3", 30.0),
        span(1, 7, "fusion.3", 10.0),
        span(1, 7, "gemm.1", 60.0),
        span(1, 8, "sm90_xmma_gemm", 55.0),
        span(2, 9, "host_thunk", 500.0),
    ]
    totals, source = profile.op_times(events)
    assert source == "device XLA Ops" and totals == {"fusion.3": [40.0, 2], "gemm.1": [60.0, 1]}
    rows = profile.table(totals, top=1, repeats=2)
    assert rows == [{"op": "gemm.1", "ms_per_call": 0.03, "count_per_call": 0.5, "share": 0.6}]
