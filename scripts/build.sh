#!/usr/bin/env bash
# build.sh [DIR] [cmake args...] - configure and build.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$ROOT/build}; shift || true
cmake -S "$ROOT" -B "$dir" "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
