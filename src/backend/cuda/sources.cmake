# The CUDA backend's sources, read from sources.list (the list
# scripts/build-cuda-lib.sh reads too, so the two builds cannot drift).
file(STRINGS ${CMAKE_CURRENT_LIST_DIR}/sources.list sp_cuda_list REGEX "^[^#]")
set(SP_CUDA_BACKEND_SOURCES)
foreach(f IN LISTS sp_cuda_list)
  string(STRIP "${f}" f)
  list(APPEND SP_CUDA_BACKEND_SOURCES ${CMAKE_SOURCE_DIR}/${f})
endforeach()
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/sources.list)
