#!/usr/bin/env bash
# Multi-host training on one machine: the quickstart config (tiny overrides) on 2 processes x 4 CPU
# devices to step 10, resumed to step 20, next to 1 process x 8 devices and 1 x 1 (20 steps each);
# prints every step's loss and the validation PSNR of the three layouts.
#
#   bash experiments/multihost_cpu.sh OUT_DIR      (from the repository root, OUT_DIR new or empty)
set -euo pipefail
out=${1:?usage: multihost_cpu.sh OUT_DIR}
mkdir -p "$out"
source experiments/tiny_quickstart.sh
flags=("${tiny_quickstart[@]}"
  --config.log_every_steps=1 --config.checkpoint_every_steps=5 --config.eval_every_steps=10)
train() {  # DEVICES LOG ARGS...
  local n=$1 log=$2; shift 2
  XLA_FLAGS=--xla_force_host_platform_device_count=$n JAX_PLATFORMS=cpu \
    timeout 900 python -m liif_jax.train "${flags[@]}" "$@" > "$out/$log.log" 2>&1
}
port() { python -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }
two_processes() {  # STEPS TAG
  local p; p=$(port)
  for i in 0 1; do
    train 4 "2x4_$2_p$i" --workdir "$out/2x4" --config.num_steps="$1" \
      --coordinator_address "127.0.0.1:$p" --num_processes 2 --process_id "$i" &
  done
  wait
}
train 1 1x1 --workdir "$out/1x1" --config.num_steps=20
train 8 1x8 --workdir "$out/1x8" --config.num_steps=20
two_processes 10 first
two_processes 20 resumed
grep -q "resumed from" "$out/2x4_resumed_p0.log"
python - "$out" <<'EOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
rows = {k: [json.loads(l) for l in (out / k / "metrics.jsonl").read_text().splitlines()] for k in ("1x1", "1x8", "2x4")}
get = lambda k, key: {r["step"]: r[key] for r in rows[k] if key in r}
print("| step | 1 process x 1 device | 1 x 8 | 2 x 4 (to step 10, then resumed) | max rel. diff |\n|---|---|---|---|---|")
for key in ("loss", "val_psnr"):
    for step, a in get("1x1", key).items():
        b, c = get("1x8", key)[step], get("2x4", key)[step]
        rel = max(abs(b - a), abs(c - a)) / abs(a)
        print(f"| {step}{' (val PSNR)' if key == 'val_psnr' else ''} | {a:.7f} | {b:.7f} | {c:.7f} | {rel:.1e} |")
EOF
