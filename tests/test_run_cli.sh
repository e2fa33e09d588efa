#!/usr/bin/env bash
# test_run_cli.sh SAMEPAGE MODEL: `samepage run` as a user meets it.
#  - the same seed gives the same sampled text, another seed other text;
#  - an interactive chat (stdin) keeps the conversation between turns: the
#    second turn's prompt starts in the KV cache where the first turn ended,
#    and the cache saved after it holds both turns, the first one's
#    positions bit for bit as a one-turn run leaves them (`kv export`);
#  - --json carries the stats; stderr carries load/prefill/decode speed;
#  - clear errors for a missing model, a file that is not GGUF, bad options;
#  - every error path exits non-zero with the README's code (issue 13):
#    2 for a bad command line (an empty prompt, NaN or infinite sampling
#    settings), 1 for a refused model (a GGUF whose RoPE base or RMS epsilon
#    is infinite) or a failed turn (a prompt past the context, also after a
#    resume), 125 for a snapshot that cannot be read, 124 past --timeout.
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

# turn FILE I FIELD: FIELD of the I-th turn (from 1) in `run --json` output.
turn() { grep -o '"turns": \[[^]]*\]' "$1" | grep -o '{[^}]*}' | sed -n "$2p" | grep -o "\"$3\": [0-9]*" | grep -o '[0-9]*$'; }
# kv_rows SAFETENSORS TENSOR N: the bytes of TENSOR's first N positions.
kv_rows() {
  local hlen head entry start row
  hlen=$(od -An -tu8 -N8 "$1" | tr -d ' ')
  head=$(head -c $((8 + hlen)) "$1" | tail -c "$hlen")
  entry=$(grep -o "\"$2\":{[^}]*}" <<< "$head")
  start=$(sed 's/.*"data_offsets":\[\([0-9]*\),.*/\1/' <<< "$entry")
  row=$(sed 's/.*"shape":\[[0-9]*,\([0-9]*\),\([0-9]*\)\].*/\1 * \2 * 2/' <<< "$entry")
  tail -c +$((8 + hlen + start + 1)) "$1" | head -c $(($3 * row))
}
positions() { head -c 4096 "$1" | grep -ao '"positions":"[0-9]*"' | grep -o '[0-9]*'; }
# same_rows A B N: every K and V tensor of A and B agrees on its first N positions.
same_rows() {
  local t names
  names=$(head -c 65536 "$1" | grep -ao '"layer\.[0-9]*\.[kv]"' | tr -d '"')
  [[ -n "$names" && $3 -gt 0 ]] || return 1
  for t in $names; do
    kv_rows "$1" "$t" "$3" > "$tmp/rows_a"; kv_rows "$2" "$t" "$3" > "$tmp/rows_b"
    [[ -s "$tmp/rows_a" ]] && cmp -s "$tmp/rows_a" "$tmp/rows_b" || return 1
  done
}

printf 'My name is Ada.\nWhat is my name?\n' | run -n 24 --temp 0 --json --save "$tmp/chat.snap" > "$tmp/chat" 2> "$tmp/chat_err"
run -n 24 --temp 0 --json --save "$tmp/one.snap" "My name is Ada." > "$tmp/one" 2>/dev/null
f1=$(turn "$tmp/chat" 1 first_position); p1=$(turn "$tmp/chat" 1 prompt_tokens); g1=$(turn "$tmp/chat" 1 sampled_tokens)
f2=$(turn "$tmp/chat" 2 first_position); p2=$(turn "$tmp/chat" 2 prompt_tokens); g2=$(turn "$tmp/chat" 2 sampled_tokens)
a1=$(turn "$tmp/chat" 1 positions_after); a2=$(turn "$tmp/chat" 2 positions_after)
echo "     turns: 1 at $f1 + $p1 prompt + $g1 sampled = $a1 | 2 at $f2 + $p2 prompt + $g2 sampled = $a2"
check "chat: two turns, each with a prompt and a reply" '[[ -n "$f1" && -n "$f2" && $p1 -gt 0 && $g1 -gt 0 && $p2 -gt 0 && $g2 -gt 0 ]] && [[ -z "$(turn "$tmp/chat" 3 first_position)" ]]'
check "chat: turn 2's prompt starts where turn 1 ended" '[[ $f1 -eq 0 && $a1 -eq $((f1 + p1 + g1)) && $f2 -eq $a1 ]]'
check "chat: the cache holds both turns" '[[ $a2 -eq $((f1 + p1 + g1 + p2 + g2)) ]]'
"$bin" kv export "$tmp/chat.snap" "$tmp/chat.safetensors" 2>/dev/null
"$bin" kv export "$tmp/one.snap" "$tmp/one.safetensors" 2>/dev/null
check "chat: the saved cache holds both turns' positions" '[[ "$(positions "$tmp/chat.safetensors")" == "$a2" && "$(positions "$tmp/one.safetensors")" == "$a1" ]]'
check "chat: turn 1 is in the cache as a one-turn run leaves it" 'same_rows "$tmp/chat.safetensors" "$tmp/one.safetensors" "$a1"'
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

# ---- exit status of every error path (issue 13) ----
run -n 4 "" > /dev/null 2> "$tmp/err"; rc=$?
check "empty prompt: exit 2" '[[ $rc -eq 2 ]] && grep -q "empty" "$tmp/err"'
long="$(printf 'Tell me everything about rivers, lakes and seas. %.0s' {1..8})"
run -n 4 --ctx 32 "$long" > /dev/null 2> "$tmp/err"; rc=$?
check "prompt past the context: exit 1" '[[ $rc -eq 1 ]] && grep -q "context is full" "$tmp/err"'
t0=$(date +%s%N)
run -n 64 --timeout 0.02 "Tell me about rivers." > /dev/null 2> "$tmp/err"; rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "--timeout 0.02: exit 124 naming the limit, in $ms ms" '[[ $rc -eq 124 ]] && grep -q "time limit" "$tmp/err" && [[ $ms -lt 10000 ]]'
for opt in --temp --top-p --min-p --repeat-penalty; do
  for val in nan inf -inf; do
    run -n 4 $opt $val "Hi" > /dev/null 2> "$tmp/err"; rc=$?
    check "$opt $val: exit 2 naming the option" '[[ $rc -eq 2 ]] && grep -q -- "$opt" "$tmp/err"'
  done
done
"$bin" run --model "$tmp/bad.gguf" "Hi" > /dev/null 2>&1; rc=$?
check "not GGUF: exit 1" '[[ $rc -eq 1 ]]'
# patch_f32 KEY VALUE OUT: the model with the float metadata KEY set to VALUE.
patch_f32() {
  python3 - "$model" "$1" "$2" "$3" <<'PY'
import struct, sys
data = bytearray(open(sys.argv[1], "rb").read())
key = sys.argv[2].encode()
at = data.find(struct.pack("<Q", len(key)) + key) + 8 + len(key)
assert at > 8 + len(key) and struct.unpack_from("<I", data, at)[0] == 6, "no f32 key " + sys.argv[2]
struct.pack_into("<f", data, at + 4, float(sys.argv[3]))
open(sys.argv[4], "wb").write(data)
PY
}
for key in llama.rope.freq_base llama.attention.layer_norm_rms_epsilon; do
  for val in inf nan; do
    patch_f32 $key $val "$tmp/patched.gguf" || { check "patch $key" false; continue; }
    "$bin" run --model "$tmp/patched.gguf" -n 4 "Hi" > /dev/null 2> "$tmp/err"; rc=$?
    check "GGUF $key = $val: exit 1 naming the key" '[[ $rc -eq 1 ]] && grep -q "$key is not a finite positive number" "$tmp/err"'
  done
done
run -n 8 --temp 0 --ctx 64 --save "$tmp/small.snap" "Tell me about rivers." > /dev/null 2>&1; rc=$?
check "small context saved" '[[ $rc -eq 0 && -s "$tmp/small.snap" ]]'
run --resume "$tmp/small.snap" -n 4 "$long" > /dev/null 2> "$tmp/err"; rc=$?
check "resume, then a prompt past the context: exit 1" '[[ $rc -eq 1 ]] && grep -q "context is full" "$tmp/err"'
run --resume "$tmp/none.snap" -n 4 "Hi" > /dev/null 2> "$tmp/err"; rc=$?
check "resume of a missing snapshot: exit 125" '[[ $rc -eq 125 ]] && grep -q "none.snap" "$tmp/err"'
head -c 100000 "$tmp/small.snap" > "$tmp/cut.snap"
run --resume "$tmp/cut.snap" -n 4 "Hi" > /dev/null 2> "$tmp/err"; rc=$?
check "resume of a truncated snapshot: exit 125" '[[ $rc -eq 125 ]] && grep -q "truncated" "$tmp/err"'

echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
