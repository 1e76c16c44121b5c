#!/bin/sh
# Recreate engine/data/trained/{denoise,sharpen,dust}.onnx with the exact stage sequence of the committed run,
# then the manifest.  Usage: models/train/reproduce.sh [extra train.py args, e.g. --mate-dir DIR]
# Each stage starts from the previous stage's weights (--init).  Stage 1 of the committed run stopped
# on its 25-min wall-clock cap (denoise 4701, sharpen 4583 steps; the lr was annealed by time), so
# on another machine stage 1 lands close to, not bit-equal with, the committed one; so did the
# denoiser's stage 4 (4046 of 5000 steps in 12 min); stages 2 and 3 ran their full step counts.  Stage 2 adds the in-graph noise estimate as a 4th input channel of the
# denoiser (zero-initialised weights) and picks half of the crops by texture.
set -e
cd "$(dirname "$0")/../.."
PY=${PY:-.venv-train/bin/python}
T=models/train/train.py
for task in denoise sharpen; do
  NI=""; [ "$task" = denoise ] && NI="--noise-input"
  $PY $T --task $task --steps 12000 --budget-min 25 --tag _stage1 "$@"
  $PY $T --task $task --init engine/data/trained/${task}_stage1.pt $NI --detail 0.5 --lr 1e-3 --steps 4200 --budget-min 25 --tag _stage2 "$@"
  $PY $T --task $task --init engine/data/trained/${task}_stage2.pt $NI --detail 0.5 --lr 5e-4 --steps 2400 --budget-min 12 --tag _stage3 "$@"
done
# stage 4, denoiser only (a 4th sharpener stage made short motion blur worse and was not shipped)
$PY $T --task denoise --init engine/data/trained/denoise_stage3.pt --noise-input --detail 0.5 --lr 5e-4 --seed 1 --steps 5000 --budget-min 12 --tag _stage4 "$@"
# the denoiser's chroma filter, appended to the exported graph (no training; denoise_post.json records it)
$PY models/train/chroma_filter.py engine/data/trained/denoise.onnx
# restore-dust's detector (models/train/train_dust.py): stage 1 from scratch (it ran its full 12000 steps
# in 30 min), stage 2 weighs confident false positives more (--hard-neg), then the default threshold is
# calibrated on GIMP's photographic patterns (Debian gimp-data; GIMP_PATTERNS=<dir>/usr/share/gimp/3.0/patterns)
D=models/train/train_dust.py
$PY $D --steps 12000 --budget-min 40 --patch 96 --tag _stage1 "$@"
$PY $D --init engine/data/trained/dust_stage1.pt --hard-neg 8 --lr 5e-4 --seed 1 --steps 6000 --budget-min 20 \
  --patch 96 --tag _stage2 "$@"
$PY $D --calibrate engine/data/trained/dust_stage2.pt
$PY models/train/manifest.py
