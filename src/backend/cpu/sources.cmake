# Sources of the CPU backend (owned by src/backend/cpu/).
# x86 SIMD variants use per-function target attributes and ARM ones compile
# only on aarch64; the one flag every file gets is -ffp-contract=off (below).
set(SP_CPU_BACKEND_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/activations.c
  ${CMAKE_CURRENT_LIST_DIR}/attention.c
  ${CMAKE_CURRENT_LIST_DIR}/attention_simd.c
  ${CMAKE_CURRENT_LIST_DIR}/cpu_backend.c
  ${CMAKE_CURRENT_LIST_DIR}/cpu_exec.c
  ${CMAKE_CURRENT_LIST_DIR}/elementwise.c
  ${CMAKE_CURRENT_LIST_DIR}/fp16.c
  ${CMAKE_CURRENT_LIST_DIR}/kernels_avx2.c
  ${CMAKE_CURRENT_LIST_DIR}/kernels_avx2_tiles.c
  ${CMAKE_CURRENT_LIST_DIR}/kernels_avx2_lowbit.c
  ${CMAKE_CURRENT_LIST_DIR}/kernels_avx512.c
  ${CMAKE_CURRENT_LIST_DIR}/kernels_avx512_tiles.c
  ${CMAKE_CURRENT_LIST_DIR}/kernels_generic.c
  ${CMAKE_CURRENT_LIST_DIR}/kernels_neon.c
  ${CMAKE_CURRENT_LIST_DIR}/kernels_select.c
  ${CMAKE_CURRENT_LIST_DIR}/llm_ops.c
  ${CMAKE_CURRENT_LIST_DIR}/matmul.c
  ${CMAKE_CURRENT_LIST_DIR}/matmul_batch.c
  ${CMAKE_CURRENT_LIST_DIR}/cpu_batch.c
  ${CMAKE_CURRENT_LIST_DIR}/threadpool.c)
# Every kernel table must compute the same bits (kernels.h, "Numerics
# contract"): a multiply-add is fused only where the source says so
# (fmaf / an FMA intrinsic), never at the compiler's choice, which would
# differ between a function compiled for AVX2 and its generic twin.
set_source_files_properties(${SP_CPU_BACKEND_SOURCES} PROPERTIES COMPILE_OPTIONS -ffp-contract=off)
