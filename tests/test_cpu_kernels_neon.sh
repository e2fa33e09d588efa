#!/usr/bin/env bash
# test_cpu_kernels_neon.sh SRC_DIR OUT_DIR: the NEON kernel table against
# generic, bit for bit, on an x86 machine: test_cpu_kernels cross-compiled
# for arm64 (baseline ARMv8.0, and ARMv8.2 with SDOT) and run under
# qemu-user. Skipped (77) without aarch64-linux-gnu-gcc or qemu-aarch64
# (scripts/test installs both from Debian).
set -u
src="$1"; out="$2"
cc=aarch64-linux-gnu-gcc; qemu=qemu-aarch64
command -v $cc >/dev/null && command -v $qemu >/dev/null || { echo "SKIP: needs $cc and $qemu"; exit 77; }
mkdir -p "$out"
sources=("$src"/tests/test_cpu_kernels.c "$src"/src/core/dtype.c)
for f in kernels_generic kernels_neon kernels_avx2 kernels_avx512 kernels_select; do
  sources+=("$src/src/backend/cpu/$f.c")
done
fail=0
for arch in armv8-a armv8.2-a+dotprod; do
  bin="$out/test_cpu_kernels_${arch//[^a-z0-9]/_}"
  $cc -std=gnu11 -O2 -march=$arch -ffp-contract=off -Wall -Wextra -Werror -Wno-unused-parameter \
    -I"$src/include" -I"$src/src" "${sources[@]}" -static -lm -lpthread -o "$bin" || { fail=1; continue; }
  echo "== $arch"
  $qemu "$bin" | grep -v '^ok ' ; rc=${PIPESTATUS[0]}
  [[ $rc -eq 0 ]] || { echo "FAIL: $arch exit $rc"; fail=1; }
done
exit $fail
