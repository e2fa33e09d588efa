#!/usr/bin/env bash
# test_hostile_modules.sh SAMEPAGE GEN_WASM_PY: compiling a guest is bounded
# (issue 13). Modules generated here (never committed): 200,000 tiny
# functions, 150 million locals, a count the bytes cannot hold are refused
# at once, naming the limit; a module within the limits whose compilation
# outlasts --timeout ends at the deadline with exit 124.
set -u
bin="$1"; gen="$2"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0

# check NAME WANT_CODE NEEDLE MAX_MS -- COMMAND...
check() {
  local name="$1" want="$2" needle="$3" max="$4"; shift 5
  local t0 out code ms
  t0=$(date +%s%N)
  out="$("$@" 2>&1)"; code=$?
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  if [[ $code -eq $want && "$out" == *"$needle"* && $ms -le $max ]]; then
    pass=$((pass + 1)); echo "ok   $name (exit $code, $ms ms)"
  else
    fail=$((fail + 1))
    echo "FAIL $name: exit $code (want $want), $ms ms (want <= $max), output:"; echo "$out" | head -5 | sed 's/^/     /'
  fi
}

# A nonce section makes every module new to Wasmtime's compiled-module cache.
python3 "$gen" funcs "$tmp/funcs.wasm" 200000
python3 "$gen" locals "$tmp/locals.wasm" 3000 50000
python3 "$gen" fake_count "$tmp/fake.wasm"
python3 "$gen" funcs "$tmp/slow.wasm" 60000 nonce

check "200000 functions refused" 125 "module has 200000 functions; the limit is 4096 (--memory-limit 16M)" 2000 -- \
  "$bin" exec --timeout 2 --memory-limit 16M "$tmp/funcs.wasm"
check "200000 functions, default limits" 125 "module has 200000 functions; the limit is 100000 (the default" 2000 -- \
  "$bin" exec --timeout 2 "$tmp/funcs.wasm"
check "150M locals refused" 125 "module has 150000000 locals (summed over its functions); the limit is 262144 (--memory-limit 16M)" 2000 -- \
  "$bin" exec --timeout 2 --memory-limit 16M "$tmp/locals.wasm"
check "150M locals, default limits" 125 "the limit is 4194304 (the default" 2000 -- \
  "$bin" exec "$tmp/locals.wasm"
check "a count the bytes cannot hold" 125 "declares 4294967295 entries in 0 bytes" 2000 -- \
  "$bin" exec "$tmp/fake.wasm"
check "size limit" 125 "bytes; the limit is 1048576 (--memory-limit 1M)" 2000 -- \
  "$bin" exec --memory-limit 1M "$tmp/funcs.wasm"
# 60,000 functions pass the default limits but take seconds to compile.
check "compilation past --timeout" 124 "guest exceeded its 300 ms time limit while being compiled" 1500 -- \
  "$bin" exec --timeout 0.3 "$tmp/slow.wasm"

# One memory budget (memory_budget.h): tables get 1/64 of --memory-limit
# (16M: 256 KiB, 8,192 elements in each of up to 4 tables), and there is
# one linear memory. A grow past the share returns -1 (the module then
# traps); before the budget, 100 million elements (800 MB) were granted.
python3 "$gen" table_grow "$tmp/table_small.wasm" 1000
python3 "$gen" table_grow "$tmp/table_huge.wasm" 100000000
python3 "$gen" two_memories "$tmp/two_memories.wasm"
check "table.grow within the tables' share" 0 "" 2000 -- \
  "$bin" exec --memory-limit 16M "$tmp/table_small.wasm"
check "table.grow past the tables' share returns -1" 134 "unreachable" 2000 -- \
  "$bin" exec --memory-limit 16M "$tmp/table_huge.wasm"
check "two linear memories, no limit" 0 "" 2000 -- \
  "$bin" exec "$tmp/two_memories.wasm"
check "two linear memories under --memory-limit" 125 "memory" 2000 -- \
  "$bin" exec --memory-limit 16M "$tmp/two_memories.wasm"

echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
