#!/usr/bin/env bash
# build.sh [BUILD_DIR] [extra cmake args...]: configures and builds samepage.
# The Wasmtime C API is built once and cached in ~/.cache/samepage.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"; shift || true
"$root/scripts/install-deps.sh"
[[ -x "$HOME/.cargo/bin/cargo" ]] && export PATH="$HOME/.cargo/bin:$PATH"
wasmtime_dir="$("$root/scripts/build-wasmtime.sh")"
cmake -S "$root" -B "$build" -G Ninja -DSP_WASMTIME_DIR="$wasmtime_dir" "$@" >/dev/null
cmake --build "$build"
