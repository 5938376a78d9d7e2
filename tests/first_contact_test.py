"""experiments/first_contact.py: the five-minute first GPU check, dry-run on the CPU with tiny sizes."""

import json
import os
import subprocess
import sys

from conftest import REPO, load_module


def test_dry_run_passes_every_step_it_can_on_a_cpu_within_a_minute(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"}  # no compute-sanitizer, no ncu
    proc = subprocess.run(
        [sys.executable, str(REPO / "experiments" / "first_contact.py"), "--small", "--budget", "0"]
        + ["--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "first_contact_cpu_cpu.json").read_text())
    steps = report["steps"]
    assert {k: v["status"] for k, v in steps.items()} == {
        "environment": "pass",
        "kernel": "pass",
        "memcheck": "skip",
        "photo": "pass",
        "speed": "pass",
        "peak_memory": "pass",
        "ncu": "skip",
    }
    assert all(f"{name}: {s['status'].upper()}" in proc.stdout for name, s in steps.items())  # a line per step
    assert all(m["max_rel_error"] <= m["bound"] for m in steps["kernel"]["modes"].values())
    assert all(r["max_abs_diff"] < 1e-5 for r in steps["photo"]["rows"]) and len(steps["photo"]["rows"]) == 4
    assert steps["speed"]["pallas"]["render_ms"] > 0 and steps["peak_memory"]["xla"]["peak_bytes"] is None  # a CPU
    assert report["passed"] and report["commit"]


def test_each_result_is_written_as_soon_as_it_is_known(tmp_path):
    fc = load_module(REPO / "experiments" / "first_contact.py")
    report = fc.Report(tmp_path / "r.json", {"command": "x"})
    seen = []
    read = lambda: json.loads((tmp_path / "r.json").read_text())["steps"]
    report.step("a", 5, lambda: seen.append(read()["a"]["status"]) or {"value": 1})
    report.step("b", 5, lambda: {"ok": False})
    report.step("c", 5, lambda: 1 / 0)
    assert seen == ["started"]
    steps = read()
    assert [steps[k]["status"] for k in "abc"] == ["pass", "fail", "error"] and steps["a"]["value"] == 1
    assert "ZeroDivisionError" in steps["c"]["error"]
