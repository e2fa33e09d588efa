/*
 * cpu_backend.h: extras of the CPU backend beyond the core interface
 * (struct sp_backend_i, backend.h).
 *
 * The backend itself is created with sp_backend_cpu_new (backend.h).
 */
#ifndef SP_CPU_BACKEND_H
#define SP_CPU_BACKEND_H

#include "backend/backend.h"

/* Name of the kernel set a CPU backend runs ("avx2", "generic", ...), or
 * NULL when `be` is not a CPU backend. Borrowed, static. */
const char *sp_backend_cpu_simd(const sp_backend *be);

/* Threads a CPU backend computes with (the submitting thread included), or
 * 0 when `be` is not a CPU backend. */
unsigned sp_backend_cpu_threads(const sp_backend *be);

#endif
