#!/bin/sh
# test_sampling_paths.sh SAMEPAGE MODEL: the sampler's two paths through the
# real guest and model give the same text: the candidates the forward list
# gathers (SP_OP_TOPK, the default) and the whole logits row read back
# (--sample-full), for several seeds and sampler settings, on each CPU
# kernel table; and `samepage bench decode` runs and prints its JSON.
sp=$1; model=$2
[ -r "$model" ] || { echo "skip: no model at $model"; exit 77; }
fail=0; n=0
# every setting on the best table; the other tables (whose logits are the
# same bits) with one setting
for case in "auto|--seed 1" "auto|--seed 2 --top-k 200 --top-p 0.9" "auto|--seed 3 --temp 1.5 --min-p 0 --repeat-penalty 1.3" \
            "auto|--seed 4 --top-k 5 --repeat-last-n 16" "auto|--seed 5 --temp 0 --repeat-penalty 1.5" \
            "generic|--seed 6 --repeat-penalty 1.2 --top-k 60" "avx2|--seed 7"; do
  simd=${case%%|*}; settings=${case#*|}
  a=$(SP_CPU_SIMD=$simd "$sp" run --backend cpu -m "$model" --raw -n 32 $settings "The old lighthouse keeper" 2>/dev/null)
  b=$(SP_CPU_SIMD=$simd "$sp" run --backend cpu -m "$model" --raw -n 32 $settings --sample-full "The old lighthouse keeper" 2>/dev/null)
  n=$((n + 1))
  if [ "$a" = "$b" ] && [ -n "$a" ]; then echo "ok   $simd [$settings]"
  else echo "FAIL $simd [$settings]"; echo "  candidates: $a"; echo "  full row:   $b"; fail=$((fail + 1)); fi
done
out=$("$sp" bench decode --backend cpu --model "$model" --depths 0,40 --tokens 4 --runs 1 --sampled --json)
n=$((n + 1))
if [ "$(echo "$out" | grep -c '"bench": "decode"')" = 2 ]; then echo "ok   bench decode prints a line per depth"
else echo "FAIL bench decode: $out"; fail=$((fail + 1)); fi
echo "$((n - fail)) of $n passed"
[ $fail = 0 ]
