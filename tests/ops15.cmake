# Tests of the ops of issues 15 and 17: GEGLU, SOFTCAP, the sliding window, TOPK.
# Included by tests/CMakeLists.txt before the labels are assigned.
# GEGLU, SOFTCAP and the window: rules, CPU results against double
# references on three backends, the window's meaning (test_ops15.c);
# the window's tiling is also in test_cpu_attention.
add_executable(test_ops15 test_ops15.c)
target_link_libraries(test_ops15 PRIVATE samepage_core)
target_include_directories(test_ops15 PRIVATE ${CMAKE_SOURCE_DIR}/src)
add_test(NAME test_ops15 COMMAND test_ops15)
set_tests_properties(test_ops15 PROPERTIES LABELS unit TIMEOUT 120)

# SP_OP_TOPK (issue 17's sampler candidates): rules, and every index
# against a sorted reference on the CPU tables and, where present, CUDA.
add_executable(test_topk test_topk.c)
target_link_libraries(test_topk PRIVATE samepage_core ${CMAKE_DL_LIBS} m)
target_include_directories(test_topk PRIVATE ${CMAKE_SOURCE_DIR}/src)
add_test(NAME test_topk COMMAND test_topk)
set_tests_properties(test_topk PROPERTIES LABELS unit TIMEOUT 300)
if(TARGET samepage_cuda)
  set_tests_properties(test_topk PROPERTIES ENVIRONMENT "SP_CUDA_LIB=$<TARGET_FILE:samepage_cuda>")
endif()
