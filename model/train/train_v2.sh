#!/bin/sh
# Train the v2 model (format 2: the ctxmlp of v1 plus 4 hashed n-gram tables of 4,096 rows,
# orders 2, 3, 4 and 6), export it (model/train/runs/$NAME/$NAME.lmfsm) and measure it on the
# held-out dev corpus.
#
#   sh model/train/train_v2.sh [NAME] [INIT] [extra train.py flags]
#
# INIT is the exported model the run starts from (default: v1, kept in codec/testdata/golden;
# its n-gram rows start at zero). Passing the shipped model/default.lmfsm continues training
# where the last run ended: that is how training goes on across sessions without keeping float
# checkpoints in the repository (within a session, --resume continues from runs/NAME/ckpt.pt).
set -e
cd "$(dirname "$0")/../.."
NAME=${1:-lmfs-ctx16-ng4-v2}
INIT=${2:-codec/testdata/golden/56dcee22.lmfsm}
[ $# -gt 0 ] && shift
[ $# -gt 0 ] && shift
mkdir -p model/train/runs/$NAME
/usr/bin/python3 model/train/train.py --name "$NAME" --K 16 --h0 512 --hidden 256 \
  --ngram 2,3,4,6 --ngram-bits 12 --init-from "$INIT" --old-lr-mult 0.25 \
  --lr 2e-3 --warmup 200 --minutes 60 --qat-frac 0.12 --threads 2 "$@" \
  2>&1 | tee -a model/train/runs/$NAME/log.txt
/usr/bin/python3 model/train/eval_dev.py model/train/runs/$NAME/weights.npz --json model/train/runs/$NAME/dev.json
