#!/usr/bin/env bash
# One GPU check, at most 10 minutes of measurements (then 1.5 of CPU-only compiles), everything into one folder (see experiments/GPU_CHECK.md):
# the benchmark (float32/TF32, peaks at run time apart from compilation), the top XLA ops of a
# training step and of an x4 render with each decoder (the fused Pallas kernel and XLA's), the
# fused kernel against XLA's decoder (agreement, speed, block sizes), the official code vs ours
# (when OFFICIAL is given) and the PSNR change of TF32 and bf16 (when MODEL and HR_DIR are given).
#
#   OUT=results-h100 [OFFICIAL=path/to/yinboc-liif] [MODEL=workdir HR_DIR=photos [SPLIT_FILE=f SPLIT_KEY=k]]
#   [WHEELS=dir] [PY=python3] [SMALL=1] [CASES=a,b] bash experiments/gpu_check.sh
#
# SMALL=1 is the CPU dry run (tiny sizes). Each step has its own time limit (BENCH_S, PROF_S, FUSED_S,
# CMP_S, PREC_S seconds), so a step that hangs cannot eat the others' time; summary.txt lists exit codes.
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:?set OUT to the results folder}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
cd "$REPO"
PY=${PY:-python3}
export PYTHONUNBUFFERED=1
if [ -n "${WHEELS:-}" ]; then  # what the machine's Python lacks, installed into a scratch folder
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu_check_site \
    "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/gpu_check_site:$REPO${PYTHONPATH:+:$PYTHONPATH}
else
  export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
fi
SZ=${SMALL:+--size small}
CASES=${CASES:-train_edsr_baseline,render_x4_div2k,render_x30_3840,render_x2_8k,train_rdn,render_x4_rdn_div2k}
t0=$(date +%s)
: > "$OUT/summary.txt"
step() {  # step NAME SECONDS COMMAND...: runs it with a time limit, output in NAME.log
  local name=$1 limit=$2; shift 2
  local t=$(date +%s)
  echo "== $name (limit ${limit} s) $(date -u +%T)"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc $(( $(date +%s) - t )) s" | tee -a "$OUT/summary.txt"
  tail -n 3 "$OUT/$name.log"
}
{ git -C "$REPO" rev-parse HEAD 2>/dev/null || echo "not a git checkout"; date -u; nproc
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import jax, flax, optax, grain; print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__)"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

step benchmark "${BENCH_S:-250}" $PY experiments/benchmark.py $SZ --dtypes float32 --isolate \
  --num_workers "${WORKERS:-12}" --cases "$CASES" --out "$OUT"
step profile "${PROF_S:-90}" $PY experiments/profile_ops.py $SZ --out "$OUT"
step fused "${FUSED_S:-120}" $PY experiments/fused_check.py $SZ ${SMALL:+--sweep 64x4 --repeats 1} --out "$OUT"
if [ -n "${OFFICIAL:-}" ]; then
  step compare_official "${CMP_S:-90}" $PY experiments/compare_official.py --official "$OFFICIAL" $SZ --out "$OUT"
else
  echo "compare_official skipped: no OFFICIAL" | tee -a "$OUT/summary.txt"
fi
if [ -n "${MODEL:-}" ] && [ -n "${HR_DIR:-}" ]; then
  SPLIT=()
  [ -n "${SPLIT_FILE:-}" ] && SPLIT=(--split-file "$SPLIT_FILE" --split-key "${SPLIT_KEY:-test}")
  step precision "${PREC_S:-60}" $PY experiments/precision.py --model "$MODEL" --hr-dir "$HR_DIR" "${SPLIT[@]}" \
    --scale "${PREC_SCALES:-2,4,12,30}" --out "$OUT"
else
  echo "precision skipped: no MODEL and HR_DIR" | tee -a "$OUT/summary.txt"
fi
# Last, as it needs no GPU: the deviceless estimate of the programs the benchmark timed, beside its
# measurements (aot_compare_<target>.md; CPU only, also runnable afterwards; AOT_S=0 skips it).
BENCH_JSON=$(ls "$OUT"/benchmark_*.json 2>/dev/null | grep -v '/benchmark_cpu.json$' | head -n 1)
if [ -n "$BENCH_JSON" ] && [ "${AOT_S:-90}" -gt 0 ]; then
  step aot_compare "${AOT_S:-90}" env JAX_PLATFORMS=cpu $PY experiments/aot_compare.py --benchmark "$BENCH_JSON" --out "$OUT"
else
  echo "aot_compare skipped: no GPU benchmark (or AOT_S=0)" | tee -a "$OUT/summary.txt"
fi
echo "total $(( $(date +%s) - t0 )) s" | tee -a "$OUT/summary.txt"
