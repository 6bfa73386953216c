#!/usr/bin/env bash
# stress.sh: builds the stress program (test/stress) and runs it against ./lmfs for
# STRESS_DURATION (default 2m). Extra arguments go to the program (-procs, -workers, -seed,
# -mount-flags, -dir, ...); it prints operations, errors, ops/s, the fsck verdict and the
# byte-for-byte comparison after a remount, and exits non-zero on any error.
set -euo pipefail
LMFS=${LMFS:-./lmfs}
STRESS_DURATION=${STRESS_DURATION:-2m}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lmfs-stress-bin.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/stress" ./test/stress
"$tmp/stress" -lmfs "$LMFS" -duration "$STRESS_DURATION" "$@"
