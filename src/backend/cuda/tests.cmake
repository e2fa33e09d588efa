# CUDA parity test: runs every op on the CUDA backend and on the CPU
# backend over fresh random inputs. Without libsamepage_cuda.so or a device
# it exits 77, which ctest reports as skipped.
add_executable(test_cuda_ops ${CMAKE_SOURCE_DIR}/tests/test_cuda_ops.c)
target_link_libraries(test_cuda_ops PRIVATE samepage_core ${CMAKE_DL_LIBS} m)
target_include_directories(test_cuda_ops PRIVATE ${CMAKE_SOURCE_DIR}/src)
add_test(NAME test_cuda_ops COMMAND test_cuda_ops)
set_tests_properties(test_cuda_ops PROPERTIES SKIP_RETURN_CODE 77 LABELS gpu)
if(TARGET samepage_cuda)
  set_tests_properties(test_cuda_ops PROPERTIES ENVIRONMENT "SP_CUDA_LIB=$<TARGET_FILE:samepage_cuda>")
endif()

# CUDA batching (issue 18): K actors' lists batched equal their lone runs,
# for every weight type (docs/BATCHING.md). Skipped (77) like test_cuda_ops.
add_executable(test_cuda_batch ${CMAKE_SOURCE_DIR}/tests/test_cuda_batch.c)
target_link_libraries(test_cuda_batch PRIVATE samepage_core ${CMAKE_DL_LIBS} m)
target_include_directories(test_cuda_batch PRIVATE ${CMAKE_SOURCE_DIR}/src ${CMAKE_SOURCE_DIR}/tests)
add_test(NAME test_cuda_batch COMMAND test_cuda_batch)
set_tests_properties(test_cuda_batch PROPERTIES SKIP_RETURN_CODE 77 LABELS gpu)
if(TARGET samepage_cuda)
  set_tests_properties(test_cuda_batch PROPERTIES ENVIRONMENT "SP_CUDA_LIB=$<TARGET_FILE:samepage_cuda>")
endif()
