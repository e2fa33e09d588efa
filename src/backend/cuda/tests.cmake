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
