"""Stopping a run cleanly (`liif_jax.training.stopping`), with grain worker processes.

SIGTERM to the main process and Ctrl-C (SIGINT to the whole process group) each end the run within
seconds: the step in progress finishes, a checkpoint is saved there with the data position, one
line says so, the exit status is 128 + the signal's number, and no process of the run is left. The
same command then resumes with exactly the losses of an uninterrupted run. A second signal ends
the run at once, and its workers follow. Every run is in its own session, so that whatever it
started can be found even after the main process is gone.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

BATCH = 4
FLAGS = [
    "--config",
    "quickstart",
    "--config.model.args.encoder_spec.args.n_resblocks=1",
    "--config.model.args.encoder_spec.args.n_feats=8",
    "--config.model.args.imnet_spec.args.hidden_list=(16,)",
    "--config.init=",
    f"--config.data.train.batch_size={BATCH}",
    f"--config.data.val.batch_size={BATCH}",
    "--config.data.train.wrapper.args.inp_size=16",
    "--config.data.train.wrapper.args.sample_q=64",
    "--config.data.val.wrapper.args.inp_size=16",
    "--config.data.val.wrapper.args.sample_q=64",
    "--config.log_every_steps=1",
    "--config.checkpoint_every_steps=100000",
    "--config.eval_every_steps=100000",
    "--config.final_eval.scales=()",
    "--config.num_workers=2",
]
ENDLESS = 100_000  # steps: the stopped runs never reach the end
TIMEOUT = 240  # seconds, for any one run


def start(workdir: pathlib.Path, num_steps: int, tag: str = "") -> subprocess.Popen:
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(workdir.parent / "jax_cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    log = workdir.parent / f"{workdir.name}{tag}"
    cmd = [sys.executable, "-m", "liif_jax.train", "--workdir", str(workdir), *FLAGS, f"--config.num_steps={num_steps}"]
    return subprocess.Popen(
        cmd, env=env, stdout=open(f"{log}.out", "w"), stderr=open(f"{log}.err", "w"), start_new_session=True
    )


def session(sid: int) -> list[int]:
    """The live processes of session `sid` (its leader and everything started under it, wherever
    they were reparented), zombies excluded. The resource tracker of multiprocessing exits a few
    milliseconds after the main process: callers wait for the session to empty."""
    pids = []
    for entry in pathlib.Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        fields = stat.rpartition(")")[2].split()  # after "pid (comm)": state, ppid, pgrp, session, ...
        if entry.name.isdigit() and int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def wait_until(condition, what: str, timeout: float = TIMEOUT, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc is None or proc.poll() is None, f"the run ended (status {proc.returncode}) before {what}"
        assert time.time() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)


def losses(workdir: pathlib.Path) -> dict[int, float]:
    path = workdir / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def ended_cleanly(proc: subprocess.Popen, workdir: pathlib.Path, status: int) -> int:
    """Checks the end of a stopped run; returns the step it stopped at."""
    t0 = time.time()
    proc.wait(timeout=60)
    out = (workdir.parent / f"{workdir.name}.out").read_text()
    err = (workdir.parent / f"{workdir.name}.err").read_text()
    assert proc.returncode == status, out[-2000:] + err[-3000:]
    last = out.strip().splitlines()[-1]
    step = max(losses(workdir))
    assert last == (
        f"stopped at step {step}, checkpoint saved in {workdir / 'checkpoints' / str(step)}; "
        "run the same command to resume"
    ), out[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert (workdir / "checkpoints" / str(step) / "commit_success.txt").exists()
    [data_state] = (workdir / "checkpoints" / str(step) / "data_iter").glob("*.json")
    assert json.loads(data_state.read_text()) == {"next_example": step * BATCH}
    wait_until(lambda: not session(proc.pid), "the end of every process of the run", timeout=10)
    assert time.time() - t0 < 60
    return step


def test_sigterm_and_ctrl_c_stop_at_a_checkpoint_that_resumes_exactly(tmp_path):
    runs = {name: start(tmp_path / name, ENDLESS) for name in ("term", "ctrl_c", "twice")}
    try:
        for name, proc in runs.items():
            wait_until(lambda: len(losses(tmp_path / name)) >= 3, "step 3", proc=proc)
            assert len(session(proc.pid)) >= 3, "the run has no grain workers"  # main, 2 workers (+ resource tracker)
        runs["term"].send_signal(signal.SIGTERM)
        os.killpg(runs["ctrl_c"].pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        runs["twice"].send_signal(signal.SIGTERM)
        time.sleep(0.2)  # the first signal is being handled: the run is finishing its step
        runs["twice"].send_signal(signal.SIGTERM)

        stopped = {
            "term": ended_cleanly(runs["term"], tmp_path / "term", 128 + signal.SIGTERM),
            "ctrl_c": ended_cleanly(runs["ctrl_c"], tmp_path / "ctrl_c", 128 + signal.SIGINT),
        }
        runs["twice"].wait(timeout=10)
        assert runs["twice"].returncode == -signal.SIGTERM  # killed by the second signal, at once
        wait_until(lambda: not session(runs["twice"].pid), "the end of the workers", timeout=10)

        end = max(stopped.values()) + 3
        runs |= {f"{name}_resumed": start(tmp_path / name, end, tag="_resumed") for name in stopped}
        runs["straight"] = start(tmp_path / "straight", end)
        for name in ("term_resumed", "ctrl_c_resumed", "straight"):
            proc = runs[name]
            assert proc.wait(timeout=TIMEOUT) == 0, (tmp_path / f"{name}.err").read_text()[-3000:]
            wait_until(lambda: not session(proc.pid), "the end of every process of a finished run", timeout=10)
        for name in stopped:
            assert "resumed from" in (tmp_path / f"{name}_resumed.out").read_text()
            assert losses(tmp_path / name) == losses(tmp_path / "straight"), name
    finally:
        for proc in runs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
