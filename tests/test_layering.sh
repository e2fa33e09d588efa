#!/usr/bin/env bash
# test_layering.sh SRC_DIR: the backends sit below the runtime (issue 14).
# No file under src/backend/ may include a header of the runtime, the
# actor, the ABI imports, snapshots or the Wasmtime host: a backend sees
# validated commands and memory views, never the guest machinery above.
set -u
src="$1"
forbidden='runtime_impl\.h|actor[a-z_]*\.h|abi[a-z_]*\.h|snapshot[a-z_]*\.h|wasm_host\.h|wasi_poll\.h|blob\.h|annotations\.h|module_limits\.h|wasmtime\.h'
bad="$(grep -rnE "#include [<\"]($forbidden)[>\"]" "$src/backend" --include='*.c' --include='*.h' --include='*.cu' --include='*.cuh' || true)"
files=$(find "$src/backend" -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' | wc -l)
if [[ -n "$bad" ]]; then
  echo "FAIL: backend files include runtime-level headers:"; echo "$bad"; exit 1
fi
echo "ok   $files files under src/backend include no runtime, actor, ABI, snapshot or Wasmtime header"
