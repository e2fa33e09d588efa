#!/usr/bin/env bash
# test_timeout_cli.sh SAMEPAGE GUEST_DIR GEN_WASM_PY: `samepage exec --timeout`
# has no way out (issue 13): a guest asleep in WASI, blocked reading a stdin
# that stays open, polling it, opening a FIFO, or looping in its start
# function ends near the deadline with exit 124 and the time-limit message.
set -u
bin="$1"; guests="$2"; gen="$3"
tmp="$(mktemp -d)"; holders=()
cleanup() { for p in "${holders[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$tmp"; }
trap cleanup EXIT
pass=0; fail=0

# check NAME WANT_CODE NEEDLE MAX_MS [MIN_MS] -- COMMAND...: runs COMMAND
# (stdin from $input), checks its exit code, that NEEDLE occurs in its
# output and that it took between MIN_MS and MAX_MS.
input=/dev/null
check() {
  local name="$1" want="$2" needle="$3" max="$4" min=0; shift 4
  if [[ "$1" != "--" ]]; then min="$1"; shift; fi
  shift
  local t0 out code ms
  t0=$(date +%s%N)
  out="$("$@" < "$input" 2>&1)"; code=$?
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  if [[ $code -eq $want && "$out" == *"$needle"* && $ms -le $max && $ms -ge $min ]]; then
    pass=$((pass + 1)); echo "ok   $name (exit $code, $ms ms)"
  else
    fail=$((fail + 1))
    echo "FAIL $name: exit $code (want $want), $ms ms (want $min..$max), output:"; echo "$out" | sed 's/^/     /'
  fi
}

# A stdin that stays open: a FIFO whose writer sleeps for a minute.
open_stdin() {
  rm -f "$tmp/in"; mkfifo "$tmp/in"
  sleep 60 > "$tmp/in" & holders+=($!)
  input="$tmp/in"
}

# Sleeps: relative (nanosleep), absolute (clock_nanosleep TIMER_ABSTIME).
check "WASI sleep 30 s, --timeout 1"    124 "guest exceeded its 1000 ms time limit" 2000 900 -- \
  "$bin" exec --timeout 1 "$guests/test_sleep.wasm" 30000
check "absolute sleep 30 s, --timeout 1" 124 "guest exceeded its 1000 ms time limit" 2000 900 -- \
  "$bin" exec --timeout 1 "$guests/test_waits.wasm" abs 30000
# Blocked reading a stdin that never ends, or polling it.
open_stdin
check "read of an open stdin, --timeout 1" 124 "guest exceeded its 1000 ms time limit" 2500 900 -- \
  "$bin" exec --timeout 1 "$guests/test_waits.wasm" stdin
open_stdin
check "poll of an open stdin, --timeout 1" 124 "guest exceeded its 1000 ms time limit" 2500 900 -- \
  "$bin" exec --timeout 1 "$guests/test_waits.wasm" poll 30000
input=/dev/null
# Opening a FIFO under --dir blocks until a writer comes.
mkdir "$tmp/dir"; mkfifo "$tmp/dir/fifo"
check "open of a FIFO, --timeout 1" 124 "guest exceeded its 1000 ms time limit" 2500 900 -- \
  "$bin" exec --timeout 1 --dir "$tmp/dir" "$guests/test_read_file.wasm" "$tmp/dir/fifo"
# A start function (run by instantiation) that never returns.
python3 "$gen" loop_start "$tmp/loop_start.wasm"
check "start function loops, --timeout 1" 124 "guest exceeded its 1000 ms time limit" 2500 900 -- \
  "$bin" exec --timeout 1 "$tmp/loop_start.wasm"

# Waits shorter than the limit are unchanged: they end when due, not before.
check "sleep under the limit"    0 "slept" 3000 200 -- "$bin" exec --timeout 5 "$guests/test_sleep.wasm" 200
check "absolute sleep, not early" 0 "abs rc=0 early=0" 3000 200 -- "$bin" exec --timeout 5 "$guests/test_waits.wasm" abs 200
check "two clocks: the first is due" 0 "poll errno=0 events=1: 11/0/0" 3000 100 -- \
  "$bin" exec --timeout 5 "$guests/test_waits.wasm" clocks 100
# A poll naming a descriptor goes to Wasmtime's own poll_oneoff: stdin at
# its end is readable at once (event 22, type 1 = fd_read).
check "poll of stdin at its end" 0 "22/1/0" 3000 -- "$bin" exec --timeout 5 "$guests/test_waits.wasm" poll 2000
check "poll, no time limit" 0 "22/1/0" 3000 -- "$bin" exec "$guests/test_waits.wasm" poll 2000
printf 'twelve bytes' > "$tmp/twelve"; input="$tmp/twelve"
check "stdin is read as before" 0 "read 12 bytes" 3000 -- "$bin" exec --timeout 5 "$guests/test_waits.wasm" stdin
input=/dev/null

echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
