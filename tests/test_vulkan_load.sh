#!/usr/bin/env bash
# test_vulkan_load.sh SAMEPAGE FAKE_VULKAN GUEST: how `--backend vulkan`
# finds and loads libsamepage_vulkan.so, on any machine (FAKE_VULKAN,
# tests/fake_vulkan.c, is a library whose constructor says "no device"):
#  - SP_VULKAN_LIB names the library; a missing one is a clear error
#    naming the path, never a fall-back to another copy or to the CPU;
#  - the library's own error reaches the user, in-process and from a
#    worker process (--isolation process: the worker loads it by name with
#    the host's knobs);
#  - "auto" never picks Vulkan (it means CUDA, else the CPU);
#  - an unknown backend's error lists vulkan among the names.
set -u
bin="$1"; fake="$2"; guest="$3"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
check() { if eval "$2"; then pass=$((pass + 1)); echo "ok   $1"; else fail=$((fail + 1)); echo "FAIL $1"; sed 's/^/     /' "$tmp/err"; fi; }
product="0 errors out of 1024"

SP_VULKAN_LIB="$tmp/missing.so" "$bin" exec --backend vulkan "$guest" 32 > "$tmp/out" 2> "$tmp/err"; rc=$?
check "missing library: exit 125, the path named (exit $rc)" \
  '[[ $rc -eq 125 ]] && grep -q "vulkan backend: cannot load $tmp/missing.so" "$tmp/err"'
for iso in none process; do
  SP_VULKAN_LIB="$fake" "$bin" exec --backend vulkan --isolation "$iso" "$guest" 32 > "$tmp/out" 2> "$tmp/err"; rc=$?
  check "isolation $iso: the library's own error (exit $rc)" \
    '[[ $rc -eq 125 ]] && grep -q "no Vulkan device (fake library)" "$tmp/err" && ! grep -q "$product" "$tmp/out"'
done
SP_VULKAN_LIB="$fake" SP_CUDA_LIB="$tmp/no-cuda.so" "$bin" exec --backend auto "$guest" 32 > "$tmp/out" 2> "$tmp/err"; rc=$?
check "auto: the CPU, Vulkan never tried (exit $rc)" \
  '[[ $rc -eq 0 ]] && grep -q "$product" "$tmp/out" && ! grep -qi vulkan "$tmp/err"'
"$bin" exec --backend metal "$guest" 32 > "$tmp/out" 2> "$tmp/err"; rc=$?
check "unknown backend: vulkan among the names (exit $rc)" \
  '[[ $rc -ne 0 ]] && grep -q "expected cpu, cuda, vulkan or auto" "$tmp/err"'
echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
