#!/usr/bin/env bash
# test_run_cli.sh SAMEPAGE MODEL: `samepage run` as a user meets it.
#  - the same seed gives the same sampled text, another seed other text;
#  - an interactive chat (stdin) keeps the conversation between turns;
#  - --json carries the stats; stderr carries load/prefill/decode speed;
#  - clear errors for a missing model, a file that is not GGUF, bad options.
set -u
bin="$1"; model="$2"
[[ -r "$model" ]] || { echo "SKIP: no model at $model"; exit 77; }
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
check() { if eval "$2"; then pass=$((pass + 1)); echo "ok   $1"; else fail=$((fail + 1)); echo "FAIL $1"; fi; }
run() { "$bin" run --model "$model" "$@"; }

run -n 24 --temp 0.9 --seed 7 "Write a sentence about rivers." > "$tmp/s7a" 2>/dev/null
run -n 24 --temp 0.9 --seed 7 "Write a sentence about rivers." > "$tmp/s7b" 2>/dev/null
run -n 24 --temp 0.9 --seed 8 "Write a sentence about rivers." > "$tmp/s8" 2>/dev/null
check "same seed, same text" 'cmp -s "$tmp/s7a" "$tmp/s7b" && [[ -s "$tmp/s7a" ]]'
check "other seed, other text" '! cmp -s "$tmp/s7a" "$tmp/s8"'

printf 'My name is Ada.\nWhat is my name?\n' | run -n 24 --temp 0 > "$tmp/chat" 2> "$tmp/chat_err"
check "interactive chat remembers the first turn" 'grep -q Ada "$tmp/chat"'
check "stats on stderr" 'grep -q "prefill .* tok/s | decode .* tok/s" "$tmp/chat_err"'

run -n 4 --json "Hi" > "$tmp/json" 2>/dev/null
check "--json has the figures" 'grep -q "\"prefill_tok_s\"" "$tmp/json" && grep -q "\"decode_tok_s\"" "$tmp/json" && grep -q "\"load_ms\"" "$tmp/json"'

"$bin" run --model "$tmp/none.gguf" "Hi" > /dev/null 2> "$tmp/err"; rc=$?
check "missing model: exit 125 and a message" '[[ $rc -eq 125 ]] && grep -q "none.gguf" "$tmp/err"'
printf 'not a gguf file at all' > "$tmp/bad.gguf"
"$bin" run --model "$tmp/bad.gguf" "Hi" > /dev/null 2> "$tmp/err"; rc=$?
check "not GGUF: refused with the reason" '[[ $rc -ne 0 ]] && grep -qi "gguf" "$tmp/err"'
head -c 100000 "$model" > "$tmp/cut.gguf"
"$bin" run --model "$tmp/cut.gguf" "Hi" > /dev/null 2> "$tmp/err"; rc=$?
check "truncated GGUF: refused with the reason" '[[ $rc -ne 0 ]] && grep -qi "gguf" "$tmp/err"'
run --top-p 7 "Hi" > /dev/null 2> "$tmp/err"; rc=$?
check "bad sampling option refused" '[[ $rc -ne 0 ]] && grep -q "top_p" "$tmp/err"'
run --frobnicate 1 "Hi" > /dev/null 2> "$tmp/err"; rc=$?
check "unknown option refused" '[[ $rc -eq 2 ]] && grep -q "unknown option" "$tmp/err"'

echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
