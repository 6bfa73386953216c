#!/bin/sh
# Size sweep: equal token budget (STEPS x 4096 positions) per config, full schedule incl. QAT;
# prints the integer-model validation bits/byte per config.
#   sh model/train/sweep.sh STEPS K/H0/HIDDEN ...      e.g. sh model/train/sweep.sh 1500 16/512/256 32/256/256
cd "$(dirname "$0")/../.."
STEPS=$1; shift
mkdir -p model/train/runs/sweep
for cfg in "$@"; do
  K=$(echo $cfg | cut -d/ -f1); H0=$(echo $cfg | cut -d/ -f2); HID=$(echo $cfg | cut -d/ -f3)
  name="sw_k${K}_h${H0}_$(echo $HID | tr , x)_s$STEPS"
  /usr/bin/python3 model/train/train.py --name "$name" --K $K --h0 $H0 --hidden $HID --steps $STEPS \
    --warmup 150 --eval-every 100000 --rundir model/train/runs/sweep/$name > model/train/runs/sweep/$name.log 2>&1
  grep -E "macs/byte|end of float|integer model|done" model/train/runs/sweep/$name.log
done
