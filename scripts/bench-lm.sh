#!/usr/bin/env bash
# make bench-lm: the language-model path through a real mount. Copies a slice of the dev corpus
# into a mount, times the compactor recoding it (LM + classical candidates), then measures cold
# random 4 KiB reads of LM-coded blocks with O_DIRECT (each read decodes its blocks), and a
# cold sequential read. Needs root, /dev/fuse, fio.
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${CORPUS:-../shared/corpus/dev}
SRC_MB=${SRC_MB:-4}
MODEL=${MODEL:-}
command -v fio >/dev/null || { echo "bench-lm: needs fio (apt-get install fio)" >&2; exit 1; }
go build -o build/lmfs ./cmd/lmfs
work=$(mktemp -d /tmp/lmfs-benchlm.XXXXXX)
cleanup() { build/lmfs umount "$work/m" 2>/dev/null || umount -l "$work/m" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/m" "$work/src"
# Text, code and markup: the kinds the model is for.
find "$CORPUS/text" "$CORPUS/code" "$CORPUS/markup" -type f -print0 | sort -z | xargs -0 cat | head -c $((SRC_MB << 20)) > "$work/src/data"
args=()
[ -n "$MODEL" ] && args+=(--model "$MODEL")
build/lmfs mount "${args[@]}" "$work/store" "$work/m"
t0=$(date +%s.%N)
cp "$work/src/data" "$work/m/data"
build/lmfs compact --wait --quiet "$work/m"
t1=$(date +%s.%N)
cmp "$work/src/data" "$work/m/data"
build/lmfs stats "$work/m" | grep -E "^(stored|model|compactor)"
build/lmfs stats "$work/m" | sed -n '/codec/,/^$/p'
sync; echo 3 > /proc/sys/vm/drop_caches
out=$(fio --name=rand --filename="$work/m/data" --rw=randread --bs=4k --direct=1 --ioengine=psync \
      --runtime=20 --time_based --output-format=json 2>/dev/null)
echo "$out" | python3 -c '
import json, sys
j = json.load(sys.stdin)["jobs"][0]["read"]
p = j["clat_ns"]["percentile"]
print("random 4 KiB read, O_DIRECT, cold: %d reads, p50 %.1f ms, p99 %.1f ms" % (j["total_ios"], p["50.000000"]/1e6, p["99.000000"]/1e6))'
sync; echo 3 > /proc/sys/vm/drop_caches
# The block cache of the mount is warm from fio: remount for a cold sequential read.
build/lmfs umount "$work/m"
build/lmfs mount "${args[@]}" --no-compact "$work/store" "$work/m"
t2=$(date +%s.%N)
cat "$work/m/data" > /dev/null
t3=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v n=$((SRC_MB << 20)) 'BEGIN {
  printf "copy + compaction of %d MiB: %.1f s (%.0f KB/s)\n", n / 1048576, b - a, n / (b - a) / 1000
  printf "cold sequential read: %.1f s (%.0f KB/s)\n", d - c, n / (d - c) / 1000 }'
