#!/usr/bin/env bash
# LTE's five training YAMLs (tests/data/official_configs_lte/), unchanged but for the number of
# steps and a validation set of one pass, each trained for 2 steps on this CPU with its own model,
# batch size, crops, queries and optimizer: scikit-image's photographs stand in for DIV2K where the
# YAMLs look for it (./load/div2k/DIV2K_{train,valid}_HR, relative to OUT_DIR). Prints a table of
# each run's model, batch, losses, validation PSNR and time (experiments/results/lte_yamls_cpu.md).
#
#   bash experiments/lte_yamls_cpu.sh OUT_DIR [NAME ...]   (from the repository root, OUT_DIR new or
#   empty; NAMEs such as train_rdn-lte run only those YAMLs: a SwinIR-LTE step at batch 32 needs more
#   memory than a 24 GiB machine has, inferred from its 37.7 GB H200 compile, results/archive/98928f0/aot_lte_h200.md)
set -euo pipefail
repo=$(pwd)
out=$(mkdir -p "${1:?usage: lte_yamls_cpu.sh OUT_DIR [NAME ...]}" && cd "$1" && pwd)
shift
for name in "$@"; do
  [ -f "$repo/tests/data/official_configs_lte/train-div2k/$name.yaml" ] || { echo "no YAML $name in tests/data/official_configs_lte/train-div2k/" >&2; exit 2; }
done
sk=$(python -c "import os, skimage.data; print(os.path.dirname(skimage.data.__file__))")
for split in train valid; do
  mkdir -p "$out/load/div2k/DIV2K_${split}_HR"
  for photo in astronaut chelsea coffee motorcycle_left; do cp "$sk/$photo.png" "$out/load/div2k/DIV2K_${split}_HR/"; done
done
cd "$out"
for yaml in "$repo"/tests/data/official_configs_lte/train-div2k/*.yaml; do
  name=$(basename "$yaml" .yaml)
  if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then continue; fi
  start=$(date +%s)
  JAX_PLATFORMS=cpu timeout 3600 python -m liif_jax.train --workdir "$out/$name" --config "$yaml" \
    --config.num_steps=2 --config.log_every_steps=1 --config.data.val.dataset.args.repeat=1 \
    > "$out/$name.log" 2>&1
  echo "$name $(( $(date +%s) - start ))" >> "$out/seconds.txt"
done
python - "$out" <<'EOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
seconds = dict(line.split() for line in (out / "seconds.txt").read_text().splitlines())
print("| YAML | model (as liif_jax describes it) | batch | Adam lr | loss step 1, 2 | val PSNR (dB) | wall time (s, incl. compile) |")
print("|---|---|---:|---:|---|---:|---:|")
for name, secs in seconds.items():
    config = json.loads((out / name / "config.json").read_text())
    rows = [json.loads(l) for l in (out / name / "metrics.jsonl").read_text().splitlines()]
    losses = [f"{r['loss']:.4f}" for r in rows if "loss" in r]
    psnr = [r["val_psnr"] for r in rows if "val_psnr" in r]
    head = next(l for l in (out / f"{name}.log").read_text().splitlines() if " params, " in l)
    model = head.split(" (", 1)[1].split("): ")[0]
    print(f"| {name}.yaml | {model} | {config['data']['train']['batch_size']} | {config['optimizer']['lr']:g} | "
          f"{', '.join(losses)} | {psnr[-1]:.2f} | {secs} |")
EOF
