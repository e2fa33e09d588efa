#!/usr/bin/env bash
# fetch-llama-vocab.sh [--no-download]
#
# Prints the folder holding llama.cpp's vocab-only test files
# (models/ggml-vocab-*.gguf with their .inp texts and .out expected ids),
# which tests/test_tok_vocab.c checks the guest tokenizer against. They come
# from the llama-cpp-python 0.3.36 source distribution on PyPI (it vendors
# llama.cpp), unpacked once into ~/.cache/samepage/llama.cpp-0.3.36; nothing
# is committed. With --no-download it only looks, and exits 1 when the files
# are not there yet (tests use this, so they never reach the network).
set -euo pipefail
version=0.3.36
cache="${SP_CACHE_DIR:-$HOME/.cache/samepage}/llama.cpp-$version"
src="$cache/llama_cpp_python-$version"
models="$src/vendor/llama.cpp/models"

if [[ -f "$models/ggml-vocab-llama-spm.gguf.out" ]]; then
  echo "$models"
  exit 0
fi
if [[ "${1:-}" == "--no-download" ]]; then
  echo "fetch-llama-vocab: $models is missing (run scripts/fetch-llama-vocab.sh)" >&2
  exit 1
fi
command -v pip >/dev/null || { echo "fetch-llama-vocab: pip is needed" >&2; exit 1; }
mkdir -p "$cache"
echo "fetch-llama-vocab: downloading the llama-cpp-python==$version sdist from PyPI" >&2
pip download --no-deps --no-binary :all: --dest "$cache" "llama-cpp-python==$version" >&2
tarball="$cache/llama_cpp_python-$version.tar.gz"
[[ -f "$tarball" ]] || { echo "fetch-llama-vocab: $tarball was not downloaded" >&2; exit 1; }
tar -xzf "$tarball" -C "$cache" "llama_cpp_python-$version/vendor/llama.cpp/models" \
  "llama_cpp_python-$version/vendor/llama.cpp/LICENSE" 2>/dev/null ||
  tar -xzf "$tarball" -C "$cache"
[[ -f "$models/ggml-vocab-llama-spm.gguf.out" ]] ||
  { echo "fetch-llama-vocab: $models has no vocab test files" >&2; exit 1; }
echo "$models"
