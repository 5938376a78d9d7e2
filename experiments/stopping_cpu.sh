#!/usr/bin/env bash
# Stopping runs of the quickstart config (tiny model) after checkpoint 3: one process with 2 grain
# workers (SIGTERM; Ctrl-C to its process group; SIGTERM twice, 0.2 s apart), and 2 JAX processes x
# 2 CPU devices with 1 worker each (Ctrl-C to process 1's process group; SIGTERM to process 1).
# Prints each process's exit status, seconds from the signal to its exit, its last line, the
# checkpoints, and how many processes of the run (its process groups: workers included) are left.
#
#   bash experiments/stopping_cpu.sh OUT_DIR      (from the repository root, OUT_DIR new or empty)
set -euo pipefail
set -m  # job control: every run in its own process group, and SIGINT not ignored in background jobs
out=${1:?usage: stopping_cpu.sh OUT_DIR}
mkdir -p "$out"
source experiments/tiny_quickstart.sh
flags=("${tiny_quickstart[@]}"
  --config.log_every_steps=1 --config.checkpoint_every_steps=3 --config.eval_every_steps=1000
  --config.num_steps=100000 --config.num_workers=1)
port() { python -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }
stop_case() {  # NAME SIGNAL PROCESSES (SIGNAL INT: to the process group, as Ctrl-C; TERM or TERM2: to the process)
  local run="$out/$1" p; p=$(port)
  local pids=()
  if [ "$3" = 1 ]; then
    JAX_PLATFORMS=cpu python -m liif_jax.train "${flags[@]}" --config.num_workers=2 --workdir "$run" > "$run.p0.log" 2>&1 &
    pids+=($!)
  else
    for i in 0 1; do
      XLA_FLAGS=--xla_force_host_platform_device_count=2 JAX_PLATFORMS=cpu python -m liif_jax.train "${flags[@]}" \
        --workdir "$run" --coordinator_address "127.0.0.1:$p" --num_processes 2 --process_id "$i" > "$run.p$i.log" 2>&1 &
      pids+=($!)
    done
  fi
  local last=$(( $3 - 1 ))
  local deadline=$((SECONDS + 600))
  until [ -e "$run/checkpoints/3/commit_success.txt" ]; do
    [ $SECONDS -lt $deadline ] || { echo "no checkpoint 3 in 600 s"; kill -9 "${pids[@]}"; exit 1; }
    sleep 0.2
  done
  local t0; t0=$(date +%s.%N)
  case "$2" in
    INT) kill -INT -- "-${pids[$last]}"; echo "### $1: Ctrl-C (SIGINT to the process group of process $last of $3)" ;;
    TERM) kill -TERM "${pids[$last]}"; echo "### $1: SIGTERM to process $last of $3" ;;
    TERM2) kill -TERM "${pids[$last]}"; sleep 0.2; kill -TERM "${pids[$last]}"; echo "### $1: SIGTERM twice to process $last of $3" ;;
  esac
  for i in $(seq 0 $last); do
    local status=0
    wait "${pids[$i]}" || status=$?
    echo "- process $i: exit status $status after $(python -c "import time; print(f'{time.time() - $t0:.1f}')") s: \`$(tail -1 "$run.p$i.log")\`"
  done
  echo "- checkpoints: $(ls "$run/checkpoints" | sort -n | tr '\n' ' ')"
  sleep 1
  local left=0 g
  for g in "${pids[@]}"; do left=$((left + $(ps -eo pgid=,stat= | awk -v g="$g" '$1 == g && $2 !~ /^Z/' | wc -l))); done
  echo "- processes of the run (their process groups, workers included) left 1 s later: $left"
}
stop_case sigterm_1 TERM 1
stop_case ctrl_c_1 INT 1
stop_case twice_1 TERM2 1
stop_case ctrl_c_2 INT 2
stop_case sigterm_2 TERM 2
