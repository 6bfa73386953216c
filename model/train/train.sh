#!/bin/sh
# Retrain the default lmfs model from scratch (one thread; 26,600 steps x 4,096 positions, ~40-60 min on one core),
# export it (model/train/runs/$NAME/$NAME.lmfsm) and measure it on the held-out dev corpus.
#   sh model/train/train.sh [NAME] [extra train.py flags, e.g. --steps 60000 --resume]
set -e
cd "$(dirname "$0")/../.."
NAME=${1:-lmfs-ctx16-v1}
[ $# -gt 0 ] && shift
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p model/train/runs/$NAME
/usr/bin/python3 model/train/train.py --name "$NAME" --K 16 --h0 512 --hidden 256 --steps 26600 --qat-frac 0.16 --logit-pen 1e-4 "$@" \
  2>&1 | tee -a model/train/runs/$NAME/log.txt
/usr/bin/python3 model/train/eval_dev.py model/train/runs/$NAME/weights.npz --json model/train/runs/$NAME/dev.json
