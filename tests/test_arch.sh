#!/usr/bin/env bash
# test_arch.sh SYNTH TEST_ARCH GUEST_DIR OUTDIR: the architectures of issue
# 15 in the LLM guest, without llama.cpp.
#
# 1. Each architecture's synthetic file (a tools/synth_gguf preset, shrunk
#    to 2 layers and a small vocabulary; each in another weight type) loads,
#    gives finite logits at every prompt position and generates, twice
#    with identical results (test_arch run).
# 2. Hostile metadata, made from those files by test_arch_gguf_edit.py, is
#    refused at load with a message naming the key and the bad value
#    (test_arch refuse). Each case is one bad key in an otherwise good file,
#    so a refusal for any other reason fails the needle.
set -u
synth="$1"; test_arch="$2"; guests="$3"; out="$4"
edit="$(dirname "$0")/test_arch_gguf_edit.py"
mkdir -p "$out" || exit 1
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

# check NAME COMMAND...: COMMAND must exit 0; its output is shown on failure.
check() {
  local name="$1" text; shift
  if text="$("$@" 2>&1)"; then ok "$name"; echo "$text" | grep -E "^(logits|greedy|llm_init)" | sed 's/^/     /'
  else bad "$name"; echo "$text" | sed 's/^/     /'; fi
}

small=(--layers 2 --vocab 2048)
narrow=(--embd 256 --ff 512 --heads 8) # the 7B and 3.8B widths, narrowed
declare -A made
make_model() { # NAME TYPE PRESET EXTRA...
  local name="$1" type="$2" preset="$3"; shift 3
  local f="$out/$name.gguf"
  if nice -n 19 "$synth" --out "$f" --preset "$preset" --type "$type" "${small[@]}" "$@" > /dev/null; then
    made[$name]="$f"; ok "synth_gguf --preset $preset --type $type"
  else bad "synth_gguf --preset $preset --type $type"; fi
}
make_model qwen2 q8_0 qwen2.5-0.5b
make_model qwen3 f16 qwen3-0.6b
make_model gemma3 f32 gemma-3-270m
make_model phi3 q8_0 phi-3-mini "${narrow[@]}" --kv-heads 8
make_model mistral f16 mistral-7b "${narrow[@]}" --kv-heads 2

for name in qwen2 qwen3 gemma3 phi3 mistral; do
  [[ -n "${made[$name]:-}" ]] && check "$name: loads, finite logits, deterministic" nice -n 19 "$test_arch" run "$guests" "${made[$name]}"
done

# Mistral's sliding window (llama.cpp ignores it for "llama", so only here):
# with a 16-token window the logits of the first 16 positions equal the
# unwindowed model's bit for bit, and later ones differ.
window_check() {
  local base="${made[mistral]:-}" f="$out/mistral_w16.gguf"
  [[ -n "$base" ]] || { bad "window: no base file"; return; }
  python3 "$edit" "$base" "$f" llama.attention.sliding_window=u32:16 &&
    nice -n 19 "$test_arch" run "$guests" "$base" "$out/full.logits" > /dev/null &&
    nice -n 19 "$test_arch" run "$guests" "$f" "$out/w16.logits" > /dev/null &&
    python3 - "$out/full.logits" "$out/w16.logits" <<'PY'
import sys
N = 48  # tests/test_arch.c N_PROMPT
a, b = (open(p, "rb").read()[4 * N:] for p in sys.argv[1:3])
row = len(a) // N
same = [a[i * row:(i + 1) * row] == b[i * row:(i + 1) * row] for i in range(N)]
print("positions equal to the unwindowed run:", [i for i in range(N) if same[i]])
sys.exit(0 if all(same[:16]) and not any(same[16:]) else 1)
PY
}
if text="$(window_check 2>&1)"; then ok "Mistral window 16: the first 16 positions unchanged, the rest differ"
else bad "Mistral window 16"; echo "$text" | sed 's/^/     /'; fi
rm -f "$out/mistral_w16.gguf" "$out"/*.logits

# refuse NAME BASE NEEDLE EDIT...: BASE edited by EDITs must be refused
# with NEEDLE in the message.
refuse() {
  local name="$1" base="${made[$2]:-}" needle="$3"; shift 3
  local f="$out/hostile.gguf"
  [[ -n "$base" ]] || { bad "$name: no base file"; return; }
  if ! python3 "$edit" "$base" "$f" "$@"; then bad "$name: editing"; return; fi
  check "refused: $name" nice -n 19 "$test_arch" refuse "$guests" "$f" "$needle"
}
refuse "unknown architecture" qwen2 'general.architecture = "qwen9"' general.architecture=str:qwen9
refuse "zero heads" qwen2 "qwen2.attention.head_count = 0" qwen2.attention.head_count=u32:0
refuse "missing block count" qwen2 "qwen2.block_count is missing" -qwen2.block_count
refuse "negative width" qwen2 "qwen2.embedding_length is not an unsigned integer" qwen2.embedding_length=i32:-896
refuse "negative RoPE base" qwen2 "qwen2.rope.freq_base is not a finite positive number" qwen2.rope.freq_base=f32:-10000
refuse "kv heads not dividing heads" qwen2 "qwen2.attention.head_count_kv = 4 does not divide" qwen2.attention.head_count_kv=u32:4
refuse "heads not dividing the width" qwen2 "qwen2.attention.head_count = 12 does not divide" qwen2.attention.head_count=u32:12
refuse "zero head size" qwen3 "qwen3.attention.key_length = 0" qwen3.attention.key_length=u32:0
refuse "YaRN scaling" qwen3 'qwen3.rope.scaling.type = "yarn"' qwen3.rope.scaling.type=str:yarn
refuse "layer pattern past the layers" gemma3 "gemma3.attention.sliding_window_pattern = 99 is longer" gemma3.attention.sliding_window_pattern=u32:99
refuse "negative soft-cap" gemma3 "gemma3.final_logit_softcapping" gemma3.final_logit_softcapping=f32:-30
refuse "NaN LongRoPE factor" phi3 "phi3.rope.scaling.attn_factor is not a finite positive number" phi3.rope.scaling.attn_factor=f32:nan
refuse "odd rotary dims" phi3 "phi3.rope.dimension_count = 7" phi3.rope.dimension_count=u32:7
refuse "value length unlike key length" mistral "llama.attention.value_length = 64 differs" llama.attention.value_length=u32:64
refuse "zero epsilon" mistral "llama.attention.layer_norm_rms_epsilon is not a finite positive number" llama.attention.layer_norm_rms_epsilon=f32:0
# A hostile file must not pass by luck: the unedited file loads (above), and
# an edit to a harmless key leaves it loadable.
f="$out/harmless.gguf"
python3 "$edit" "${made[qwen2]}" "$f" general.name=str:renamed && \
  check "harmless edit still loads" nice -n 19 "$test_arch" run "$guests" "$f"
rm -f "$out/hostile.gguf" "$out/harmless.gguf"

echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
