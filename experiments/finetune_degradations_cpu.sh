#!/usr/bin/env bash
# Fine-tuning the shipped model with degradations on a CPU (`--photos`, the own-photos CPU recipe),
# then the shipped and the fine-tuned model at x4 on held-out photographs, clean and degraded.
#
#   bash experiments/finetune_degradations_cpu.sh OUT_DIR [PHOTOS_DIR]   (from the repository root)
#
# Training: 7 mate-nature photographs (PHOTOS_DIR, default /usr/share/backgrounds/mate/nature, where
# `apt-get install mate-backgrounds` puts them), of which the recipe holds FreshFlower out; six train. Held out from both
# the shipped model and this run: the mate-nature test photographs (TwoWings, Wood, YellowFlower,
# central 384 px) and scikit-image's chelsea and coffee.
set -euo pipefail
out=${1:?usage: finetune_degradations_cpu.sh OUT_DIR [PHOTOS_DIR]}
photos=${2:-/usr/share/backgrounds/mate/nature}
[ -f "$photos/Aqua.jpg" ] || { echo "no mate-nature photographs in $photos: apt-get install mate-backgrounds, or pass PHOTOS_DIR" >&2; exit 1; }
py=${PYTHON:-python}
mkdir -p "$out/photos" "$out/held_out"
for name in Aqua Blinds Dune FreshFlower Garden GreenMeadow LadyBird; do ln -sf "$(realpath "$photos/$name.jpg")" "$out/photos/"; done
for name in TwoWings Wood YellowFlower; do ln -sf "$(realpath "$photos/$name.jpg")" "$out/held_out/"; done
sk=$("$py" -c "import os, skimage.data; print(os.path.dirname(skimage.data.__file__))")
for name in chelsea coffee; do ln -sf "$sk/$name.png" "$out/held_out/"; done
[ -d "$out/run/checkpoints" ] || /usr/bin/time -v "$py" -m liif_jax.train --workdir "$out/run" --photos "$out/photos" 2>&1 | tee "$out/train.log"
for model in pretrained:edsr-baseline-liif "$out/run"; do
  for degrade in none jpeg:30 jpeg:45 jpeg:60 realesrgan:0; do
    tag=$(basename "$model" | tr ':' '_')_${degrade/:/}
    flag=(); [ "$degrade" = none ] || flag=(--degrade "$degrade")
    "$py" -m liif_jax.evaluate --model "$model" --hr-dir "$out/held_out" --scale 4 --center-crop 384 \
      "${flag[@]}" --json "$out/eval/$tag.json" | tail -3
  done
done
