#!/usr/bin/env bash
# test_layering.sh SRC_DIR: the folders are layers (issue 14), each seeing
# only those below it:
#   src/core/     sees nothing above it (no backend, runtime or snapshot header);
#   src/backend/  sees core only: validated commands and memory views, never
#                 the runtime, the actor, the ABI imports, snapshots or Wasmtime;
#   src/runtime/, src/snapshot/ and src/cli/ sit on top.
# Headers are included by their folder ("core/dtype.h"), so a folder's
# name in an include line is its layer.
set -u
src="$1"
fail=0
exts=(--include='*.c' --include='*.h' --include='*.cu' --include='*.cuh')
check() { # check DIR FORBIDDEN-REGEX WHAT
  local bad
  bad="$(grep -rnE "#include [<\"]($2)" "$src/$1" "${exts[@]}" || true)"
  local files
  files=$(find "$src/$1" -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' | wc -l)
  if [[ -n "$bad" ]]; then
    echo "FAIL: src/$1 includes $3:"; echo "$bad"; fail=1
  else
    echo "ok   $files files under src/$1 include no $3"
  fi
}
check core 'backend/|runtime/|snapshot/|cli/|wasmtime|wasm\.h' "backend, runtime, snapshot, CLI or Wasmtime header"
check backend 'runtime/|snapshot/|cli/|wasmtime|wasm\.h' "runtime, actor, ABI, snapshot, CLI or Wasmtime header"
# every header of src/ is included by its folder: a bare "dtype.h" would
# hide which layer it comes from (the public headers of include/ excepted)
bare="$(grep -rnE '#include "[a-z0-9_]+\.(h|cuh)"' "$src" "${exts[@]}" | grep -vE '"samepage(_abi|_llm)?\.h"' || true)"
if [[ -n "$bare" ]]; then
  echo "FAIL: includes without their folder:"; echo "$bare"; fail=1
else
  echo "ok   every include of a src/ header names its folder"
fi
# each folder's opening comment says what it holds
for d in core runtime snapshot backend backend/cpu backend/cuda backend/worker cli; do
  if [[ ! -s "$src/$d/README.md" ]]; then echo "FAIL: src/$d has no README.md saying what it holds"; fail=1; fi
done
[[ $fail == 0 ]] && echo "ok   every folder says what it holds"
exit $fail
