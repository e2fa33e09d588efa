#!/usr/bin/env bash
# with_cpu_table.sh CPU_TABLE TABLE CMD...: runs CMD on the CPU backend's
# TABLE kernels ("generic", "avx2", "avx512"), so that the model-level tests
# run once per kernel table this machine has.
#  - CPU_TABLE (tests/cpu_table.c) says whether this CPU runs TABLE; where it
#    does not, exit 77 (skip): never a pass on a lower table.
#  - SP_CPU_SIMD=TABLE selects it (cpu_table checked that it does).
#  - SP_CUDA_LIB points nowhere, so "auto" falls back to the CPU backend on a
#    machine with a GPU too, instead of testing the GPU's kernels again.
set -u
tool="$1"; table="$2"; shift 2
"$tool" "$table"; rc=$?
[[ $rc -eq 0 ]] || exit "$rc"
export SP_CPU_SIMD="$table" SP_CUDA_LIB=/nonexistent/no-cuda-for-cpu-table-tests.so
exec "$@"
