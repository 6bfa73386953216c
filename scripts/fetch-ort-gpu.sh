#!/usr/bin/env bash
# fetch-ort-gpu.sh DEST: put ONNX Runtime with its CUDA provider into DEST, for
# `lmfs mount --device cuda --ort-lib DEST/libonnxruntime.so.1` on linux x64 with an NVIDIA GPU.
#
#   bash scripts/fetch-ort-gpu.sh lib-gpu        (what `make ort-gpu` runs)
#
# ONNX Runtime loads execution providers from the directory of libonnxruntime itself, so DEST
# gets, side by side:
#   libonnxruntime.so.1 (+ libonnxruntime.so)  the main library, ORT_GPU_VERSION, from the npm
#                                              package onnxruntime-node (scripts/fetch-ort.sh)
#   libonnxruntime_providers_shared.so         the bridge the main library loads providers through
#   libonnxruntime_providers_cuda.so           the CUDA provider (~230 MB, built for CUDA 13)
# The two providers come from the npm package com.github.asus4.onnxruntime.linux-x64-gpu, which
# repackages the providers of ONNX Runtime's official linux GPU release; it does not hold the
# main library. A provider only works with the main library of exactly its release, hence the
# pinned pair below (package 0.4.9 = ONNX Runtime 1.29.0). The TensorRT provider in the package
# is left out: lmfs does not use it.
#
# The CUDA libraries themselves (driver, CUDA 13 runtime, cuBLAS, cuDNN 9, ...) are not
# downloaded: README.md ("NVIDIA GPU") says which to install.
#
# Idempotent: when DEST holds all three libraries of this pair (recorded in
# DEST/libonnxruntime-gpu.version), it does nothing.
set -euo pipefail

dest=${1:?usage: fetch-ort-gpu.sh DEST}
ort_version=${ORT_GPU_VERSION:-1.29.0}
pkg=com.github.asus4.onnxruntime.linux-x64-gpu
pkg_version=${ORT_GPU_PKG_VERSION:-0.4.9}
stamp="$dest/libonnxruntime-gpu.version"
want="onnxruntime $ort_version, $pkg@$pkg_version"
providers=(libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so)

have_all() {
    [[ -f "$dest/libonnxruntime.so.1" ]] || return 1
    local p
    for p in "${providers[@]}"; do
        [[ -f "$dest/$p" ]] || return 1
    done
}

if have_all && [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "fetch-ort-gpu: $dest already holds $want"
    exit 0
fi

case "$(uname -s)/$(uname -m)" in
    Linux/x86_64|Linux/amd64) ;;
    *) echo "fetch-ort-gpu: the CUDA build is packaged for linux x64 only, not $(uname -s)/$(uname -m)" >&2
       exit 1 ;;
esac

if ! command -v npm >/dev/null 2>&1; then
    echo "fetch-ort-gpu: npm is not installed; it is needed to download $pkg@$pkg_version (apt-get install npm)" >&2
    exit 1
fi

# The main library, with its own version stamp (a no-op when DEST already has it).
ORT_VERSION=$ort_version bash "$(dirname "$0")/fetch-ort.sh" "$dest"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "fetch-ort-gpu: downloading $pkg@$pkg_version (about 180 MB)"
# A private npm cache: the archive is not kept twice (once in ~/.npm) after the copy in DEST.
if ! (cd "$tmp" && npm pack --cache "$tmp/npm-cache" "$pkg@$pkg_version" >/dev/null 2>"$tmp/npm.err"); then
    # npm's own reason, one line: its first "npm error" line that is not a code or its log file.
    why=$(grep '^npm error' "$tmp/npm.err" | grep -v -E '^npm error (code|errno|syscall|A complete log) ' |
        sed 's/^npm error *//' | head -n1 || true)
    echo "fetch-ort-gpu: npm pack $pkg@$pkg_version failed${why:+: $why}" >&2
    exit 1
fi
tgz=$(ls "$tmp"/"$pkg"-*.tgz 2>/dev/null | head -n1)
if [[ -z "$tgz" ]]; then
    echo "fetch-ort-gpu: npm pack produced no archive" >&2
    exit 1
fi

members=()
for p in "${providers[@]}"; do
    members+=("package/Plugins/Linux/x64/$p")
done
if ! tar -xzf "$tgz" -C "$tmp" "${members[@]}" 2>/dev/null; then
    echo "fetch-ort-gpu: $pkg@$pkg_version lacks ${providers[*]} under package/Plugins/Linux/x64" >&2
    exit 1
fi

mkdir -p "$dest"
rm -f "$stamp"
for p in "${providers[@]}"; do
    install -m 0644 "$tmp/package/Plugins/Linux/x64/$p" "$dest/$p.tmp"
    mv -f "$dest/$p.tmp" "$dest/$p"
done
echo "$want" > "$stamp"
echo "fetch-ort-gpu: installed $want into $dest ($(du -sh "$dest" | cut -f1)); use --device cuda --ort-lib $dest/libonnxruntime.so.1"
