#!/usr/bin/env bash
# build-llamacpp.sh: builds the native llama.cpp peer for CPU benchmarks.
#
# llama.cpp comes from the source vendored in the pinned llama-cpp-python
# sdist (PyPI llama-cpp-python==0.3.36, vendor/llama.cpp at commit 0c1e570),
# fetched with `pip download --no-binary :all:` and sha256-checked. We build
# llama.cpp's own binaries (llama-bench, llama-completion; with --server
# also llama-server) with CMake for this CPU only: GGML_NATIVE=ON, no CUDA,
# no CURL/OpenSSL, static, Release, -j2. llama-server is built without its
# web UI and without fetching one (LLAMA_BUILD_UI=OFF,
# LLAMA_USE_PREBUILT_UI=OFF: no npm, no download; GET / then has no page,
# the API is the same). Nothing is copied into the repository; everything
# lives in the cache.
#
# It is a benchmark tool (bench/cpu_vs_llamacpp.py and, with --server,
# bench/serve_vs_llama_server.py use it): CI never runs it.
# Idempotent: if the binaries asked for are already built with the same
# settings it just prints their directory; asking for llama-server later
# builds only what it adds, in the same build directory.
#
# Prints the directory holding the binaries on stdout (last line); progress
# goes to stderr.
#
# Usage: scripts/build-llamacpp.sh [--server]
#        --server    also build llama-server (bench/serve_vs_llama_server.py)
# Env:   SAMEPAGE_CACHE  cache root (default $XDG_CACHE_HOME/samepage or
#                        ~/.cache/samepage); the peer goes in llama.cpp-0.3.36/
#        JOBS            parallel build jobs (default 2)
#        PYTHON          python interpreter for pip (default python3)
set -euo pipefail

version="0.3.36"
sdist="llama_cpp_python-$version.tar.gz"
sha256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
targets=(llama-bench llama-completion)
for arg in "$@"; do
  case "$arg" in
    --server) targets+=(llama-server) ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "samepage: build-llamacpp: error: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done
jobs="${JOBS:-2}"
py="${PYTHON:-python3}"

cache_root="${SAMEPAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/samepage}"
dir="$cache_root/llama.cpp-$version"
src="$dir/llama_cpp_python-$version/vendor/llama.cpp"
build="$dir/build"
bin="$build/bin"

cmake_args=(
  -G Ninja
  -DCMAKE_BUILD_TYPE=Release
  -DBUILD_SHARED_LIBS=OFF
  -DGGML_NATIVE=ON
  -DGGML_CUDA=OFF
  -DGGML_METAL=OFF
  -DGGML_VULKAN=OFF
  -DGGML_RPC=OFF
  -DLLAMA_CURL=OFF
  -DLLAMA_OPENSSL=OFF
  -DLLAMA_BUILD_TESTS=OFF
  -DLLAMA_BUILD_EXAMPLES=OFF
  -DLLAMA_BUILD_SERVER=ON
  -DLLAMA_BUILD_APP=OFF
  -DLLAMA_BUILD_UI=OFF
  -DLLAMA_USE_PREBUILT_UI=OFF
  -DLLAMA_BUILD_TOOLS=ON
)
# The stamp records how the build directory was configured; a different one
# reconfigures (and ninja rebuilds what that changes). Which targets were
# built is checked by their binaries, so asking for one more (--server)
# only builds that one. LLAMA_BUILD_SERVER=ON only adds the server's
# (and llama-cli's) CMake targets; nothing builds them unless asked.
stamp_text="llama-cpp-python $version sha256 $sha256
host $(uname -m) $(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')
cmake ${cmake_args[*]}"
stamp="$build/.samepage-stamp"

die() { echo "samepage: build-llamacpp: error: $*" >&2; exit 1; }
log() { echo "samepage: build-llamacpp: $*" >&2; }

built() {
  [[ -f "$stamp" && "$(cat "$stamp")" == "$stamp_text" ]] || return 1
  local t
  for t in "${targets[@]}"; do [[ -x "$bin/$t" ]] || return 1; done
}

if built; then
  log "already built: $bin"
  echo "$bin"
  exit 0
fi

command -v cmake >/dev/null || die "cmake not found (scripts/install-deps.sh installs it)"
command -v ninja >/dev/null || die "ninja not found (scripts/install-deps.sh installs it)"
command -v c++ >/dev/null || command -v g++ >/dev/null || command -v clang++ >/dev/null \
  || die "no C++ compiler found"
mkdir -p "$dir" || die "cannot create $dir"

file_sha256() { sha256sum "$1" | cut -d' ' -f1; }

# 1. The sdist (pip download; PyPI only).
if [[ ! -f "$dir/$sdist" || "$(file_sha256 "$dir/$sdist")" != "$sha256" ]]; then
  command -v "$py" >/dev/null || die "$py not found (needed for pip)"
  log "downloading $sdist from PyPI (pip download)"
  tmp="$(mktemp -d "$dir/.dl.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  "$py" -m pip download --no-binary :all: --no-deps --dest "$tmp" \
    "llama-cpp-python==$version" >&2 || die "pip download failed"
  [[ -f "$tmp/$sdist" ]] || die "pip did not produce $sdist"
  got="$(file_sha256 "$tmp/$sdist")"
  [[ "$got" == "$sha256" ]] || die "$sdist sha256 is $got, expected $sha256"
  mv -f "$tmp/$sdist" "$dir/$sdist"
  rm -rf "$tmp"; trap - EXIT
  rm -rf "$dir/llama_cpp_python-$version"
fi

# 2. Extract (only once; a marker says extraction finished).
if [[ ! -f "$dir/.extracted" || ! -f "$src/CMakeLists.txt" ]]; then
  log "extracting $sdist"
  rm -rf "$dir/llama_cpp_python-$version" "$dir/.extracted"
  tar -xzf "$dir/$sdist" -C "$dir" || die "cannot extract $sdist"
  [[ -f "$src/CMakeLists.txt" ]] || die "$sdist has no vendor/llama.cpp/CMakeLists.txt"
  touch "$dir/.extracted"
fi

# 3. Configure (unless the stamp says it is configured so) and build the tools.
for t in "${targets[@]}"; do
  grep -rqs "set(TARGET $t)" "$src/tools" || die "target $t not found in $src/tools"
done
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$stamp_text" || ! -f "$build/build.ninja" ]]; then
  log "configuring llama.cpp in $build (CPU, GGML_NATIVE=ON)"
  rm -f "$stamp"
  cmake -S "$src" -B "$build" "${cmake_args[@]}" >&2 || die "cmake configure failed"
fi
log "building ${targets[*]} with -j$jobs (takes a while on 2 cores)"
start=$SECONDS
cmake --build "$build" --target "${targets[@]}" -j "$jobs" >&2 || die "build failed"
for t in "${targets[@]}"; do [[ -x "$bin/$t" ]] || die "$bin/$t missing after the build"; done
printf '%s' "$stamp_text" > "$stamp"
log "built in $((SECONDS - start)) s: $bin"
echo "$bin"
