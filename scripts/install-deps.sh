#!/usr/bin/env bash
# Installs what building and testing lmfs needs on Debian/Ubuntu: fuse3 (fusermount3 for
# non-root mounts), npm (fetches ONNX Runtime), and the tools the tests drive. Skips what is
# already there; needs root (or sudo) only when something is missing.
set -euo pipefail

need=()
command -v fusermount3 >/dev/null || need+=(fuse3)
command -v npm >/dev/null || need+=(npm)
command -v setfattr >/dev/null || need+=(attr)
command -v setfacl >/dev/null || need+=(acl)
command -v git >/dev/null || need+=(git)
command -v sqlite3 >/dev/null || need+=(sqlite3)
command -v zstd >/dev/null || need+=(zstd)
if ! command -v go >/dev/null; then
  echo "install-deps: Go 1.26 or newer is required (https://go.dev/dl/)" >&2
  exit 1
fi
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "install-deps: installing ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
go mod download
