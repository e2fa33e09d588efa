#!/usr/bin/env bash
# Installs what samepage needs and is missing, saying what it installs:
#  - Debian packages: cmake, ninja, gcc, clang + lld + wasi-libc +
#    libclang-rt-14-dev-wasm32 (guests), libclang-rt-14-dev (sanitizer
#    runtimes for clang), python3, pkg-config (the install test),
#    libmicrohttpd-dev + libjansson-dev (`samepage serve`: HTTP and JSON),
#    python3-venv (the server tests' openai client, in a venv),
#    libvulkan-dev + glslc (the Vulkan backend: loader headers, GLSL to
#    SPIR-V at build time) and mesa-vulkan-drivers (lavapipe, a Vulkan
#    device on the CPU, so `--backend vulkan` runs and is tested without a
#    GPU);
#  - Rust's cargo must already exist (rustup); it builds Wasmtime's C API.
# With --browser (optional; scripts/test passes it): chromium and
# chromium-driver too, for the chat page's headless-browser test
# (test_serve_browser, skipped without them; ~160 MB, under a minute).
set -euo pipefail

need_pkgs=()
check_pkg() { dpkg -s "$1" >/dev/null 2>&1 || need_pkgs+=("$1"); }
for p in cmake ninja-build gcc clang lld wasi-libc libclang-rt-14-dev-wasm32 python3 python3-venv unzip pkg-config \
         libmicrohttpd-dev libjansson-dev libvulkan-dev glslc mesa-vulkan-drivers; do
  check_pkg "$p"
done
[[ ${1:-} == --browser ]] && { check_pkg chromium; check_pkg chromium-driver; }

if ((${#need_pkgs[@]})); then
  echo "samepage: installing Debian packages: ${need_pkgs[*]}" >&2
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${need_pkgs[@]}" >&2
fi

if ! command -v cargo >/dev/null 2>&1; then
  [[ -x "$HOME/.cargo/bin/cargo" ]] && export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "samepage: cargo (Rust >= 1.95) is required to build Wasmtime's C API; install it with rustup" >&2
  exit 1
fi
