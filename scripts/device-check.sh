#!/usr/bin/env bash
# device-check.sh: builds, checks and times the CUDA backend in one call on
# a GPU machine (see docs/CUDA.md). Needs build/ from scripts/build.sh (the
# host binary, guests, test_cuda_ops, synth_gguf) carried over; compiles
# libsamepage_cuda.so here with nvcc. Logs go to $OUT (or ./device-out).
# Usage: scripts/device-check.sh [quick]   (quick: no sanitizer, fewer timings)
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"; cd "$root"
out="${OUT:-$root/device-out}"; mkdir -p "$out"
b=build; lib=$b/libsamepage_cuda.so; sp=$b/samepage; mdir=/tmp/sp-models; mkdir -p $mdir
export PATH=/usr/local/cuda/bin:$PATH
summary=(); add() { summary+=("$*"); echo "== $*"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $out/card.txt
nvcc --version | tail -2; cmake --version | head -1

# ---- 1. build libsamepage_cuda.so with nvcc (resource report kept) ----
t0=$(date +%s.%N)
objs=()
for f in src/backend/cuda/*.cu; do
  o=/tmp/$(basename $f .cu).o
  nvcc -O3 -arch=sm_90 -std=c++17 -Xcompiler -fPIC,-fvisibility=hidden -Xptxas -v -Iinclude -Isrc \
    -c $f -o $o 2>>/tmp/ptxas.txt || { add "BUILD FAIL $f"; grep -i error /tmp/ptxas.txt | head -20; exit 1; }
  objs+=($o)
done
for f in src/error.c src/dtype.c; do o=/tmp/$(basename $f .c).o; gcc -O2 -fPIC -fvisibility=hidden -Iinclude -Isrc -c $f -o $o; objs+=($o); done
nvcc -shared -arch=sm_90 -cudart static -o $lib "${objs[@]}" -lpthread || { add "LINK FAIL"; exit 1; }
add "build: $(python3 -c "import time;print(round(time.time()-$t0,1))") s; spills: $(grep -c 'bytes spill stores' /tmp/ptxas.txt) reports, nonzero: $(grep -E '[1-9][0-9]* bytes spill stores' /tmp/ptxas.txt | wc -l)"
mkdir -p $out/logs; cp /tmp/ptxas.txt $out/logs/ptxas.txt
export SP_CUDA_LIB=$root/$lib

# ---- 2. op parity vs the CPU backend (+ bad index, hostile list, coherence) ----
timeout 120 $b/test_cuda_ops > $out/logs/test_cuda_ops.txt 2>&1; rc=$?
grep -E "FAIL|pointer_identity|cases failed" $out/logs/test_cuda_ops.txt
add "test_cuda_ops rc=$rc: $(tail -1 $out/logs/test_cuda_ops.txt)"
timeout 60 $sp bench zerocopy --backend cuda > $out/logs/zerocopy.txt 2>&1; add "bench zerocopy cuda rc=$?: $(grep -iE 'identity|RSS' $out/logs/zerocopy.txt | tr -s ' ' | tr '\n' ';')"

# ---- 3. synthetic models ----
$b/synth_gguf --out $mdir/smol-q4_1.gguf --preset smollm2-135m --type q4_1 >/dev/null
for t in q8_0 q4_0 f16; do $b/synth_gguf --out $mdir/l1b-$t.gguf --preset llama-3.2-1b --type $t >/dev/null; done
ls -la $mdir >> $out/logs/models.txt

# ---- 4. end to end: greedy tokens cuda == cpu ----
prompt="The quick brown fox jumps over the lazy dog and then runs into the forest where"
for be in cpu cuda; do
  timeout 120 $sp run --backend $be -m $mdir/smol-q4_1.gguf --raw -n 48 --json "$prompt" > $out/logs/e2e_$be.json 2>$out/logs/e2e_$be.err
done
python3 - "$out" <<'PY' | tee -a $out/e2e.txt
import json,sys
o=sys.argv[1]
try:
  a=json.load(open(o+'/logs/e2e_cpu.json'))['text']; b=json.load(open(o+'/logs/e2e_cuda.json'))['text']
  n=next((i for i in range(min(len(a),len(b))) if a[i]!=b[i]), min(len(a),len(b)))
  print("e2e greedy smollm2-q4_1 48 tokens: %s (first difference at char %d of %d)" % ("MATCH" if a==b else "DIFFER", n, len(a)))
except Exception as e: print("e2e: error", e)
PY
add "$(tail -1 $out/e2e.txt)"; tail -2 $out/logs/e2e_cuda.err

# ---- 5. compute-sanitizer memcheck of a short generation ----
if [ "${1:-}" != quick ] && command -v compute-sanitizer >/dev/null; then
  timeout 240 compute-sanitizer --tool memcheck --error-exitcode 9 $sp run --backend cuda -m $mdir/smol-q4_1.gguf --raw -n 6 "$prompt" > $out/logs/memcheck.txt 2>&1
  add "memcheck rc=$?: $(grep -E 'ERROR SUMMARY' $out/logs/memcheck.txt)"
fi

# ---- 6. timings ----
long=$(python3 -c "print(' '.join(['the cat sat on the mat and looked at the bird']*40))")
bench() { # model residency [prompt]
  timeout 120 $sp run --backend cuda --residency $2 -m $1 --raw -n 128 --batch 512 --json "${3:-$long}" > /tmp/t.json 2>/tmp/t.err; cat /tmp/t.err >> $out/logs/runs.err
  [ "$(python3 -c "import json;print(json.load(open('/tmp/t.json'))['prompt_tokens'])" 2>/dev/null)" -gt 0 ] 2>/dev/null && python3 -c "import json;d=json.load(open('/tmp/t.json'));print('%-14s %-8s ${3:+short }prefill %5d tok %9.1f tok/s | decode %8.1f tok/s %6.3f ms/tok | resident %6.0f MiB %6.1f ms' % ('$(basename $1 .gguf)','$2',d['prompt_tokens'],d['prefill_tok_s'],d['decode_tok_s'],1e3/max(d['decode_tok_s'],1e-9),d['resident_bytes']/1048576,d['resident_ms']))" 2>/dev/null || { echo "bench $1 $2 failed: $(tail -2 /tmp/t.err | tr '\n' ' ')"; }
}
for m in smol-q4_1 l1b-q8_0 l1b-q4_0 l1b-f16; do
  for r in weights none; do r1=$(bench $mdir/$m.gguf $r); add "$r1"; echo "$r1" >> $out/timings.txt; done
done
for m in smol-q4_1 l1b-q8_0 l1b-q4_0 l1b-f16; do r1=$(bench $mdir/$m.gguf weights "Hello there"); add "$r1"; echo "$r1" >> $out/timings.txt; done
tar czf $out/logs.tgz -C $out logs && rm -rf $out/logs
echo; echo "==== summary ($(cat $out/card.txt)) ===="; printf '%s\n' "${summary[@]}"
