# The CUDA backend's sources: one .cu per op family plus the backend itself,
# and its plain-C parts (also linked by CPU tests).
set(SP_CUDA_BACKEND_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/cuda_backend.cu
  ${CMAKE_CURRENT_LIST_DIR}/resident_device.cu
  ${CMAKE_CURRENT_LIST_DIR}/resident_cache.c
  ${CMAKE_CURRENT_LIST_DIR}/pin_plan.c
  ${CMAKE_CURRENT_LIST_DIR}/cuda_rules.c
  ${CMAKE_CURRENT_LIST_DIR}/matmul.cu
  ${CMAKE_CURRENT_LIST_DIR}/elementwise.cu
  ${CMAKE_CURRENT_LIST_DIR}/llm_ops.cu
  ${CMAKE_CURRENT_LIST_DIR}/attention.cu
  ${CMAKE_CURRENT_LIST_DIR}/attention_prefill.cu
  ${CMAKE_CURRENT_LIST_DIR}/fuse.cu
  ${CMAKE_CURRENT_LIST_DIR}/repack.cu
  ${CMAKE_CURRENT_LIST_DIR}/fault.cu
  ${CMAKE_CURRENT_LIST_DIR}/gemm.cu)
