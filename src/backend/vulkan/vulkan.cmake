# ---- libsamepage_vulkan.so: the Vulkan backend, loaded at run time ----
# Built only where the Vulkan headers and loader and glslc are found; the
# main binary never links it (backend_load.c opens it with dlopen). Nothing
# here assumes Linux beyond what CMake's FindVulkan does (docs/APPLE.md).
find_package(Vulkan QUIET)
find_program(SP_GLSLC glslc HINTS $ENV{VULKAN_SDK}/bin)
if(Vulkan_FOUND AND SP_GLSLC)
  set(sp_vk_dir ${CMAKE_CURRENT_LIST_DIR})
  set(sp_vk_gen ${CMAKE_BINARY_DIR}/vulkan_shaders)
  file(MAKE_DIRECTORY ${sp_vk_gen})
  # One compute shader per op family, compiled to SPIR-V by glslc and
  # embedded as a C array (embed_spv.cmake) into <name>.spv.h.
  # Every shader twice: <name> with 64-bit floats (the CPU's fused
  # multiply-adds, exp, sin and cos computed in double: its bits) and
  # <name>_nof64 without (SP_NO_FLOAT64: the device's own, within the
  # test's tolerances), for devices without them (MoltenVK).
  set(sp_vk_shaders elementwise rows argmax topk rope get_rows set_rows check matmul attention quantize)
  set(sp_vk_headers)
  foreach(s IN LISTS sp_vk_shaders)
    foreach(variant IN ITEMS "" "_nof64")
      set(src ${sp_vk_dir}/shaders/${s}.comp)
      set(spv ${sp_vk_gen}/${s}${variant}.spv)
      set(hdr ${sp_vk_gen}/${s}${variant}.spv.h)
      set(defines)
      if(variant)
        set(defines -DSP_NO_FLOAT64)
      endif()
      add_custom_command(OUTPUT ${hdr}
        COMMAND ${SP_GLSLC} --target-env=vulkan1.2 -O ${defines} -I ${sp_vk_dir}/shaders -o ${spv} ${src}
        COMMAND ${CMAKE_COMMAND} -DSPV=${spv} -DOUT=${hdr} -DNAME=sp_vk_spv_${s}${variant} -P ${sp_vk_dir}/embed_spv.cmake
        DEPENDS ${src} ${sp_vk_dir}/shaders/common.glsl ${sp_vk_dir}/shaders/quant.glsl ${sp_vk_dir}/embed_spv.cmake
        COMMENT "glslc ${s}${variant}"
        VERBATIM)
      list(APPEND sp_vk_headers ${hdr})
    endforeach()
  endforeach()
  add_library(samepage_vulkan SHARED
    ${sp_vk_dir}/vk_backend.c
    ${sp_vk_dir}/vk_import.c
    ${sp_vk_dir}/vk_pipelines.c
    ${sp_vk_dir}/vk_submit.c
    ${sp_vk_dir}/vk_residency.c
    ${sp_vk_dir}/vk_rules.c
    ${CMAKE_SOURCE_DIR}/src/core/error.c
    ${CMAKE_SOURCE_DIR}/src/core/dtype.c
    ${CMAKE_SOURCE_DIR}/src/core/op_rules.c
    ${CMAKE_SOURCE_DIR}/src/core/memory_budget.c
    ${sp_vk_headers})
  target_include_directories(samepage_vulkan PRIVATE ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src ${sp_vk_gen})
  target_link_libraries(samepage_vulkan PRIVATE Vulkan::Vulkan Threads::Threads m)
  set_target_properties(samepage_vulkan PROPERTIES C_VISIBILITY_PRESET hidden
                        LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
  message(STATUS "Vulkan backend: building libsamepage_vulkan.so (glslc ${SP_GLSLC})")
else()
  message(STATUS "Vulkan backend: not built (Vulkan found: ${Vulkan_FOUND}, glslc: ${SP_GLSLC})")
endif()

# Vulkan parity test: every op on the Vulkan backend against the CPU
# backend. Without libsamepage_vulkan.so or a Vulkan device it exits 77,
# which ctest reports as skipped. It runs on lavapipe (Mesa's CPU driver).
add_executable(test_vulkan_ops ${CMAKE_SOURCE_DIR}/tests/test_vulkan_ops.c)
target_link_libraries(test_vulkan_ops PRIVATE samepage_core ${CMAKE_DL_LIBS} m)
target_include_directories(test_vulkan_ops PRIVATE ${CMAKE_SOURCE_DIR}/src)
add_test(NAME test_vulkan_ops COMMAND test_vulkan_ops)
set_tests_properties(test_vulkan_ops PROPERTIES SKIP_RETURN_CODE 77 LABELS vulkan TIMEOUT 300)
if(TARGET samepage_vulkan)
  target_compile_definitions(test_vulkan_ops PRIVATE SP_VULKAN_BUILD_LIB="$<TARGET_FILE:samepage_vulkan>")
  add_dependencies(test_vulkan_ops samepage_vulkan)
endif()

# test_vulkan_local: device-local ranges (mirrors: device_local, sync,
# local_zero, flush) through the test hook sp_backend_vulkan_test_residency,
# which lavapipe needs; exits 77 without the library or a device.
add_executable(test_vulkan_local ${CMAKE_SOURCE_DIR}/tests/test_vulkan_local.c)
target_link_libraries(test_vulkan_local PRIVATE samepage_core ${CMAKE_DL_LIBS})
target_include_directories(test_vulkan_local PRIVATE ${CMAKE_SOURCE_DIR}/src)
add_test(NAME test_vulkan_local COMMAND test_vulkan_local)
set_tests_properties(test_vulkan_local PROPERTIES SKIP_RETURN_CODE 77 LABELS vulkan TIMEOUT 120)
if(TARGET samepage_vulkan)
  target_compile_definitions(test_vulkan_local PRIVATE SP_VULKAN_BUILD_LIB="$<TARGET_FILE:samepage_vulkan>")
  add_dependencies(test_vulkan_local samepage_vulkan)
endif()
