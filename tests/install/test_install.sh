#!/usr/bin/env bash
# test_install.sh BUILD WORK CC GENERATOR MAKE_PROGRAM FAKE_CUDA_LIB FAKE_VULKAN_LIB
# `cmake --install BUILD` into a fresh prefix under WORK, then, as a user who
# has only that tree:
#  1. the layout: programs, static libraries, headers, guests, samepage.pc
#     and the CMake package are where cmake/install.cmake says;
#  2. the installed samepage runs a guest, in process and with its installed
#     worker (process isolation);
#  3. it finds a CUDA backend library in the install tree's backend dir
#     (FAKE_CUDA_LIB, which fails by name), without $SP_CUDA_LIB, and so does
#     its worker; the same for the Vulkan library (FAKE_VULKAN_LIB);
#  4. embed.c, built with CC and pkg-config, and as a CMake project with
#     find_package(samepage) (GENERATOR, MAKE_PROGRAM), creates a CPU runtime
#     and runs a guest, in process and in the installed worker.
# Exits 77 (skipped) when pkg-config is missing, after the rest has passed.
# WORK is removed when everything passed, kept for a look otherwise.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build=$1 work=$2 cc=$3 gen=$4 make=$5 fake_cuda=$6 fake_vulkan=$7
prefix="$work/prefix"
unset SP_CUDA_LIB SP_WORKER_EXE SP_ISOLATION
rm -rf "$work" && mkdir -p "$work" || exit 1

fail() { echo "FAIL: $*"; exit 1; }
# expect NAME PATTERN CMD...: CMD exits 0 and its output matches PATTERN.
expect() {
  local name=$1 pattern=$2 out rc; shift 2
  out=$("$@" 2>&1); rc=$?
  [ $rc -eq 0 ] || { echo "$out"; fail "$name: exit $rc"; }
  grep -q -- "$pattern" <<< "$out" || { echo "$out"; fail "$name: no \"$pattern\" in the output"; }
  echo "ok: $name"
}

# ---- 1. the layout ----
cmake --install "$build" --prefix "$prefix" > "$work/install.log" 2>&1 || { cat "$work/install.log"; fail "cmake --install"; }
pc=$(find "$prefix" -name samepage.pc -path '*/pkgconfig/*' | head -n 1)
[ -n "$pc" ] || fail "no samepage.pc under $prefix"
libdir=${pc%/pkgconfig/samepage.pc}; libdir=${libdir#"$prefix"/}
for f in bin/samepage bin/samepage-worker bin/synth_gguf \
         "$libdir"/libsamepage.a "$libdir"/libsamepage_core.a "$libdir"/libsamepage_wasmtime.a \
         "$libdir"/cmake/samepage/samepageConfig.cmake "$libdir"/cmake/samepage/samepageConfigVersion.cmake \
         include/samepage.h include/samepage_abi.h include/samepage_guest.h \
         share/samepage/guests/llm.wasm share/samepage/guests/example_matmul.wasm share/samepage/examples/matmul.c; do
  [ -e "$prefix/$f" ] || fail "cmake --install put no $f"
done
# The device backends, where this build has them (LIBRARY_OUTPUT_DIRECTORY is the build dir).
for lib in libsamepage_cuda.so libsamepage_vulkan.so; do
  if [ -e "$build/$lib" ]; then
    [ -e "$prefix/$libdir/samepage/$lib" ] || fail "cmake --install put no $libdir/samepage/$lib"
  fi
done
echo "ok: layout ($(grep -c "Installing:" "$work/install.log") files, libdir $libdir)"
guest="$prefix/share/samepage/guests/example_matmul.wasm"
product="0 errors out of 1024"

# ---- 2. the installed CLI and its worker ----
expect "installed samepage exec" "$product" "$prefix/bin/samepage" exec --backend cpu "$guest" 32
expect "installed samepage exec, process isolation" "$product" \
  env SP_ISOLATION=process "$prefix/bin/samepage" exec --backend cpu "$guest" 32

# ---- 3. the CUDA library from the install tree's backend dir ----
backends="$prefix/$libdir/samepage"
mkdir -p "$backends" && cp "$fake_cuda" "$backends/libsamepage_cuda.so" || fail "copying the fake CUDA library"
for iso in none process; do
  out=$(SP_ISOLATION=$iso "$prefix/bin/samepage" exec --backend cuda "$guest" 32 2>&1)
  grep -q "fake library" <<< "$out" || { echo "$out"; fail "isolation $iso: the CUDA library in $backends was not loaded"; }
  echo "ok: isolation $iso: the CUDA library found in $libdir/samepage"
done
rm -f "$backends/libsamepage_cuda.so"
# The Vulkan library the same way; a real one that cmake --install put there
# is set aside meanwhile, so that the fake one is the one found.
[ -e "$backends/libsamepage_vulkan.so" ] && mv "$backends/libsamepage_vulkan.so" "$work/libsamepage_vulkan.so.real"
cp "$fake_vulkan" "$backends/libsamepage_vulkan.so" || fail "copying the fake Vulkan library"
for iso in none process; do
  out=$(SP_ISOLATION=$iso "$prefix/bin/samepage" exec --backend vulkan "$guest" 32 2>&1)
  grep -q "fake library" <<< "$out" || { echo "$out"; fail "isolation $iso: the Vulkan library in $backends was not loaded"; }
  echo "ok: isolation $iso: the Vulkan library found in $libdir/samepage"
done
rm -f "$backends/libsamepage_vulkan.so"
[ -e "$work/libsamepage_vulkan.so.real" ] && mv "$work/libsamepage_vulkan.so.real" "$backends/libsamepage_vulkan.so"

# ---- 4. embed.c against the installed tree ----
run_embed() { # run_embed HOW BINARY
  expect "$1: runtime" "embed: backend cpu, isolation none" "$2"
  expect "$1: guest" "$product" "$2" none "$guest" 32
  expect "$1: guest in the installed worker" "isolation process" \
    env SP_WORKER_EXE="$prefix/bin/samepage-worker" "$2" process "$guest" 32
}

# With pkg-config: what `cc $(pkg-config --cflags --libs samepage)` gives.
have_pkg_config=0
if command -v pkg-config > /dev/null; then
  have_pkg_config=1
  flags=$(PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig" pkg-config --cflags --libs samepage) || fail "pkg-config samepage"
  case "$flags" in *"$prefix"*) ;; *) fail "pkg-config points outside $prefix: $flags" ;; esac
  # shellcheck disable=SC2086 # flags are words
  "$cc" -std=c11 -Wall -Wextra -Werror -o "$work/embed_pc" "$here/embed.c" $flags || fail "building embed.c with pkg-config ($flags)"
  run_embed "pkg-config" "$work/embed_pc"
else
  echo "pkg-config is missing: that half is skipped"
fi

# With CMake: tests/install/CMakeLists.txt, find_package(samepage).
cmake -S "$here" -B "$work/cmake" -G "$gen" -DCMAKE_MAKE_PROGRAM="$make" -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
  > "$work/cmake.log" 2>&1 || { cat "$work/cmake.log"; fail "configuring the find_package(samepage) project"; }
grep -q "samepage found in $prefix/" "$work/cmake.log" || { cat "$work/cmake.log"; fail "find_package found samepage outside $prefix"; }
cmake --build "$work/cmake" > "$work/cmake-build.log" 2>&1 || { cat "$work/cmake-build.log"; fail "building the find_package(samepage) project"; }
run_embed "find_package" "$work/cmake/embed"

rm -rf "$work"
[ $have_pkg_config -eq 1 ] || exit 77
echo "PASS"
