#!/usr/bin/env bash
# device-kquant-check.sh: the GPU half of issue 15 in one call: K-quant and
# i-quant kernels on CUDA (op parity against the CPU backend), greedy text
# CUDA vs CPU on synthetic models of every new type and architecture, and
# decode/prefill speed on the files people download (Q4_K_M, Q6_K; Llama,
# Qwen, Gemma shapes) side by side with llama.cpp's CUDA build.
#
# Needs the host binaries of scripts/pack-device.sh unpacked in $SP_BIN;
# compiles libsamepage_cuda.so here with nvcc. llama.cpp (optional):
#   LLAMA_SRC=path/to/llama.cpp   built here in the background (CUDA, sm_90)
#   LLAMA_BENCH=path/to/llama-bench  an already built one
# Logs and JSON go to $OUT (or ./device-out); the last lines are a table.
# Time limits (seconds from the start): SP_DEADLINE (default 580),
# LLAMA_BUILD_DEADLINE (default 420).
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"; cd "$root"
out="${OUT:-$root/device-out}"; mkdir -p "$out/logs"; log=$out/logs
b="$(cd "${SP_BIN:-build}" && pwd)"; sp=$b/samepage; mdir=/tmp/kq-models; mkdir -p $mdir
export PATH=/usr/local/cuda/bin:$PATH
t_start=$(date +%s); elapsed() { echo $(( $(date +%s) - t_start )); }
deadline=${SP_DEADLINE:-580}; lcp_deadline=${LLAMA_BUILD_DEADLINE:-420}
summary=(); add() { summary+=("$*"); echo "== [$(elapsed)s] $*"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $log/card.txt
date -u +%FT%TZ | tee $log/date.txt

# ---- 0. llama.cpp's llama-bench, built in the background ----
lcp_bench="${LLAMA_BENCH:-}"; lcp_pid=""
if [ -z "$lcp_bench" ] && [ -d "${LLAMA_SRC:-/nonexistent}" ]; then
  setsid bash -c "cmake -S '$LLAMA_SRC' -B /tmp/lcp-build -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=on \
      -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
      -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DGGML_CUDA_NCCL=OFF \
      && cmake --build /tmp/lcp-build --target llama-bench -j12" > $log/llama_build.txt 2>&1 &
  lcp_pid=$!; lcp_bench=/tmp/lcp-build/bin/llama-bench
fi

# ---- 1. our CUDA library ----
t0=$(date +%s)
SP_TEST_HOOKS=1 scripts/build-cuda-lib.sh $b/libsamepage_cuda.so $log/ptxas.txt > $log/build.txt 2>&1 \
  || { add "BUILD FAIL"; grep -i error $log/build.txt $log/ptxas.txt | head -30; exit 1; }
add "build: $(( $(date +%s) - t0 )) s; nonzero spills: $(grep -E '[1-9][0-9]* bytes spill stores' $log/ptxas.txt | wc -l)"
export SP_CUDA_LIB=$b/libsamepage_cuda.so

# ---- 2. op parity, every type and op, CUDA vs CPU ----
timeout 150 $b/test_cuda_ops > $log/test_cuda_ops.txt 2>&1; rc=$?
grep -E "^FAIL" $log/test_cuda_ops.txt | head -25
add "test_cuda_ops rc=$rc: $(tail -1 $log/test_cuda_ops.txt)"

# ---- 3. synthetic models ----
for t in q4_k_m q6_k; do $b/synth_gguf --out $mdir/l1b-$t.gguf --preset llama-3.2-1b --type $t >/dev/null; done
$b/synth_gguf --out $mdir/qwen25-q4_k_m.gguf --preset qwen2.5-0.5b --type q4_k_m >/dev/null
$b/synth_gguf --out $mdir/qwen3-q4_k_m.gguf --preset qwen3-0.6b --type q4_k_m >/dev/null
$b/synth_gguf --out $mdir/gemma3-q4_k_m.gguf --preset gemma-3-270m --type q4_k_m >/dev/null
for t in q2_k q3_k q4_k q5_k q6_k q5_0 q5_1 iq4_nl iq4_xs; do
  $b/synth_gguf --out $mdir/smol-$t.gguf --preset smollm2-135m --type $t >/dev/null
done
ls -la $mdir > $log/models.txt

# ---- 4. greedy text, CUDA vs CPU ----
# Random weights give near-flat logits, so summation order can flip a near
# tie; the first differing character is reported, not only match/differ.
prompt="The quick brown fox jumps over the lazy dog and then runs into the forest where"
e2e() { # tag
  for be in cpu cuda; do
    timeout 120 $sp run --backend $be -m $mdir/$1.gguf --raw -n 32 --temp 0 --repeat-penalty 1 --json "$prompt" \
      > $log/e2e_$1_$be.json 2>$log/e2e_$1_$be.err
  done
  python3 - $log $1 <<'PY'
import json,sys
o,tag=sys.argv[1:]
try:
  rd=lambda be: json.loads(open(f'{o}/e2e_{tag}_{be}.json','rb').read().decode('utf-8','replace').strip().splitlines()[-1])['text']
  a,b=rd('cpu'),rd('cuda')
  n=next((i for i in range(min(len(a),len(b))) if a[i]!=b[i]), min(len(a),len(b)))
  print("e2e %-14s %s (first difference at char %d of %d)" % (tag, "MATCH " if a==b else "DIFFER", n, len(a)))
except Exception as e: print("e2e %s: error %s" % (tag, e))
PY
}
for m in smol-q2_k smol-q3_k smol-q4_k smol-q5_k smol-q6_k smol-q5_0 smol-q5_1 smol-iq4_nl smol-iq4_xs \
         qwen25-q4_k_m qwen3-q4_k_m gemma3-q4_k_m l1b-q4_k_m; do add "$(e2e $m)"; done
tail -3 $log/e2e_gemma3-q4_k_m_cuda.err

# ---- 5. timings, after llama.cpp's build (nothing else on the CPU) ----
if [ -n "$lcp_pid" ]; then
  while kill -0 $lcp_pid 2>/dev/null && [ $(elapsed) -lt $lcp_deadline ]; do sleep 2; done
  if kill -0 $lcp_pid 2>/dev/null; then kill -- -$lcp_pid 2>/dev/null; add "llama.cpp build: not done by ${lcp_deadline}s (skipped)"; lcp_bench=""
  else add "llama.cpp build done at $(elapsed)s"; tail -2 $log/llama_build.txt; fi
fi
long=$(python3 -c "print(' '.join(['the cat sat on the mat and looked at the bird']*40))")
: > $log/runs.jsonl
bench() { # label model prompt [extra args]: median decode of 3 runs of 128 tokens
  local label=$1 model=$2 prompt=$3; shift 3
  for rep in 1 2 3; do
    timeout 60 $sp run --backend cuda -m $mdir/$model.gguf --raw -n 128 --batch 512 "$@" --json "$prompt" > /tmp/t$rep.json 2>>$log/runs.err
  done
  python3 - "$label" "$model" $log/runs.jsonl <<'PY' || echo "bench $label $model failed"
import json,sys
label,model,path=sys.argv[1:]
runs=sorted((json.loads(open('/tmp/t%d.json' % r,'rb').read().decode('utf-8','replace').strip().splitlines()[-1]) for r in (1,2,3)), key=lambda d: d['decode_tok_s'])
d=runs[1]; d['decode_tok_s_runs']=[r['decode_tok_s'] for r in runs]; d.update(label=label, name=model); d.pop('text',None)
open(path,'a').write(json.dumps(d)+'\n')
print('%-8s %-14s prompt %4d tok | decode %7.1f tok/s' % (label, model, d['prompt_tokens'], d['decode_tok_s']))
PY
}
models="l1b-q4_k_m l1b-q6_k qwen25-q4_k_m gemma3-q4_k_m"
for m in $models; do
  add "$(bench short $m "Hello there" --temp 0)"
  add "$(bench long $m "$long" --temp 0)"
  add "$(bench sampled $m "Hello there" --seed 1)"
  timeout 90 $sp bench prefill --backend cuda --model $mdir/$m.gguf --tokens 512 --runs 4 --json > $log/prefill_$m.json 2>>$log/prefill.err
  add "prefill $m rc=$?: $(cat $log/prefill_$m.json)"
done
if [ -n "$lcp_bench" ] && [ -x "$lcp_bench" ]; then
  export LD_LIBRARY_PATH="$(dirname $lcp_bench):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
  for m in $models; do
    [ $(elapsed) -lt $((deadline - 45)) ] || { add "llama-bench $m: skipped (time)"; continue; }
    timeout 90 $lcp_bench -m $mdir/$m.gguf -p 512 -n 128 -d 0,440 -ngl 99 -r 3 -o json > $log/llama_$m.json 2>>$log/llama_bench.err
    add "llama-bench $m rc=$?"
  done
fi

# ---- 6. the table ----
python3 - $log $models <<'PY' | tee $out/table.txt
import json,sys,os
log,models=sys.argv[1],sys.argv[2:]
runs=[json.loads(l) for l in open(f'{log}/runs.jsonl')]
def ours(label,m):
  r=[x for x in runs if x['label']==label and x['name']==m]; return r[0]['decode_tok_s'] if r else None
def pre(m):
  try: return json.load(open(f'{log}/prefill_{m}.json')).get('warm_tok_s')
  except Exception: return None
def lcp(m,kind,depth):
  try: rows=json.load(open(f'{log}/llama_{m}.json'))
  except Exception: return None
  for r in rows:
    if kind=='tg' and r['n_gen'] and r.get('n_depth',0)==depth: return r['avg_ts']
    if kind=='pp' and r['n_prompt'] and r.get('n_depth',0)==depth: return r['avg_ts']
  return None
f=lambda v: '%8.1f' % v if v else '       -'
q=lambda a,b: '%5.2fx' % (a/b) if a and b else '    -'
print('%-14s | %s %s %s | %s %s %s | %s %s %s | %s' % ('model','decode','lcp tg','ratio','long','lcp d440','ratio','pp512','lcp pp','ratio','sampled'))
for m in models:
  a,b=ours('short',m),lcp(m,'tg',0); c,d=ours('long',m),lcp(m,'tg',440); e,g=pre(m),lcp(m,'pp',0)
  print('%-14s | %s %s %s | %s %s %s | %s %s %s | %s' % (m,f(a),f(b),q(a,b),f(c),f(d),q(c,d),f(e),f(g),q(e,g),f(ours('sampled',m))))
PY
echo; printf '%s\n' "${summary[@]}"
