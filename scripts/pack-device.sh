#!/usr/bin/env bash
# pack-device.sh [--cpu] [BUILD] [OUT]: packs the host binaries a GPU machine needs
# from BUILD (default build-test, scripts/test's build: the test hooks compiled in)
# (it has no cargo, so no Wasmtime build) into OUT (default
# .carry/pack/spbin.tar.xz), flat, stripped: samepage, samepage-worker, the
# CUDA-side test binaries, the CPU kernel-table checks
# (scripts/device-cpu-check.sh) and their guests. Unpack it and point the device
# scripts' SP_BIN at it; libsamepage_cuda.so is compiled there with nvcc.
# --cpu packs only what scripts/device-cpu-check.sh needs (small enough to
# travel beside half of the default model).
set -euo pipefail
cpu_only=0; [[ "${1:-}" == --cpu ]] && { cpu_only=1; shift; }
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build-test}"; out="${2:-$root/.carry/pack/spbin.tar.xz}"
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/guests" "$(dirname "$out")"
if ((cpu_only)); then
  cp "$build/samepage" "$stage/"
  for t in test_cpu_kernels test_cpu_attention test_cpu_backend test_llm_greedy cpu_table; do cp "$build/tests/$t" "$stage/"; done
  cp "$build/guests/llm.wasm" "$stage/guests/"
else
  cp "$build/samepage" "$build/samepage-worker" "$build/synth_gguf" "$build/test_cuda_ops" "$build/test_cuda_batch" "$build/tests/backend_parity" "$stage/"
  for t in test_cuda_fault test_topk test_hostile test_isolation test_cpu_kernels test_cpu_attention test_cpu_read_once test_cpu_backend test_llm_greedy cpu_table; do
    cp "$build/tests/$t" "$stage/"
  done
  for g in llm test_hostile test_grow test_mapsum test_repeat_lists; do cp "$build/guests/$g.wasm" "$stage/guests/"; done
fi
# The server's libraries (libmicrohttpd, jansson) are not on the GPU machine:
# they travel beside the binaries, which the device scripts find through
# LD_LIBRARY_PATH=$SP_BIN.
for lib in $(ldd "$build/samepage" | awk '/libmicrohttpd|libjansson/ {print $3}'); do cp -L "$lib" "$stage/"; done
strip "$stage"/samepage "$stage"/test_* "$stage"/cpu_table
((cpu_only)) || strip "$stage"/samepage-worker "$stage"/synth_gguf "$stage"/backend_parity
tar cJf "$out" -C "$stage" .
ls -la "$out"
