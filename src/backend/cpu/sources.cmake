# Sources of the CPU backend (owned by src/backend/cpu/).
set(SP_CPU_BACKEND_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/cpu_backend.c)
