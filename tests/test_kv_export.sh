#!/usr/bin/env bash
# test_kv_export.sh SAMEPAGE MODEL [--safetensors]: the KV cache as safetensors.
#  - `kv export` writes one f16 tensor per layer for K and V, shape
#    [positions, kv_heads, head_dim], with model hash and positions in the
#    metadata; with --safetensors, only that the PyPI `safetensors` package
#    reads it (exit 77, skipped, without python3's safetensors and numpy);
#  - `kv import` of conversation A's cache into conversation B's snapshot
#    makes B continue exactly as A does;
#  - hostile inputs are refused: a corrupt snapshot, a cache from another
#    model, a truncated safetensors file.
set -u
bin="$1"; model="$2"; mode="${3:-}"
[[ -r "$model" ]] || { echo "SKIP: no model at $model"; exit 77; }
if [[ "$mode" == --safetensors ]] && ! python3 -c "import safetensors, numpy" 2>/dev/null; then
  echo "SKIP: python3 has no safetensors/numpy (scripts/test installs them)"; exit 77
fi
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
# Greedy without a repetition penalty: the text depends on the KV cache alone.
run() { "$bin" run --model "$model" --temp 0 --repeat-penalty 1 "$@" 2>/dev/null; }

run -n 8 --save "$tmp/a.snap" "Hello, who are you?" > /dev/null || bad "save a"
"$bin" kv export "$tmp/a.snap" "$tmp/a.safetensors" 2>/dev/null && ok "export" || bad "export"

if [[ "$mode" == --safetensors ]]; then
  if python3 - "$tmp/a.safetensors" <<'PY'
import sys
from safetensors.numpy import load_file
from safetensors import safe_open
f = safe_open(sys.argv[1], "np")
meta = f.metadata()
t = load_file(sys.argv[1])
n = int(meta["positions"])
assert len(t) == 60, len(t)
for i in range(30):
    for kind in "kv":
        x = t[f"layer.{i}.{kind}"]
        assert x.dtype.name == "float16" and x.shape == (n, 3, 64), (x.dtype, x.shape)
        assert abs(x.astype("float32")).sum() > 0
assert len(meta["model_hash"]) == 16
print("safetensors read", len(t), "tensors of", (n, 3, 64))
PY
  then ok "safetensors reads it"; else bad "safetensors reads it"; fi
  echo "$pass passed, $fail failed"
  [[ $fail -eq 0 ]]; exit
fi

run -n 8 --save "$tmp/b.snap" "Tell me a joke." > /dev/null || bad "save b"
"$bin" kv import "$tmp/b.snap" "$tmp/a.safetensors" "$tmp/b_with_a.snap" 2>/dev/null && ok "import" || bad "import"
run -n 16 --resume "$tmp/a.snap" "And your name?" > "$tmp/out_a"
run -n 16 --resume "$tmp/b_with_a.snap" "And your name?" > "$tmp/out_b"
run -n 16 --resume "$tmp/b.snap" "And your name?" > "$tmp/out_b0"
if cmp -s "$tmp/out_a" "$tmp/out_b" && ! cmp -s "$tmp/out_a" "$tmp/out_b0"; then ok "imported cache continues as the original"
else bad "imported cache continues as the original"; fi

head -c 1000 "$tmp/a.snap" > "$tmp/cut.snap"
"$bin" kv export "$tmp/cut.snap" "$tmp/x.safetensors" 2>"$tmp/err" ; [[ $? -ne 0 ]] && grep -q truncated "$tmp/err" && ok "truncated snapshot refused" || bad "truncated snapshot refused"
sed 's/"model_hash":"[0-9a-f]*"/"model_hash":"0000000000000000"/' "$tmp/a.safetensors" > "$tmp/other.safetensors"
"$bin" kv import "$tmp/b.snap" "$tmp/other.safetensors" "$tmp/x.snap" 2>"$tmp/err"; [[ $? -ne 0 ]] && grep -q "another model" "$tmp/err" && ok "other model refused" || bad "other model refused"
head -c 5000 "$tmp/a.safetensors" > "$tmp/short.safetensors"
"$bin" kv import "$tmp/b.snap" "$tmp/short.safetensors" "$tmp/x.snap" 2>"$tmp/err"; [[ $? -ne 0 ]] && ok "truncated safetensors refused: $(cat "$tmp/err")" || bad "truncated safetensors refused"
printf 'garbage' > "$tmp/g.safetensors"
"$bin" kv import "$tmp/b.snap" "$tmp/g.safetensors" "$tmp/x.snap" 2>"$tmp/err"; [[ $? -ne 0 ]] && grep -q "safetensors" "$tmp/err" && ok "garbage refused" || bad "garbage refused"

echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
