/*
 * kernels_avx2_lowbit.h: the AVX2 dots of the low-bit issue-15 types
 * (Q2_K, Q3_K, IQ4_NL, IQ4_XS), defined in kernels_avx2_lowbit.c, for the
 * AVX2 table (and the AVX-512 table, which copies it) to point at.
 * Signatures are sp_dot_fn's (kernels.h); they exist on x86 builds only,
 * and must be called on a CPU with AVX2, FMA and F16C.
 */
#ifndef SP_CPU_KERNELS_AVX2_LOWBIT_H
#define SP_CPU_KERNELS_AVX2_LOWBIT_H

#include <stddef.h>
#include <stdint.h>

void sp_cpu_avx2_dot_q2_k(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out);
void sp_cpu_avx2_dot_q3_k(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out);
void sp_cpu_avx2_dot_iq4_nl(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out);
void sp_cpu_avx2_dot_iq4_xs(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out);

#endif
