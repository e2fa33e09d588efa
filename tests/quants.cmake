# Tests of the quant types (issue 15): dequantization against PyPI gguf, dot products, every kernel table.
# Included by tests/CMakeLists.txt before the labels are assigned.

# Every kernel table against generic is tests/test_cpu_kernels.c (the new
# types are in its dtype list).

# get_rows' decoder against PyPI gguf's dequantizer, bit for bit.
add_executable(test_quant_dequant test_quant_dequant.c)
target_link_libraries(test_quant_dequant PRIVATE samepage_core)
target_include_directories(test_quant_dequant PRIVATE ${CMAKE_SOURCE_DIR}/src)
add_test(NAME test_quant_ref COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/test_quant_ref.sh
         $<TARGET_FILE:test_quant_dequant> ${CMAKE_CURRENT_BINARY_DIR}/quant_ref)
set_tests_properties(test_quant_ref PROPERTIES LABELS unit SKIP_RETURN_CODE 77)

# The quantized dots against f32 dots of the dequantized rows, within the
# activation-quantization bound derived in the test's header.
add_executable(test_quant_dot test_quant_dot.c)
target_link_libraries(test_quant_dot PRIVATE samepage_core)
target_include_directories(test_quant_dot PRIVATE ${CMAKE_SOURCE_DIR}/src)
add_test(NAME test_quant_dot COMMAND test_quant_dot)
set_tests_properties(test_quant_dot PROPERTIES LABELS unit)
