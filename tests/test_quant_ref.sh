#!/usr/bin/env bash
# test_quant_ref.sh CHECKER OUT_DIR: PyPI gguf dequantizes random blocks of
# every issue-15 quant type (test_quant_ref.py) and CHECKER
# (test_quant_dequant) holds the CPU decoder to those bits. Skipped (77)
# without numpy and gguf (scripts/test installs them).
set -u
here="$(cd "$(dirname "$0")" && pwd)"
checker="$1"; out="$2"
command -v python3 >/dev/null || { echo "SKIP: needs python3"; exit 77; }
mkdir -p "$out"
python3 "$here/test_quant_ref.py" "$out/quant_ref.bin"; rc=$?
[[ $rc -eq 0 ]] || exit $rc
exec "$checker" "$out/quant_ref.bin"
