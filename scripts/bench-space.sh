#!/usr/bin/env bash
# bench-space.sh: does space come back? Writes SIZE_MIB (default 1024) of mixed data (the dev
# corpus — text, code, markup, binaries, images, audio — copied over and over) through an lmfs
# mount, deletes it, and prints the store's size on disk (`lmfs stats`, allocated bytes of
# Badger's files) before the write, after it, right after the delete, and once value-log GC
# has given the space back (gc.go: forced memtable flush, flatten and GC after large
# deletions; the script only waits, it triggers nothing).
#
#   make bench-space                      # 1 GiB, store in a temp dir under /tmp
#   SIZE_MIB=256 WAIT=60 bash scripts/bench-space.sh
#
# Environment: LMFS (binary, default ./lmfs), CORPUS (default ../shared/corpus/dev),
# SIZE_MIB, WAIT (seconds to wait for reclamation, default 120), MOUNT_FLAGS (default --no-lm:
# the compactor still recodes with the classical codecs), TMPDIR (where the store goes).
set -euo pipefail
LMFS=${LMFS:-./lmfs}
CORPUS=${CORPUS:-../shared/corpus/dev}
SIZE_MIB=${SIZE_MIB:-1024}
WAIT=${WAIT:-120}
MOUNT_FLAGS=${MOUNT_FLAGS:---no-lm}
LMFS=$(readlink -f "$LMFS")
[ -x "$LMFS" ] || { echo "bench-space: no lmfs binary at $LMFS (make build)" >&2; exit 1; }
[ -d "$CORPUS" ] || { echo "bench-space: no corpus at $CORPUS" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/lmfs-bench-space.XXXXXX")
store=$work/store mnt=$work/mnt
mkdir -p "$mnt"
cleanup() {
	if mountpoint -q "$mnt"; then "$LMFS" umount "$mnt" >/dev/null 2>&1 || umount -l "$mnt"; fi
	rm -rf "$work"
}
trap cleanup EXIT

# One copy of the corpus as a single stream (sorted, so every run writes the same bytes).
find "$CORPUS" -type f -print0 | sort -z | xargs -0 cat > "$work/corpus.bin"
csize=$(stat -c %s "$work/corpus.bin")

"$LMFS" mount $MOUNT_FLAGS "$store" "$mnt"
field() { "$LMFS" stats --json "$mnt" | sed -n "s/^  \"$1\": \([0-9-]*\),*$/\1/p"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
rows=()
row() { rows+=("$(printf '%-14s %12s %12s %10s' "$1" "$(mib "$(field logical_bytes)")" "$(mib "$(field disk_bytes)")" "$2")"); }

t0=$(date +%s.%N)
row "before write" "-"
want=$((SIZE_MIB << 20)) done=0 i=0
while [ "$done" -lt "$want" ]; do
	n=$(( want - done < csize ? want - done : csize ))
	mkdir -p "$mnt/d$((i / 16))"
	head -c "$n" "$work/corpus.bin" > "$mnt/d$((i / 16))/copy$i"
	done=$((done + n)) i=$((i + 1))
done
sync -f "$mnt"
t1=$(date +%s.%N)
row "after write" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1fs", b - a }')"
rm -rf "$mnt"/d*
t2=$(date +%s.%N)
row "after delete" "$(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.1fs", b - a }')"

# Wait until the size on disk has stopped shrinking for 10 s (or WAIT s have passed).
last=$(field disk_bytes) stable=0 start=$(date +%s) tshrink=$t2
while [ $(( $(date +%s) - start )) -lt "$WAIT" ] && [ "$stable" -lt 10 ]; do
	sleep 1
	cur=$(field disk_bytes)
	if [ "$cur" -lt "$last" ]; then last=$cur stable=0 tshrink=$(date +%s.%N); else stable=$((stable + 1)); fi
done
row "after GC" "$(awk -v a="$t2" -v b="$tshrink" 'BEGIN { printf "+%.0fs", b - a }')"

echo
echo "lmfs bench-space: $(mib "$want") MiB of $CORPUS (copied $i times), mount flags: $MOUNT_FLAGS"
printf '%-14s %12s %12s %10s\n' "phase" "logical MiB" "on disk MiB" "time"
printf '%s\n' "${rows[@]}"
echo "(\"after GC\" time: from the delete to the last shrink; disk = allocated bytes of the store's files)"
