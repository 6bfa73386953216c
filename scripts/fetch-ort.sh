#!/usr/bin/env bash
# fetch-ort.sh DEST: put ONNX Runtime's shared library (libonnxruntime.so.1 and a
# libonnxruntime.so symlink) into DEST, taken from the npm package onnxruntime-node,
# which ships the CPU build of libonnxruntime for linux x64 and arm64.
#
#   ORT_VERSION=1.24.3 bash scripts/fetch-ort.sh lib
#
# Idempotent: when DEST already holds the library of ORT_VERSION (recorded in
# DEST/libonnxruntime.version), it does nothing.
set -euo pipefail

dest=${1:?usage: fetch-ort.sh DEST}
version=${ORT_VERSION:-1.24.3}
stamp="$dest/libonnxruntime.version"

if [[ -f "$dest/libonnxruntime.so.1" && -f "$stamp" && "$(cat "$stamp")" == "$version" ]]; then
    echo "fetch-ort: $dest/libonnxruntime.so.1 is already ONNX Runtime $version"
    exit 0
fi

case "$(uname -s)/$(uname -m)" in
    Linux/x86_64|Linux/amd64) arch=x64 ;;
    Linux/aarch64|Linux/arm64) arch=arm64 ;;
    *) echo "fetch-ort: unsupported platform $(uname -s)/$(uname -m); install libonnxruntime $version yourself and set LMFS_ORT_LIB" >&2
       exit 1 ;;
esac

if ! command -v npm >/dev/null 2>&1; then
    echo "fetch-ort: npm is not installed; it is needed to download onnxruntime-node@$version (apt-get install npm)" >&2
    exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "fetch-ort: downloading onnxruntime-node@$version"
(cd "$tmp" && npm pack --silent "onnxruntime-node@$version" >/dev/null)
tgz=$(ls "$tmp"/onnxruntime-node-*.tgz 2>/dev/null | head -n1)
if [[ -z "$tgz" ]]; then
    echo "fetch-ort: npm pack produced no archive" >&2
    exit 1
fi

member="package/bin/napi-v6/linux/$arch/libonnxruntime.so.1"
if ! tar -xzf "$tgz" -C "$tmp" "$member" 2>/dev/null; then
    # Older or newer packages may name the library with its full version.
    member=$(tar -tzf "$tgz" | grep -E "^package/bin/napi-v[0-9]+/linux/$arch/libonnxruntime\.so(\.[0-9]+)*$" | sort | tail -n1 || true)
    if [[ -z "$member" ]]; then
        echo "fetch-ort: no libonnxruntime for linux/$arch in onnxruntime-node@$version" >&2
        exit 1
    fi
    tar -xzf "$tgz" -C "$tmp" "$member"
fi

mkdir -p "$dest"
install -m 0644 "$tmp/$member" "$dest/libonnxruntime.so.1.tmp"
mv -f "$dest/libonnxruntime.so.1.tmp" "$dest/libonnxruntime.so.1"
ln -sfn libonnxruntime.so.1 "$dest/libonnxruntime.so"
echo "$version" > "$stamp"
echo "fetch-ort: installed ONNX Runtime $version ($arch) into $dest"
