# install.cmake: what `cmake --install BUILD --prefix P` puts in place, for
# users of the CLI and for programs that embed the runtime (include/samepage.h).
#
#  P/bin/                 samepage, samepage-worker (beside it, as process
#                         isolation needs), synth_gguf
#  P/lib/                 libsamepage.a, libsamepage_core.a and the Wasmtime
#                         C API they call, libsamepage_wasmtime.a (static,
#                         for linking into executables; link all three)
#  P/lib/samepage/        libsamepage_cuda.so and libsamepage_vulkan.so,
#                         where they were built (loaded at run time:
#                         src/backend/backend_load.c)
#  P/include/             samepage.h, samepage_abi.h, and the guest SDK
#                         samepage_guest.h (guests build with -IP/include)
#  P/share/samepage/      guests/llm.wasm (also embedded in the samepage
#                         binary), guests/example_matmul.wasm, examples/matmul.c
#  P/lib/pkgconfig/       samepage.pc (relocatable: paths from ${pcfiledir})
#  P/lib/cmake/samepage/  find_package(samepage): samepage::samepage
#
# lib is CMAKE_INSTALL_LIBDIR (GNUInstallDirs), so lib64 or a multiarch
# directory where the platform wants one.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(SP_VERSION 0.1.0)
set(SP_INSTALL_BACKEND_DIR ${CMAKE_INSTALL_LIBDIR}/samepage)
set(SP_INSTALL_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/samepage)
set(SP_INSTALL_GUEST_DIR ${CMAKE_INSTALL_DATADIR}/samepage/guests)

# ---- where an installed program finds the CUDA and Vulkan backends ----
# Relative to the executable (bindir -> backend dir), so an installed tree
# works under any --prefix and after a move; and the configured prefix's
# backend dir, for embedders whose executables live elsewhere. Only
# backend_load.c sees these.
file(RELATIVE_PATH SP_BACKEND_INSTALL_REL ${CMAKE_INSTALL_FULL_BINDIR}
     ${CMAKE_INSTALL_FULL_LIBDIR}/samepage)
set_property(SOURCE ${CMAKE_SOURCE_DIR}/src/backend/worker/worker_proxy.c APPEND PROPERTY COMPILE_DEFINITIONS
  SP_WORKER_INSTALL_PATH="${CMAKE_INSTALL_FULL_BINDIR}/samepage-worker")
set_property(SOURCE ${CMAKE_SOURCE_DIR}/src/backend/backend_load.c APPEND PROPERTY COMPILE_DEFINITIONS
  SP_BACKEND_INSTALL_REL="${SP_BACKEND_INSTALL_REL}"
  SP_BACKEND_INSTALL_DIR="${CMAKE_INSTALL_FULL_LIBDIR}/samepage")

# ---- programs, libraries, headers, guests ----
install(TARGETS samepage_cli samepage_worker synth_gguf RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS samepage samepage_core ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${SP_WASMTIME_DIR}/lib/libsamepage_wasmtime.a DESTINATION ${CMAKE_INSTALL_LIBDIR})
if(TARGET samepage_cuda)
  install(TARGETS samepage_cuda LIBRARY DESTINATION ${SP_INSTALL_BACKEND_DIR})
endif()
if(TARGET samepage_vulkan)
  install(TARGETS samepage_vulkan LIBRARY DESTINATION ${SP_INSTALL_BACKEND_DIR})
endif()
install(FILES ${CMAKE_SOURCE_DIR}/include/samepage.h ${CMAKE_SOURCE_DIR}/include/samepage_abi.h
              ${CMAKE_SOURCE_DIR}/guest/include/samepage_guest.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${SP_GUEST_DIR}/llm.wasm ${SP_GUEST_DIR}/example_matmul.wasm DESTINATION ${SP_INSTALL_GUEST_DIR})
install(FILES ${CMAKE_SOURCE_DIR}/guest/examples/matmul.c DESTINATION ${CMAKE_INSTALL_DATADIR}/samepage/examples)

# ---- pkg-config and CMake package ----
# A sanitizer build's archives need the sanitizer runtimes at link time.
set(SP_INSTALL_LINK_OPTIONS "")
if(SP_SANITIZE)
  set(SP_INSTALL_LINK_OPTIONS -fsanitize=address,undefined)
endif()
list(JOIN SP_INSTALL_LINK_OPTIONS " " SP_PC_LINK_OPTIONS)
file(RELATIVE_PATH SP_PC_PREFIX_REL ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig ${CMAKE_INSTALL_PREFIX})
string(REGEX REPLACE "/$" "" SP_PC_PREFIX_REL "${SP_PC_PREFIX_REL}")
configure_file(${CMAKE_SOURCE_DIR}/cmake/samepage.pc.in ${CMAKE_BINARY_DIR}/samepage.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/samepage.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/samepageConfig.cmake.in
  ${CMAKE_BINARY_DIR}/samepageConfig.cmake
  INSTALL_DESTINATION ${SP_INSTALL_CMAKE_DIR}
  PATH_VARS CMAKE_INSTALL_LIBDIR CMAKE_INSTALL_INCLUDEDIR SP_INSTALL_BACKEND_DIR SP_INSTALL_GUEST_DIR)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/samepageConfigVersion.cmake
  VERSION ${SP_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/samepageConfig.cmake ${CMAKE_BINARY_DIR}/samepageConfigVersion.cmake
        DESTINATION ${SP_INSTALL_CMAKE_DIR})
