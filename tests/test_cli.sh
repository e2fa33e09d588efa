#!/usr/bin/env bash
# test_cli.sh SAMEPAGE GUEST_DIR: `samepage exec` exit codes and messages.
set -u
bin="$1"; guests="$2"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0

# expect NAME WANT_CODE NEEDLE -- COMMAND...: runs COMMAND, checks its exit
# code and that NEEDLE occurs in its combined output.
expect() {
  local name="$1" want="$2" needle="$3"; shift 4
  local out code
  out="$("$@" 2>&1)"; code=$?
  if [[ $code -eq $want && "$out" == *"$needle"* ]]; then
    pass=$((pass + 1)); echo "ok   $name"
  else
    fail=$((fail + 1)); echo "FAIL $name: exit $code (want $want), output:"; echo "$out" | sed 's/^/     /'
  fi
}

printf 'secret words\n' > "$tmp/hello.txt"
printf 'plain text, not wasm' > "$tmp/text.wasm"
printf '\0asm\1\0\0\0\377\377' > "$tmp/broken.wasm"

expect "exit code 0"            0   "arg[0]="                 -- "$bin" exec "$guests/test_exit_code.wasm" 0
expect "exit code propagated"   42  "arg[1]=42"               -- "$bin" exec "$guests/test_exit_code.wasm" 42 extra
expect "args passed through"    7   "arg[2]=--not-an-option"  -- "$bin" exec "$guests/test_exit_code.wasm" 7 --not-an-option
expect "missing file"           125 "No such file or directory" -- "$bin" exec "$tmp/nope.wasm"
expect "directory, not a file"  125 "not a regular file"      -- "$bin" exec "$tmp"
expect "not wasm"               125 "not a WebAssembly module" -- "$bin" exec "$tmp/text.wasm"
expect "corrupt wasm"           125 "invalid or unsupported wasm module" -- "$bin" exec "$tmp/broken.wasm"
expect "unknown import"         125 "instantiation failed"    -- "$bin" exec "$guests/test_bad_import.wasm"
expect "unknown import named"   125 "no_such_function"        -- "$bin" exec "$guests/test_bad_import.wasm"
expect "trap message"           134 "guest trapped in _start" -- "$bin" exec "$guests/test_trap.wasm"
expect "trap backtrace"         134 "deepest_function"        -- "$bin" exec "$guests/test_trap.wasm"
expect "stdout before a trap"   134 "about to trap"           -- "$bin" exec "$guests/test_trap.wasm"
expect "--dir grants a file"    0   "secret words"            -- "$bin" exec --dir "$tmp" "$guests/test_read_file.wasm" "$tmp/hello.txt"
expect "no --dir, no file"      3   "hello.txt"               -- "$bin" exec "$guests/test_read_file.wasm" "$tmp/hello.txt"
expect "memory limit honoured"  0   "allocated"               -- "$bin" exec --memory-limit 32M "$guests/test_memhog.wasm" 64
expect "memory limit bad value" 2   "--memory-limit"          -- "$bin" exec --memory-limit lots "$guests/test_memhog.wasm"
expect "backend cpu"            0   "arg[0]"                  -- "$bin" exec --backend cpu "$guests/test_exit_code.wasm"
expect "backend unknown"        125 "unknown backend"         -- "$bin" exec --backend tpu "$guests/test_exit_code.wasm"
expect "unknown option"         2   "unknown option --frobnicate" -- "$bin" exec --frobnicate "$guests/test_exit_code.wasm"
expect "missing guest"          2   "missing GUEST.wasm"      -- "$bin" exec
expect "option needs value"     2   "needs a value"           -- "$bin" exec --dir
expect "bad --dir"              125 "cannot open this directory" -- "$bin" exec --dir "$tmp/none" "$guests/test_exit_code.wasm"
expect "unknown command"        2   "unknown command"         -- "$bin" frobnicate
expect "help"                   0   "usage: samepage"         -- "$bin" help

# The memory limit must bound what the guest got: 32 MiB cap, so < 32 MiB.
out="$("$bin" exec --memory-limit 32M "$guests/test_memhog.wasm" 64 2>&1)"
got="$(echo "$out" | sed -n 's/allocated \([0-9]*\) MiB/\1/p')"
if [[ -n "$got" && "$got" -lt 32 && "$got" -gt 16 ]]; then pass=$((pass + 1)); echo "ok   limit bounds allocation ($got MiB)"
else fail=$((fail + 1)); echo "FAIL limit bounds allocation: $out"; fi

echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
