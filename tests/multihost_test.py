"""Multi-host training on one machine: 2 JAX processes x 4 CPU devices, coordinator on loopback.

The global batch of step t depends only on the seed and t, so 2 processes x 4 devices, 1 x 8 and
1 x 1 log the same loss at every step and the same validation PSNR (float tolerance: the
gradient all-reduce sums in another order). Both processes killed and restarted resume from
their common checkpoint with the losses of the uninterrupted runs. Every subprocess has a timeout.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

STEPS = 12
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
TIMEOUT = 240  # seconds, for any one subprocess
FLAGS = [
    "--config",
    "quickstart",
    "--config.model.args.encoder_spec.args.n_resblocks=1",
    "--config.model.args.encoder_spec.args.n_feats=8",
    "--config.model.args.imnet_spec.args.hidden_list=(16,)",
    "--config.init=",
    "--config.data.train.batch_size=8",
    "--config.data.val.batch_size=8",
    "--config.data.train.wrapper.args.inp_size=16",
    "--config.data.train.wrapper.args.sample_q=64",
    "--config.data.val.wrapper.args.inp_size=16",
    "--config.data.val.wrapper.args.sample_q=64",
    f"--config.num_steps={STEPS}",
    "--config.log_every_steps=1",
    "--config.checkpoint_every_steps=3",
    f"--config.eval_every_steps={STEPS}",
    "--config.final_eval.scales=()",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(workdir, devices: int, *extra: str, log: str | None = None) -> subprocess.Popen:
    # Unoptimised XLA CPU code compiles in half the time; every layout runs the same flags.
    xla = f"--xla_force_host_platform_device_count={devices} {FAST_COMPILE}"
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": xla,
        # the resumed processes reuse the first ones' compiled steps (a quarter of the CPU time)
        "JAX_COMPILATION_CACHE_DIR": str(workdir.parent / "jax_cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    out = open(workdir.parent / f"{log or workdir.name}.log", "w")  # noqa: SIM115 (the child process writes it)
    cmd = [sys.executable, "-m", "liif_jax.train", "--workdir", str(workdir), *FLAGS, *extra]
    return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


def two_processes(workdir, port: int, *extra: str, tag: str = "") -> list[subprocess.Popen]:
    cluster = ["--coordinator_address", f"127.0.0.1:{port}", "--num_processes", "2"]
    return [
        start(workdir, 4, *cluster, "--process_id", str(i), *extra, log=f"{workdir.name}{tag}_p{i}") for i in range(2)
    ]


def finish(procs: list[subprocess.Popen], logs: list) -> None:
    try:
        for p in procs:
            p.wait(timeout=TIMEOUT)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log.read_text()[-3000:]


def metrics(workdir) -> tuple[dict[int, float], dict[int, float]]:
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return (
        {r["step"]: r["loss"] for r in rows if "loss" in r},
        {r["step"]: r["val_psnr"] for r in rows if "val_psnr" in r},
    )


def assert_close(a: dict[int, float], b: dict[int, float]) -> None:
    assert sorted(a) == sorted(b)
    for step in a:
        assert a[step] == pytest.approx(b[step], rel=1e-4), f"step {step}"


def test_two_processes_match_one_and_resume_after_both_are_killed(tmp_path):
    singles = {n: start(tmp_path / f"1x{n}", n) for n in (1, 8)}
    multi = tmp_path / "2x4"
    procs = two_processes(multi, free_port())
    try:
        deadline = time.time() + TIMEOUT
        while not (multi / "checkpoints" / "3" / "commit_success.txt").exists():
            assert time.time() < deadline and all(p.poll() is None for p in procs), (
                tmp_path / "2x4_p0.log"
            ).read_text()[-3000:]
            time.sleep(0.02)
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL)
            p.wait()
    assert max(metrics(multi)[0]) < STEPS, "the run finished before it could be killed; make it longer"

    resumed = two_processes(multi, free_port(), tag="_resumed")
    finish(resumed, [tmp_path / f"2x4_resumed_p{i}.log" for i in range(2)])
    finish(list(singles.values()), [tmp_path / f"1x{n}.log" for n in singles])

    log0, log1 = (tmp_path / f"2x4_resumed_p{i}.log" for i in range(2))
    assert "resumed from" in log0.read_text() and "2 process(es) x 4 cpu device(s)" in log0.read_text()
    assert "loss" not in log1.read_text()  # only process 0 logs and writes metrics
    data_state = sorted(p.name for p in (multi / "checkpoints" / str(STEPS) / "data_iter").glob("*.json"))
    assert data_state == ["process_0-of-2.json", "process_1-of-2.json"]
    losses, psnr = metrics(multi)
    assert sorted(losses) == list(range(1, STEPS + 1)) and sorted(psnr) == [STEPS]
    for n in singles:
        other_losses, other_psnr = metrics(tmp_path / f"1x{n}")
        assert_close(losses, other_losses)
        assert_close(psnr, other_psnr)


def test_unreachable_coordinator_is_a_clear_error_in_bounded_time(tmp_path):
    t0 = time.time()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "liif_jax.train",
            "--workdir",
            str(tmp_path),
            "--coordinator_address",
            f"127.0.0.1:{free_port()}",
            "--num_processes",
            "2",
            "--process_id",
            "1",
            "--initialization_timeout",
            "3",
        ],
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert "error: cannot start the distributed run (127.0.0.1:" in out.stderr and "Traceback" not in out.stderr
    assert time.time() - t0 < 60
