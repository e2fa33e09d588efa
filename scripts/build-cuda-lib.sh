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
tmp=$(mktemp -d); objs=(); max_jobs=${JOBS:-$(nproc)}
# One compiler per source, up to $jobs at once (nvcc is single-threaded:
# in parallel the library builds in the time of its slowest file).
compile() { # source object
  case "$1" in
  *.cu) nvcc -O3 -arch=sm_90 -std=c++17 -Xcompiler -fPIC,-fvisibility=hidden -Xptxas -v "${defs[@]}" -Iinclude -Isrc \
          -c "$1" -o "$2" 2>"$2.log" || { rm -f "$2"; cat "$2.log" >&2; echo "build-cuda-lib: nvcc failed on $1" >&2; return 1; } ;;
  *.c) gcc -O2 -fPIC -fvisibility=hidden "${defs[@]}" -Iinclude -Isrc -c "$1" -o "$2" \
         || { rm -f "$2"; echo "build-cuda-lib: gcc failed on $1" >&2; return 1; } ;;
  *) echo "build-cuda-lib: $1 in sources.list is neither .cu nor .c" >&2; return 1 ;;
  esac
}
while read -r f; do
  [[ -z "$f" || "$f" == \#* ]] && continue
  o=$tmp/$(echo "$f" | tr / _).o
  while (( $(jobs -rp | wc -l) >= max_jobs )); do wait -n || true; done
  compile "$f" "$o" &
  objs+=("$o")
done < src/backend/cuda/sources.list
wait
failed=0; for o in "${objs[@]}"; do [[ -s "$o" ]] || failed=1; done # a failed compile left no object
cat "$tmp"/*.log >>"$log" 2>/dev/null
((failed)) && exit 1
nvcc -shared -arch=sm_90 -cudart static -o "$lib" "${objs[@]}" -lpthread -ldl || { echo "build-cuda-lib: link failed" >&2; exit 1; }
rm -rf "$tmp"
