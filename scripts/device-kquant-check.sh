#!/usr/bin/env bash
# device-kquant-check.sh: the GPU half of issue 15 in one call: K-quant and
# i-quant kernels on CUDA (op parity against the CPU backend), logits CUDA
# vs CPU per position (tests/backend_parity.c) on synthetic models of every
# new type and architecture, and
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
export LD_LIBRARY_PATH="$b:${LD_LIBRARY_PATH:-}" # the server libraries packed beside the binaries
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
if [ -x $b/test_topk ]; then # the sampler's candidates op (issue 17), CUDA and CPU tables
  timeout 120 $b/test_topk > $log/test_topk.txt 2>&1; rc=$?
  grep -E "^FAIL|^note" $log/test_topk.txt | head -10; add "test_topk rc=$rc: $(tail -1 $log/test_topk.txt)"
fi

# ---- 3. synthetic models ----
for t in q4_k_m q6_k; do $b/synth_gguf --out $mdir/l1b-$t.gguf --preset llama-3.2-1b --type $t >/dev/null; done
$b/synth_gguf --out $mdir/qwen25-q4_k_m.gguf --preset qwen2.5-0.5b --type q4_k_m >/dev/null
$b/synth_gguf --out $mdir/qwen3-q4_k_m.gguf --preset qwen3-0.6b --type q4_k_m >/dev/null
$b/synth_gguf --out $mdir/gemma3-q4_k_m.gguf --preset gemma-3-270m --type q4_k_m >/dev/null
$b/synth_gguf --out $mdir/smol-q4_1.gguf --preset smollm2-135m --type q4_1 >/dev/null
for t in q5_0 q5_1 iq4_nl; do $b/synth_gguf --out $mdir/smol-$t.gguf --preset smollm2-135m --type $t >/dev/null; done
# SmolLM2's 576 and 1536 are not multiples of 256: a 512-wide variant for the 256-blocks
for t in q2_k q3_k q4_k q5_k q6_k iq4_xs; do
  $b/synth_gguf --out $mdir/smol512-$t.gguf --preset smollm2-135m --embd 512 --ff 1536 --heads 8 --kv-heads 4 --type $t >/dev/null
done
ls -la $mdir > $log/models.txt

if [[ " ${SP_PHASES:-checks suite bench} " == *" checks "* ]]; then
# ---- 4. logits, CUDA vs CPU, teacher-forced (tests/backend_parity.c) ----
parity() { # tag [VAR=value...]
  local m=$1; shift
  env "$@" timeout 120 $b/backend_parity $b/guests $mdir/$m.gguf cpu cuda 100 24 0.05 > $log/parity_$m${1:+_${1%%=*}}.txt 2>&1
  echo "parity $m${1:+ ($1)} rc=$?: $(grep -E '^prefill' $log/parity_$m${1:+_${1%%=*}}.txt | cut -c1-60) | $(grep -E '^decode' $log/parity_$m${1:+_${1%%=*}}.txt)"
}
for m in ${SP_PARITY_MODELS:-gemma3-q4_k_m qwen25-q4_k_m qwen3-q4_k_m smol512-q2_k smol512-q3_k smol512-q4_k smol512-q5_k \
         smol512-q6_k smol512-iq4_xs smol-q5_0 smol-q5_1 smol-iq4_nl smol-q4_1 l1b-q4_k_m}; do add "$(parity $m)"; done
# a model over the bound: which CUDA path moves it (each knob turns one off)
for m in gemma3-q4_k_m qwen25-q4_k_m; do
  grep -q "rc=0" <<<"$(printf '%s\n' "${summary[@]}" | grep "parity $m ")" && continue
  for v in SP_CUDA_NO_FUSION SP_CUDA_NO_FLASH SP_CUDA_NO_GRAPHS SP_CUDA_NO_REPACK SP_CUDA_NO_CUBLAS; do add "$(parity $m $v=1)"; done
done
# sampled decode: candidates (default) vs the whole logits row (--sample-full) vs greedy; same text?
for m in smol-q4_1 l1b-q4_k_m; do
  line="sampling $m:"
  for mode in "--temp 0" "--seed 3" "--seed 3 --sample-full"; do
    for rep in 1 2 3; do timeout 60 $sp run --backend cuda -m $mdir/$m.gguf --raw -n 256 $mode --json "Hello there" > /tmp/s$rep.json 2>/dev/null; done
    line+=" [$mode] $(python3 -c "
import json,hashlib
r=[json.loads(open('/tmp/s%d.json'%i).read().strip().splitlines()[-1]) for i in (1,2,3)]
print('%.0f tok/s text %s' % (sorted(x['decode_tok_s'] for x in r)[1], hashlib.md5(r[0].get('text','').encode()).hexdigest()[:8]))" 2>&1 | tail -1)"
  done
  add "$line"
done
fi
if [[ " ${SP_PHASES:-checks suite bench} " == *" ab "* ]] && [ -d "${AB_A:-/nonexistent}" ] && [ -f "${AB_PACK:-/nonexistent}" ]; then
# ---- 4a. decode before/after a change (SP_PHASES=ab; AB_A: the old side's dir for
# scripts/device-ab.sh, AB_PACK: this tree's scripts/pack-device.sh output) ----
  rm -rf /tmp/ab-new && mkdir -p /tmp/ab-new && cp -r src scripts include /tmp/ab-new/ && cp "$AB_PACK" /tmp/ab-new/spbin.tar.xz
  OUT=/tmp/abo timeout 200 scripts/device-ab.sh "$AB_A" /tmp/ab-new > $log/ab.txt 2>&1
  add "decode A/B rc=$?: $(tail -3 $log/ab.txt | tr '\n' ';')"; cp -r /tmp/abo/logs $log/ab 2>/dev/null
fi
if [[ " ${SP_PHASES:-checks suite bench} " == *" suite "* ]]; then
# ---- 4b. the rest of the CUDA suite on this build (SP_PHASES=suite) ----
SP_TEST_BACKEND=cuda SP_GUEST_DIR=$b/guests timeout 150 $b/test_hostile > $log/hostile.txt 2>&1
add "hostile suite on cuda rc=$?: $(grep -E 'checks passed' $log/hostile.txt | tail -1)"; grep -E "^FAIL" $log/hostile.txt | head -5
for iso in none process; do
  SP_WORKER_EXE=$b/samepage-worker timeout 60 $sp exec --backend cuda --isolation $iso $b/guests/test_repeat_lists.wasm > $log/repeat_$iso.txt 2>&1
  add "repeat_lists cuda isolation=$iso rc=$?: $(grep -c '^ok' $log/repeat_$iso.txt) ok, $(grep -c FAIL $log/repeat_$iso.txt) FAIL"
done
for iso in process; do
  SP_ISOLATION=$iso SP_WORKER_EXE=$b/samepage-worker timeout 120 $b/test_cuda_fault $b/guests $mdir/smol-q4_1.gguf > $log/fault_$iso.txt 2>&1
  add "test_cuda_fault isolation=$iso rc=$?: $(tail -1 $log/fault_$iso.txt)"
done
for staged in 1; do
  env $( ((staged)) || echo SP_CUDA_NO_STAGING=1) timeout 60 $b/test_cpu_read_once race-cuda > $log/race_$staged.txt 2>&1
  add "race-cuda staging=$staged rc=$?: $(tail -1 $log/race_$staged.txt)"
done
fi
[[ " ${SP_PHASES:-checks suite bench} " == *" bench "* ]] || { echo; printf '%s\n' "${summary[@]}"; exit 0; }

# ---- 5. timings, after llama.cpp's build (nothing else on the CPU) ----
if [ -n "$lcp_pid" ]; then
  while kill -0 $lcp_pid 2>/dev/null && [ $(elapsed) -lt $lcp_deadline ]; do sleep 2; done
  if kill -0 $lcp_pid 2>/dev/null; then kill -- -$lcp_pid 2>/dev/null; add "llama.cpp build: not done by ${lcp_deadline}s (skipped)"; lcp_bench=""
  else add "llama.cpp build done at $(elapsed)s"; tail -2 $log/llama_build.txt; fi
fi
# prompts of ~500 and ~1,200 tokens; llama.cpp is measured at our actual depths
mid=$(python3 -c "print(' '.join(['the cat sat on the mat and looked at the bird']*17))")
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
  add "$(bench mid $m "$mid" --temp 0)"
  add "$(bench long $m "$long" --temp 0)"
  add "$(bench sampled $m "Hello there" --seed 1)"
  timeout 90 $sp bench prefill --backend cuda --model $mdir/$m.gguf --tokens 512 --runs 4 --json > $log/prefill_$m.json 2>>$log/prefill.err
  add "prefill $m rc=$?: $(cat $log/prefill_$m.json)"
done
if [ -n "$lcp_bench" ] && [ -x "$lcp_bench" ]; then
  export LD_LIBRARY_PATH="$(dirname $lcp_bench):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
  for m in $models; do
    [ $(elapsed) -lt $((deadline - 45)) ] || { add "llama-bench $m: skipped (time)"; continue; }
    depths=$(python3 -c "import json,sys;r=[json.loads(l) for l in open('$log/runs.jsonl')];print(','.join(['0']+[str(x['prompt_tokens']) for x in r if x['name']=='$m' and x['label'] in ('mid','long')]))")
    timeout 90 $lcp_bench -m $mdir/$m.gguf -p 512 -n 128 -d $depths -ngl 99 -r 3 -o json > $log/llama_$m.json 2>>$log/llama_bench.err
    add "llama-bench $m rc=$?"
  done
fi

# ---- 6. the table ----
python3 - $log $models <<'PY' | tee $out/table.txt
import json,sys,os
log,models=sys.argv[1],sys.argv[2:]
runs=[json.loads(l) for l in open(f'{log}/runs.jsonl')]
def run(label,m):
  r=[x for x in runs if x['label']==label and x['name']==m]; return r[0] if r else {}
def ours(label,m): return run(label,m).get('decode_tok_s')
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
print('tok/s, H100; decode = 128 greedy tokens after a prompt of the given depth; llama.cpp: llama-bench tg128 -d DEPTH, pp512')
print('%-14s %5s | %8s %8s %6s | %8s %8s %6s' % ('model','depth','ours','llama','ratio','','',''))
for m in models:
  for label in ('short','mid','long'):
    d=run(label,m).get('prompt_tokens',0); a=ours(label,m); b=lcp(m,'tg',0 if label=='short' else d)
    print('%-14s %5d | %s %s %s  decode' % (m,d,f(a),f(b),q(a,b)))
  e,g=pre(m),lcp(m,'pp',0)
  print('%-14s %5d | %s %s %s  prefill' % (m,512,f(e),f(g),q(e,g)))
  print('%-14s %5s | %s %8s %6s  decode, default sampler (seed 1)' % (m,'short',f(ours('sampled',m)),'',''))
PY
echo; printf '%s\n' "${summary[@]}"
