#!/usr/bin/env bash
# test_faults_cli.sh SAMEPAGE MODEL FAKE_CUDA_LIB: faults around `samepage run`
# (issue 6), each survived with nothing lost:
#  - SIGKILL while a large (--self-contained) snapshot is being written: the
#    previous snapshot at that path is byte-identical and still resumes;
#  - a full disk during a snapshot (RLIMIT_FSIZE, SIGXFSZ ignored): the save
#    fails naming the cause, the previous snapshot is intact, no temp file;
#  - a CUDA library that loads but fails to initialise: --backend auto falls
#    back to the CPU with a message, --backend cuda fails clearly.
set -u
bin="$1"; model="$2"; fake="$3"
[[ -r "$model" ]] || { echo "SKIP: no model at $model"; exit 77; }
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
check() { if eval "$2"; then pass=$((pass + 1)); echo "ok   $1"; else fail=$((fail + 1)); echo "FAIL $1"; fi; }
run() { "$bin" run --backend cpu --model "$model" --ctx 256 -n 4 --temp 0 "$@"; }
signalled() { [[ $1 -ge 128 && $1 -ne 137 ]]; } # died of a signal other than our SIGKILL

run --save "$tmp/s.snap" "Hello." > /dev/null 2> "$tmp/err"; rc=$?
check "reference snapshot saved" '[[ $rc -eq 0 && -s "$tmp/s.snap" ]]'
cp "$tmp/s.snap" "$tmp/ref.snap"

# ---- SIGKILL mid-snapshot: wait for the temporary file, then kill after
# a few different delays ----
mid=0
for delay in 0 0.01 0.03 0.06 0.1 0.2; do
  # Not through run(): $! must be samepage itself, not a subshell.
  "$bin" run --backend cpu --model "$model" --ctx 256 -n 4 --temp 0 --self-contained \
    --save "$tmp/s.snap" "Another conversation." > /dev/null 2>&1 &
  pid=$!
  for _ in $(seq 3000); do
    ls "$tmp"/s.snap.tmp.* > /dev/null 2>&1 && break
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.01
  done
  sleep "$delay"
  ls "$tmp"/s.snap.tmp.* > /dev/null 2>&1 && writing=1 || writing=0
  kill -KILL "$pid" 2> /dev/null
  wait "$pid" 2> /dev/null; rc=$?
  [[ $rc -eq 137 || $rc -eq 0 ]] || { fail=$((fail + 1)); echo "FAIL kill after ${delay}s: exit $rc"; }
  if ! cmp -s "$tmp/s.snap" "$tmp/ref.snap"; then
    # The save finished before the kill: then it must be a whole new snapshot.
    run --resume "$tmp/s.snap" "Go on." > /dev/null 2>&1; rc=$?
    check "kill ${delay}s into the write: the replaced snapshot is complete and resumes" '[[ $rc -eq 0 ]]'
    cp "$tmp/ref.snap" "$tmp/s.snap"
  else
    mid=$((mid + writing))
  fi
  rm -f "$tmp"/s.snap.tmp.*
done
echo "  ($mid kills landed while the temporary snapshot file existed)"
check "some kills landed mid-write" '[[ $mid -ge 1 ]]'
check "after the kills the previous snapshot is byte-identical" 'cmp -s "$tmp/s.snap" "$tmp/ref.snap"'
run --resume "$tmp/s.snap" "Go on." > /dev/null 2> "$tmp/err"; rc=$?
check "and it resumes" '[[ $rc -eq 0 ]]'

# ---- a full disk: the file size limit stops the write ----
( trap '' XFSZ; ulimit -f 8192; run --self-contained --save "$tmp/s.snap" "Fill the disk." ) > /dev/null 2> "$tmp/err"; rc=$?
check "full disk: the save fails (exit $rc)" '[[ $rc -ne 0 ]] && ! signalled $rc'
check "full disk: the message names the cause" 'grep -q "snapshot: write failed: File too large (out of disk space" "$tmp/err"' || cat "$tmp/err"
check "full disk: the previous snapshot is intact" 'cmp -s "$tmp/s.snap" "$tmp/ref.snap"'
check "full disk: no temporary file left" '! ls "$tmp"/s.snap.tmp.* > /dev/null 2>&1'
run --resume "$tmp/s.snap" "Go on." > /dev/null 2>&1; rc=$?
check "full disk: the previous snapshot still resumes" '[[ $rc -eq 0 ]]'

# ---- a GPU that fails to initialise ----
SP_CUDA_LIB="$fake" "$bin" run --backend auto --model "$model" --ctx 256 -n 4 --temp 0 "Hi" > "$tmp/out" 2> "$tmp/err"; rc=$?
check "failing CUDA, --backend auto: runs on the cpu" '[[ $rc -eq 0 && -s "$tmp/out" ]]'
check "failing CUDA, --backend auto: says why" 'grep -q "using the cpu backend (.*no CUDA-capable device" "$tmp/err"' || cat "$tmp/err"
SP_CUDA_LIB="$fake" "$bin" run --backend cuda --model "$model" -n 4 "Hi" > /dev/null 2> "$tmp/err"; rc=$?
check "failing CUDA, --backend cuda: a clear error (exit $rc)" '[[ $rc -eq 125 ]] && grep -q "no CUDA-capable device" "$tmp/err"'
SP_CUDA_LIB="$tmp/missing.so" "$bin" run --backend cuda --model "$model" -n 4 "Hi" > /dev/null 2> "$tmp/err"; rc=$?
check "missing CUDA library, --backend cuda: a clear error" '[[ $rc -eq 125 ]] && grep -q "cannot load" "$tmp/err"'
printf 'garbage' > "$tmp/bad.so"
SP_CUDA_LIB="$tmp/bad.so" "$bin" run --backend auto --model "$model" --ctx 256 -n 4 "Hi" > /dev/null 2> "$tmp/err"; rc=$?
check "a corrupt CUDA library, --backend auto: falls back" '[[ $rc -eq 0 ]]'

echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
