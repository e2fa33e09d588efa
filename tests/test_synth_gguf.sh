#!/usr/bin/env bash
# test_synth_gguf.sh TOOL OUTDIR [--llama-cpp]: tools/synth_gguf writes
# valid GGUF files.
#
# Writes tiny models of every --type into OUTDIR and checks their header,
# determinism and every validation error. With --llama-cpp it writes the
# models and llama.cpp loads each one, evaluates a few tokens and must get
# finite logits; that needs a Python with llama_cpp ($SP_REF_PYTHON, default
# /work/venv-ref/bin/python; see tools/reference/README.md), and exits 77
# (skipped) without one.
set -u
tool="$1"; out="$2"; mode="${3:-}"
py="${SP_REF_PYTHON:-/work/venv-ref/bin/python}"
if [[ "$mode" == --llama-cpp ]] && ! "$py" -c 'import llama_cpp' 2>/dev/null; then
  echo "SKIP: $py cannot import llama_cpp (see tools/reference/README.md)"; exit 77
fi
mkdir -p "$out" || exit 1
pass=0; fail=0

ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

# expect NAME WANT_CODE NEEDLE -- COMMAND...: runs COMMAND, checks its exit
# code and that NEEDLE occurs in its combined output.
expect() {
  local name="$1" want="$2" needle="$3"; shift 4
  local text code
  text="$("$@" 2>&1)"; code=$?
  if [[ $code -eq $want && "$text" == *"$needle"* ]]; then ok "$name"
  else bad "$name: exit $code (want $want), output:"; echo "$text" | sed 's/^/     /'
  fi
}

# header_ok FILE: the first 8 bytes are "GGUF" and u32 version 3.
header_ok() {
  [[ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" == "4747554603000000" ]]
}

tiny=(--vocab 512 --embd 64 --layers 2 --heads 4 --kv-heads 2 --ff 128 --ctx 256)
small=(--vocab 1024 --embd 64 --layers 2 --heads 4 --kv-heads 2 --ff 128 --ctx 512)
models=()

# One tiny model per weight type.
for t in f32 f16 bf16 q8_0 q4_0 q4_1; do
  f="$out/tiny_$t.gguf"; rm -f "$f"
  expect "write $t" 0 "wrote" -- "$tool" --out "$f" --type "$t" "${tiny[@]}"
  if [[ -s "$f" ]] && header_ok "$f"; then ok "$t: GGUF v3 header"; models+=("$f")
  else bad "$t: missing file or bad header"; fi
done

# The types of issue 15 (256-element K-quant blocks need wider rows).
kwide=(--vocab 512 --embd 256 --layers 2 --heads 4 --kv-heads 2 --ff 512 --ctx 256)
for t in q5_0 q5_1 q2_k q3_k q4_k q5_k q6_k iq4_nl iq4_xs q4_k_m; do
  f="$out/tiny_$t.gguf"; rm -f "$f"
  expect "write $t" 0 "wrote" -- "$tool" --out "$f" --type "$t" "${kwide[@]}"
  if [[ -s "$f" ]] && header_ok "$f"; then ok "$t: GGUF v3 header"; models+=("$f")
  else bad "$t: missing file or bad header"; fi
done

# The architecture presets, shrunk (phi-3 and mistral also narrowed).
for p in qwen2.5-0.5b qwen3-0.6b gemma-3-270m phi-3-mini mistral-7b; do
  f="$out/preset_$p.gguf"; extra=()
  [[ $p == phi-3-mini || $p == mistral-7b ]] && extra=(--embd 256 --ff 512 --heads 8 --kv-heads 8)
  expect "$p preset, shrunk" 0 "wrote" -- "$tool" --out "$f" --preset "$p" --type q8_0 --layers 2 --vocab 1024 "${extra[@]}"
  header_ok "$f" && models+=("$f")
done
f="$out/qwen_q4_k_m.gguf"
expect "q4_k_m with rows of 896 (Q5_0 fallback)" 0 "wrote" -- "$tool" --out "$f" --preset qwen2.5-0.5b --type q4_k_m --layers 2 --vocab 1024
header_ok "$f" && models+=("$f")

# The presets' tokenizers and rope scaling, shrunk to a tiny shape.
f="$out/llama3_q8_0.gguf"
expect "llama preset, shrunk" 0 "wrote" -- "$tool" --out "$f" --preset llama-3.2-1b --type q8_0 "${small[@]}"
header_ok "$f" && models+=("$f")
f="$out/smollm_q4_1.gguf"
expect "smollm preset, shrunk, untied" 0 "wrote" -- "$tool" --out "$f" --preset smollm2-135m --type q4_1 --untied "${small[@]}"
header_ok "$f" && models+=("$f")
f="$out/custom_rope.gguf"
expect "custom --llama3-rope --rope-theta" 0 "wrote" -- "$tool" --out "$f" --type f16 --llama3-rope --rope-theta 250000 "${tiny[@]}"
header_ok "$f" && models+=("$f")

# The writer's own checks (the --llama-cpp entry needs only the models).
if [[ "$mode" != --llama-cpp ]]; then
# Same seed, same bytes; another seed, other bytes; no temporary file left.
"$tool" --out "$out/seed_a.gguf" --seed 7 "${tiny[@]}" >/dev/null
"$tool" --out "$out/seed_b.gguf" --seed 7 "${tiny[@]}" >/dev/null
"$tool" --out "$out/seed_c.gguf" --seed 8 "${tiny[@]}" >/dev/null
if cmp -s "$out/seed_a.gguf" "$out/seed_b.gguf"; then ok "same seed, same file"; else bad "same seed, same file"; fi
if ! cmp -s "$out/seed_a.gguf" "$out/seed_c.gguf"; then ok "other seed, other file"; else bad "other seed, other file"; fi
if compgen -G "$out/*.tmp.*" >/dev/null; then bad "temporary files left in $out"; else ok "no temporary files left"; fi
rm -f "$out"/seed_?.gguf

# Every validation error: exit 2 and a message naming the problem.
expect "help"                 0 "usage: synth_gguf"    -- "$tool" --help
expect "no --out"             2 "--out FILE is required" -- "$tool" "${tiny[@]}"
expect "unknown option"       2 "unknown option '--bogus'" -- "$tool" --out "$out/x.gguf" --bogus
expect "missing value"        2 "--layers needs a value" -- "$tool" --out "$out/x.gguf" --layers
expect "unknown type"         2 "unknown type 'q9_9'"  -- "$tool" --out "$out/x.gguf" --type q9_9 "${tiny[@]}"
expect "unknown preset"       2 "unknown preset 'gpt-5'" -- "$tool" --out "$out/x.gguf" --preset gpt-5
expect "custom shape incomplete" 2 "--ff is required without --preset" -- "$tool" --out "$out/x.gguf" --vocab 512 --embd 64 --layers 2 --heads 4
expect "not an integer"       2 "--embd: expected an integer" -- "$tool" --out "$out/x.gguf" --embd 64x
expect "negative integer"     2 "--vocab: expected an integer" -- "$tool" --out "$out/x.gguf" --vocab -5
expect "zero layers"          2 "--layers: expected an integer in [1, 1024]" -- "$tool" --out "$out/x.gguf" "${tiny[@]}" --layers 0
expect "too many layers"      2 "--layers: expected an integer in [1, 1024]" -- "$tool" --out "$out/x.gguf" "${tiny[@]}" --layers 5000
expect "bad seed"             2 "--seed: expected an integer" -- "$tool" --out "$out/x.gguf" --seed abc
expect "bad rope theta"       2 "--rope-theta: expected a number" -- "$tool" --out "$out/x.gguf" --rope-theta nan
expect "embd % heads"         2 "--embd 64 is not a multiple of --heads 6" -- "$tool" --out "$out/x.gguf" "${tiny[@]}" --heads 6 --kv-heads 6
expect "heads % kv-heads"     2 "--heads 4 is not a multiple of --kv-heads 3" -- "$tool" --out "$out/x.gguf" "${tiny[@]}" --kv-heads 3
expect "odd head dim"         2 "must be even for RoPE" -- "$tool" --out "$out/x.gguf" --type f32 "${tiny[@]}" --embd 96 --heads 32 --kv-heads 32
expect "vocab too small"      2 "--vocab 200 is too small" -- "$tool" --out "$out/x.gguf" "${tiny[@]}" --vocab 200
expect "quant row length"     2 "--type q4_0 needs --embd and --ff to be multiples of 32" -- "$tool" --out "$out/x.gguf" --type q4_0 "${tiny[@]}" --ff 100
expect "K-quant row length"   2 "--type q4_k needs --embd and --ff to be multiples of 256" -- "$tool" --out "$out/x.gguf" --type q4_k "${tiny[@]}"
expect "q4_k_m row length"    2 "--type q4_k_m needs --embd and --ff to be multiples of 32" -- "$tool" --out "$out/x.gguf" --type q4_k_m "${tiny[@]}" --ff 100
expect "preset head dim rows" 2 "--heads times the head dim (3968) to be a multiple of 256" -- "$tool" --out "$out/x.gguf" --preset qwen3-0.6b --type q6_k --heads 31 --kv-heads 1
expect "f32 any row length"   0 "wrote" -- "$tool" --out "$out/x.gguf" --type f32 "${tiny[@]}" --ff 100
expect "unwritable directory" 1 "cannot create a temporary file" -- "$tool" --out "$out/no/such/dir/x.gguf" "${tiny[@]}"
rm -f "$out/x.gguf"
fi

# llama.cpp loads every model, tokenizes, evaluates, and gets finite logits.
if [[ "$mode" == --llama-cpp ]]; then
  for f in "${models[@]}"; do
    expect "llama.cpp runs $(basename "$f")" 0 "finite" -- "$py" - "$f" <<'EOF'
import sys
import numpy as np
from llama_cpp import Llama

llm = Llama(model_path=sys.argv[1], n_ctx=128, n_threads=2, logits_all=True,
            verbose=False)
text = b"Hello world, this is a test.\nSecond line: 1234 + 5678."
ids = llm.tokenize(text, add_bos=False)
assert llm.detokenize(ids) == text, "tokenize/detokenize round trip"
ids = ids[:12]
llm.eval(ids)
logits = np.array(llm.scores[: len(ids)])
assert logits.shape == (len(ids), llm.n_vocab()), logits.shape
assert np.isfinite(logits).all(), "non-finite logits"
print("finite: %d tokens, logits std %.3f" % (len(ids), logits.std()))
EOF
  done
fi

echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
