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
set +o pipefail # head closes the pipe early on purpose
find "$CORPUS/text" "$CORPUS/code" "$CORPUS/markup" -type f -print0 | sort -z | xargs -0 cat 2>/dev/null | head -c $((SRC_MB << 20)) > "$work/src/data"
set -o pipefail
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
# Cold random reads: a fresh mount (empty block cache), each read of a 4 KiB page never read
# before, with O_DIRECT so the kernel's cache doesn't answer either.
build/lmfs umount "$work/m"
build/lmfs mount "${args[@]}" --no-compact "$work/store" "$work/m"
pages=$(( (SRC_MB << 20) / 4096 ))
for k in $(shuf -i 0-$((pages - 1)) -n 40 --random-source=<(yes)); do
  a=$(date +%s%N); dd if="$work/m/data" of=/dev/null bs=4096 count=1 skip="$k" iflag=direct status=none; b=$(date +%s%N)
  echo $(( (b - a) / 1000 ))
done | sort -n | awk '{ v[NR] = $1; s += $1 } END {
  printf "cold random 4 KiB read of LM blocks (O_DIRECT, fresh mount, 40 reads): p50 %.1f ms, p90 %.1f ms, mean %.1f ms\n", v[int(NR/2)]/1000, v[int(NR*0.9)]/1000, s/NR/1000 }'
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
