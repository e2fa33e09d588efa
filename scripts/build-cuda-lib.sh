#!/usr/bin/env bash
# build-cuda-lib.sh LIB [PTXAS_LOG]: compiles libsamepage_cuda.so with nvcc
# on a GPU machine (the device scripts' shared step; a CMake build with
# CUDA found does the same). The sources are src/backend/cuda/sources.list,
# the list CMake reads too: .cu files with nvcc for sm_90, .c files with gcc,
# the CUDA runtime linked statically. SP_TEST_HOOKS=1 compiles the test
# hooks in (src/core/knobs.h), as a test build must for the fault tests.
# The ptxas resource report (registers, spills) goes to PTXAS_LOG (default
# /dev/null). Exits non-zero naming the file that failed.
set -uo pipefail
lib=${1:?usage: build-cuda-lib.sh LIB [PTXAS_LOG]}; log=${2:-/dev/null}
root="$(cd "$(dirname "$0")/.." && pwd)"; cd "$root"
export PATH=/usr/local/cuda/bin:$PATH
defs=(); [[ "${SP_TEST_HOOKS:-0}" == 1 ]] && defs=(-DSP_TEST_HOOKS=1)
tmp=$(mktemp -d); objs=()
while read -r f; do
  [[ -z "$f" || "$f" == \#* ]] && continue
  o=$tmp/$(echo "$f" | tr / _).o
  case "$f" in
  *.cu) nvcc -O3 -arch=sm_90 -std=c++17 -Xcompiler -fPIC,-fvisibility=hidden -Xptxas -v "${defs[@]}" -Iinclude -Isrc \
          -c "$f" -o "$o" 2>>"$log" || { echo "build-cuda-lib: nvcc failed on $f" >&2; exit 1; } ;;
  *.c) gcc -O2 -fPIC -fvisibility=hidden "${defs[@]}" -Iinclude -Isrc -c "$f" -o "$o" \
         || { echo "build-cuda-lib: gcc failed on $f" >&2; exit 1; } ;;
  *) echo "build-cuda-lib: $f in sources.list is neither .cu nor .c" >&2; exit 1 ;;
  esac
  objs+=("$o")
done < src/backend/cuda/sources.list
nvcc -shared -arch=sm_90 -cudart static -o "$lib" "${objs[@]}" -lpthread -ldl || { echo "build-cuda-lib: link failed" >&2; exit 1; }
rm -rf "$tmp"
