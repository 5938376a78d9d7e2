#!/usr/bin/env bash
# The demo on this CPU with the default tile (chosen by memory) and with --tile 0, interleaved, and
# one larger input whose whole-image render does not fit the budget (the tiles must bound memory).
# Prints per run: seconds (the demo's own line), peak RSS (/usr/bin/time), the load average before
# and after, and the PNG's md5.
#
#   bash experiments/demo_tile_cpu.sh PHOTO OUT_DIR [ROUNDS] [LARGE_PHOTO]   (from the repository root)
#
# PHOTO is rendered to 999x1507 (the README's measurement uses a 477x720 photograph); LARGE_PHOTO,
# if given, to 1.25 times its size with the default tile only. MODEL (default: the shipped model)
# and PY (default: python) may be set.
set -euo pipefail
photo=${1:?usage: demo_tile_cpu.sh PHOTO OUT_DIR [ROUNDS] [LARGE_PHOTO]}
out=${2:?usage: demo_tile_cpu.sh PHOTO OUT_DIR [ROUNDS] [LARGE_PHOTO]}
rounds=${3:-2}
large=${4:-}
model=${MODEL:-pretrained:edsr-baseline-liif}
py=${PY:-python}
mkdir -p "$out"
one() {  # NAME DEMO_FLAGS...
  local name=$1; shift
  local before; before=$(cut -d' ' -f1-3 /proc/loadavg)
  JAX_PLATFORMS=cpu /usr/bin/time -f "rss_kb=%M" -o "$out/$name.time" \
    "$py" -m liif_jax.demo --model "$model" --output "$out/$name.png" "$@" > "$out/$name.log" 2>&1
  local secs; secs=$(grep -o 'in [0-9.]* s$' "$out/$name.log" | tail -1 | cut -d' ' -f2)
  echo "$name: ${secs} s, peak RSS $(cut -d= -f2 "$out/$name.time") kB, load ${before} -> $(cut -d' ' -f1-3 /proc/loadavg)," \
    "md5 $(md5sum < "$out/$name.png" | cut -c1-12)"
}
for r in $(seq "$rounds"); do
  one "default_r$r" --input "$photo" --resolution 999,1507
  one "tile0_r$r" --input "$photo" --resolution 999,1507 --tile 0
done
if [ -n "$large" ]; then
  one large_default --input "$large" --scale 1.25
fi
