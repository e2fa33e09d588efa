#!/usr/bin/env bash
# build-cuda-lib.sh LIB [PTXAS_LOG]: compiles libsamepage_cuda.so with nvcc
# on a GPU machine (the device scripts' shared step; a CMake build with
# CUDA found does the same). Every .cu of src/backend/cuda for sm_90, its
# plain-C parts and the two core files it needs with gcc, the CUDA runtime
# linked statically. The ptxas resource report (registers, spills) goes to
# PTXAS_LOG (default /dev/null). Exits non-zero naming the file that failed.
set -uo pipefail
lib=${1:?usage: build-cuda-lib.sh LIB [PTXAS_LOG]}; log=${2:-/dev/null}
root="$(cd "$(dirname "$0")/.." && pwd)"; cd "$root"
export PATH=/usr/local/cuda/bin:$PATH
tmp=$(mktemp -d); objs=()
for f in src/backend/cuda/*.cu; do
  o=$tmp/$(basename $f .cu).o
  nvcc -O3 -arch=sm_90 -std=c++17 -Xcompiler -fPIC,-fvisibility=hidden -Xptxas -v -Iinclude -Isrc -c $f -o $o \
    2>>"$log" || { echo "build-cuda-lib: nvcc failed on $f" >&2; exit 1; }
  objs+=($o)
done
for f in src/error.c src/dtype.c src/op_rules.c src/backend/cuda/*.c; do
  o=$tmp/$(basename $f .c)_c.o
  gcc -O2 -fPIC -fvisibility=hidden -Iinclude -Isrc -c $f -o $o || { echo "build-cuda-lib: gcc failed on $f" >&2; exit 1; }
  objs+=($o)
done
nvcc -shared -arch=sm_90 -cudart static -o "$lib" "${objs[@]}" -lpthread -ldl || { echo "build-cuda-lib: link failed" >&2; exit 1; }
rm -rf "$tmp"
