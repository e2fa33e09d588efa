# Tests of the ops of issue 15: GEGLU, SOFTCAP, attention's sliding window.
# Included by tests/CMakeLists.txt before the labels are assigned.
# GEGLU, SOFTCAP and the window: rules, CPU results against double
# references on three backends, the window's meaning (test_ops15.c);
# the window's tiling is also in test_cpu_attention.
add_executable(test_ops15 test_ops15.c)
target_link_libraries(test_ops15 PRIVATE samepage_core)
target_include_directories(test_ops15 PRIVATE ${CMAKE_SOURCE_DIR}/src)
add_test(NAME test_ops15 COMMAND test_ops15)
set_tests_properties(test_ops15 PROPERTIES LABELS unit TIMEOUT 120)
