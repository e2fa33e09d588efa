#!/usr/bin/env bash
# with_backend.sh BACKEND_PROBE NAME CMD...: runs CMD where backend NAME can
# be created, else exits 77 (skip). For the device backends that CI may
# lack (Vulkan without a loader or a device, CUDA without a GPU): the test
# itself then fails loudly on any error, since it only runs where the
# backend is there.
#  - BACKEND_PROBE (tests/backend_probe.c) creates NAME with the knobs of
#    the environment (SP_VULKAN_LIB, SP_VULKAN_DEVICE, ...), as CMD will;
#  - SP_TEST_BACKEND=NAME is exported for tests that read it (test_hostile).
set -u
probe="$1"; name="$2"; shift 2
"$probe" "$name"; rc=$?
[[ $rc -eq 0 ]] || exit "$rc"
export SP_TEST_BACKEND="$name"
exec "$@"
