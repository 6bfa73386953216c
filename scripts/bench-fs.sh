#!/usr/bin/env bash
# make bench: file system throughput of lmfs against go-fuse's loopback (passthrough) in the
# same run. Sequential write and read of a 256 MiB file of mixed text and binary (built from
# the dev corpus), the median of ROUNDS rounds, and random 4 KiB reads with O_DIRECT (fio),
# p50/p99 latency.
# Needs root, /dev/fuse, fio. Prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-256}
ROUNDS=${ROUNDS:-5}
CORPUS=${CORPUS:-../shared/corpus/dev}
command -v fio >/dev/null || { echo "bench-fs: needs fio (apt-get install fio)" >&2; exit 1; }
go build -o build/lmfs ./cmd/lmfs
go build -o build/loopback ./test/loopback
work=$(mktemp -d /tmp/lmfs-bench.XXXXXX)
cleanup() {
  # lmfs umount waits until the server has closed the store: only then may it be deleted.
  build/lmfs umount "$work/m-lmfs" 2>/dev/null || umount -l "$work/m-lmfs" 2>/dev/null || true
  umount "$work/m-loop" 2>/dev/null || umount -l "$work/m-loop" 2>/dev/null || true
  [ -n "${lpid:-}" ] && kill "$lpid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/m-lmfs" "$work/m-loop" "$work/plain"
# Source data: the dev corpus (text, code, markup, binary, images, audio) repeated.
src="$work/src.bin"
while [ "$(stat -c %s "$src" 2>/dev/null || echo 0)" -lt $((SIZE_MB << 20)) ]; do
  find "$CORPUS" -type f ! -name '*.md' ! -name '*.tsv' -print0 | sort -z | xargs -0 cat >> "$src"
done
truncate -s $((SIZE_MB << 20)) "$src"
cat "$src" > /dev/null # keep the source in the page cache

build/lmfs mount --no-compact "$work/store" "$work/m-lmfs"
build/loopback "$work/plain" "$work/m-loop" > "$work/loop.log" 2>&1 &
lpid=$!
for _ in $(seq 50); do grep -q ready "$work/loop.log" 2>/dev/null && break; sleep 0.1; done
# The same kernel read-ahead window for both (lmfs mount sets 4 MiB on its own mount).
echo 4096 > "/sys/class/bdi/$(mountpoint -d "$work/m-loop")/read_ahead_kb" || true

mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1e6 }'; }
seconds() { local t0 t1; t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'; }
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
declare -A W R WS RS P50 P99
# ROUNDS rounds, lmfs and loopback taking turns (the page cache's state drifts between runs,
# and the loopback's speed with it): each round writes a new file, then reads it cold.
for r in $(seq "$ROUNDS"); do
  for fs in lmfs loop; do
    m="$work/m-$fs"
    sync; echo 3 > /proc/sys/vm/drop_caches; cat "$src" > /dev/null
    t=$(seconds dd if="$src" of="$m/big$r" bs=1M conv=fsync status=none)
    WS[$fs]+=" $(mbps $((SIZE_MB << 20)) "$t")"
    if [ $fs = lmfs ]; then
      # A fresh server: lmfs reads data segments through mappings, and pages a process has
      # mapped survive drop_caches (the next read would not be cold).
      build/lmfs umount "$m" && build/lmfs mount --no-compact "$work/store" "$m"
    fi
    sync; echo 3 > /proc/sys/vm/drop_caches
    t=$(seconds dd if="$m/big$r" of=/dev/null bs=1M status=none)
    RS[$fs]+=" $(mbps $((SIZE_MB << 20)) "$t")"
    cmp -s "$src" "$m/big$r" || { echo "bench-fs: $fs returned different bytes!" >&2; exit 1; }
  done
done
for fs in lmfs loop; do
  m="$work/m-$fs"
  W[$fs]=$(median ${WS[$fs]})
  R[$fs]=$(median ${RS[$fs]})
  out=$(fio --name=rand --filename="$m/big1" --rw=randread --bs=4k --direct=1 --ioengine=psync \
        --runtime=15 --time_based --size=$((SIZE_MB))M --output-format=json 2>/dev/null)
  P50[$fs]=$(echo "$out" | python3 -c 'import json,sys; p=json.load(sys.stdin)["jobs"][0]["read"]["clat_ns"]["percentile"]; print("%.0f" % (p["50.000000"]/1000))')
  P99[$fs]=$(echo "$out" | python3 -c 'import json,sys; p=json.load(sys.stdin)["jobs"][0]["read"]["clat_ns"]["percentile"]; print("%.0f" % (p["99.000000"]/1000))')
done
echo "rounds (MB/s): lmfs write${WS[lmfs]}, read${RS[lmfs]}; loopback write${WS[loop]}, read${RS[loop]}"
echo
echo "| $SIZE_MB MiB mixed file | lmfs | loopback | lmfs / loopback |"
echo "|---|---|---|---|"
echo "| sequential write (dd 1 MiB, fsync) MB/s, median | ${W[lmfs]} | ${W[loop]} | $(awk -v a="${W[lmfs]}" -v b="${W[loop]}" 'BEGIN{printf "%.2f", a/b}') |"
echo "| sequential read (dd 1 MiB, cold) MB/s, median | ${R[lmfs]} | ${R[loop]} | $(awk -v a="${R[lmfs]}" -v b="${R[loop]}" 'BEGIN{printf "%.2f", a/b}') |"
echo "| random 4 KiB read, O_DIRECT, p50 µs | ${P50[lmfs]} | ${P50[loop]} | |"
echo "| random 4 KiB read, O_DIRECT, p99 µs | ${P99[lmfs]} | ${P99[loop]} | |"
build/lmfs stats "$work/m-lmfs" | sed -n '3,5p'
