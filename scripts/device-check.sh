#!/usr/bin/env bash
# device-check.sh: builds, checks and times the CUDA backend in one call on
# a GPU machine (see docs/CUDA.md), side by side with llama.cpp's CUDA build.
#
# Needs the host binaries from scripts/build.sh (samepage, test_cuda_ops,
# synth_gguf) in $SP_BIN (default build/); compiles libsamepage_cuda.so here
# with nvcc. llama.cpp (optional), one of:
#   LLAMA_BENCH=path/to/llama-bench   an already built llama-bench (its libs beside it)
#   LLAMA_SRC=path/to/llama.cpp       source to build llama-bench from, in the
#                                     background while the checks run
# Logs and JSON go to $OUT (or ./device-out); the last lines are a summary
# and a table: our tok/s, llama.cpp's and the ratio.
# Usage: scripts/device-check.sh [quick]   (quick: no compute-sanitizer run)
# Time limits (seconds from the start): SP_DEADLINE (default 560) for the
# whole script, LLAMA_BUILD_DEADLINE (default 400) for llama.cpp's build.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"; cd "$root"
out="${OUT:-$root/device-out}"; mkdir -p "$out/logs"
b="$(cd "${SP_BIN:-build}" && pwd)"; lib=$b/libsamepage_cuda.so; sp=$b/samepage; mdir=/tmp/sp-models; mkdir -p $mdir
export LD_LIBRARY_PATH="$b:${LD_LIBRARY_PATH:-}" # the server libraries packed beside the binaries
export PATH=/usr/local/cuda/bin:$PATH
t_start=$(date +%s); elapsed() { echo $(( $(date +%s) - t_start )); }
deadline=${SP_DEADLINE:-560}; lcp_deadline=${LLAMA_BUILD_DEADLINE:-400}
summary=(); add() { summary+=("$*"); echo "== [$(elapsed)s] $*"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $out/logs/card.txt
nvcc --version | tail -2; cmake --version | head -1; date -u +%FT%TZ | tee $out/logs/date.txt

# ---- 0. llama.cpp's llama-bench (background build when only the source came) ----
lcp_bench="${LLAMA_BENCH:-}"; lcp_pid=""
if [ -z "$lcp_bench" ] && [ -n "${LLAMA_SRC:-}" ] && [ -d "${LLAMA_SRC:-}" ]; then
  setsid bash -c "cmake -S '$LLAMA_SRC' -B /tmp/lcp-build -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=on \
      -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
      -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DGGML_CUDA_NCCL=OFF \
      && cmake --build /tmp/lcp-build --target llama-bench -j16" > $out/logs/llama_build.txt 2>&1 &
  lcp_pid=$!
  lcp_bench=/tmp/lcp-build/bin/llama-bench
fi

# ---- 1. build libsamepage_cuda.so with nvcc (resource report kept) ----
t0=$(date +%s.%N); : > /tmp/ptxas.txt
SP_TEST_HOOKS=1 scripts/build-cuda-lib.sh $lib /tmp/ptxas.txt || { add "BUILD FAIL"; grep -i error /tmp/ptxas.txt | head -20; exit 1; }
add "build: $(python3 -c "import time;print(round(time.time()-$t0,1))") s; spills: $(grep -c 'bytes spill stores' /tmp/ptxas.txt) reports, nonzero: $(grep -E '[1-9][0-9]* bytes spill stores' /tmp/ptxas.txt | wc -l)"
cp /tmp/ptxas.txt $out/logs/ptxas.txt
export SP_CUDA_LIB=$lib

# ---- 2. op parity vs the CPU backend (+ bad index, hostile list, coherence, device-local) ----
timeout 120 $b/test_cuda_ops > $out/logs/test_cuda_ops.txt 2>&1; rc=$?
grep -E "FAIL|pointer_identity|coherence|device-local|cases failed" $out/logs/test_cuda_ops.txt
add "test_cuda_ops rc=$rc: $(tail -1 $out/logs/test_cuda_ops.txt)"
# A writer racing the index tensors (a shared file page) while get_rows,
# set_rows and attention run on the GPU (issue 13, read once).
timeout 300 $b/test_cpu_read_once race-cuda > $out/logs/test_cuda_read_once.txt 2>&1; rc=$?
grep -E "ran,|FAIL" $out/logs/test_cuda_read_once.txt
add "test_cpu_read_once race-cuda rc=$rc: $(tail -1 $out/logs/test_cuda_read_once.txt)"
# One "same list" decision per submit (issue 14): lists changed in one byte
# between repeats run as changed, on CUDA graphs and through a worker.
for iso in none process; do
  SP_WORKER_EXE=$b/samepage-worker timeout 60 $sp exec --backend cuda --isolation $iso $b/guests/test_repeat_lists.wasm \
    > $out/logs/repeat_lists_$iso.txt 2>&1; rc=$?
  grep FAIL $out/logs/repeat_lists_$iso.txt | head -5
  add "repeat_lists cuda isolation=$iso rc=$rc: $(grep -c '^ok' $out/logs/repeat_lists_$iso.txt) ok"
done
timeout 60 $sp bench zerocopy --backend cuda > $out/logs/zerocopy.txt 2>&1; add "bench zerocopy cuda rc=$?: $(grep -iE 'identity|RSS' $out/logs/zerocopy.txt | tr -s ' ' | tr '\n' ';')"

# ---- 3. synthetic models ----
$b/synth_gguf --out $mdir/smol-q4_1.gguf --preset smollm2-135m --type q4_1 >/dev/null
for t in q8_0 q4_0 f16; do $b/synth_gguf --out $mdir/l1b-$t.gguf --preset llama-3.2-1b --type $t >/dev/null; done
ls -la $mdir >> $out/logs/models.txt

# ---- 4. end to end: greedy text cuda vs cpu ----
# Random synthetic weights give nearly flat logits: near-ties that summation
# order alone can flip, after which the texts go their own ways. The first
# difference is reported; tests/test_llm_greedy.c is the near-tie-aware check
# on the real SmolLM2 (98 MB, over the 64 MiB a device call can carry).
prompt="The quick brown fox jumps over the lazy dog and then runs into the forest where"
e2e() { # model tag [VAR=value...]
  local model=$1 tag=$2; shift 2
  for be in cpu cuda; do
    env "$@" timeout 120 $sp run --backend $be -m $model --raw -n 48 --temp 0 --repeat-penalty 1 --json "$prompt" > $out/logs/e2e_${tag}_$be.json 2>$out/logs/e2e_${tag}_$be.err
  done
  python3 - "$out" "$tag" <<'PY'
import json,sys
o,tag=sys.argv[1],sys.argv[2]
try:
  rd=lambda be: json.loads(open(f'{o}/logs/e2e_{tag}_{be}.json','rb').read().decode('utf-8','replace'))['text']
  a,b=rd('cpu'),rd('cuda')
  n=next((i for i in range(min(len(a),len(b))) if a[i]!=b[i]), min(len(a),len(b)))
  print("e2e greedy %s 48 tokens: %s (first difference at char %d of %d)" % (tag, "MATCH" if a==b else "DIFFER", n, len(a)))
except Exception as e: print("e2e %s: error %s" % (tag, e))
PY
}
add "$(e2e $mdir/smol-q4_1.gguf smol-q4_1)"; tail -2 $out/logs/e2e_smol-q4_1_cuda.err
add "$(e2e $mdir/l1b-q8_0.gguf l1b-q8_0)"

# ---- 5. timings (after llama.cpp's build, so that nothing shares the CPU) ----
if [ -n "$lcp_pid" ]; then
  while kill -0 $lcp_pid 2>/dev/null && [ $(elapsed) -lt $lcp_deadline ]; do sleep 2; done
  if kill -0 $lcp_pid 2>/dev/null; then kill -- -$lcp_pid 2>/dev/null; add "llama.cpp build: not done by ${lcp_deadline}s, stopped (skipped)"; lcp_bench=""
  else add "llama.cpp build: done at $(elapsed)s: $(ls -la $lcp_bench 2>&1 | awk '{print $5, $9}')"; fi
  tail -3 $out/logs/llama_build.txt
fi
long=$(python3 -c "print(' '.join(['the cat sat on the mat and looked at the bird']*40))")
: > $out/logs/runs.jsonl
# Greedy (--temp 0) as llama-bench, which samples nothing; label "sampled" keeps
# the default sampler (top-k 40, top-p, min-p, temperature, repetition penalty).
bench() { # label model residency prompt [VAR=value...]: the median of 3 runs
  local label=$1 model=$2 res=$3 prompt=$4 greedy="--temp 0"; shift 4
  [ "$label" = sampled ] && greedy=""
  for rep in 1 2 3; do
    env "$@" timeout 120 $sp run --backend cuda --residency $res -m $model --raw -n 128 --batch 512 $greedy --json "$prompt" > /tmp/t$rep.json 2>/tmp/t.err
    cat /tmp/t.err >> $out/logs/runs.err
  done
  python3 - "$label" "$(basename $model .gguf)" "$res" "$out/logs/runs.jsonl" <<'PY' || echo "bench $label $model failed: $(tail -2 /tmp/t.err | tr '\n' ' ')"
import json,sys
label,model,res,path=sys.argv[1:]
runs=[json.loads(open('/tmp/t%d.json' % r,'rb').read().decode('utf-8','replace')) for r in (1,2,3)]
runs.sort(key=lambda d: d['decode_tok_s'])
d=runs[1]; assert d['prompt_tokens']>0
d['decode_tok_s_runs']=[r['decode_tok_s'] for r in runs]
d.update(label=label, name=model, residency=res); d.pop('text',None)
open(path,'a').write(json.dumps(d)+'\n')
print('%-8s %-10s %-8s prefill %5d tok %8.1f tok/s | decode %7.1f tok/s %6.3f ms/tok | resident %5.0f MiB | device-local %5.0f MiB' % (
  label, model, res, d['prompt_tokens'], d['prefill_tok_s'], d['decode_tok_s'], 1e3/max(d['decode_tok_s'],1e-9),
  d['resident_bytes']/1048576, d.get('device_local_bytes',0)/1048576))
PY
}
for m in smol-q4_1 l1b-q8_0 l1b-q4_0 l1b-f16; do
  add "$(bench short $mdir/$m.gguf weights "Hello there")"
  add "$(bench long $mdir/$m.gguf weights "$long")"
  add "$(bench mapped $mdir/$m.gguf weights "Hello there" SP_CUDA_NO_DEVICE_LOCAL=1)"
done
for m in smol-q4_1 l1b-q8_0; do add "$(bench none $mdir/$m.gguf none "Hello there")"; done
add "$(bench sampled $mdir/l1b-q8_0.gguf weights "Hello there")"
# prefill as llama-bench's pp512 measures it: 512 tokens, warm (median of 3 after a first run)
for m in smol-q4_1 l1b-q8_0 l1b-q4_0 l1b-f16; do
  timeout 120 $sp bench prefill --backend cuda --model $mdir/$m.gguf --tokens 512 --runs 4 --json \
    > $out/logs/prefill_$m.json 2>>$out/logs/prefill.err
  add "prefill $m rc=$?: $(cat $out/logs/prefill_$m.json)"
done
SP_CUDA_NO_CUBLAS=1 timeout 120 $sp bench prefill --backend cuda --model $mdir/l1b-q8_0.gguf --tokens 512 --runs 4 --json \
  > $out/logs/prefill_tiles.json 2>>$out/logs/prefill.err
add "prefill l1b-q8_0 with our own tiles (SP_CUDA_NO_CUBLAS=1): $(cat $out/logs/prefill_tiles.json)"
# A/B in the same call: fusion, staging, PDL and repacking off
for v in SP_CUDA_NO_FUSION SP_CUDA_NO_STAGING SP_CUDA_NO_PDL SP_CUDA_NO_REPACK; do
  add "$(bench ${v#SP_CUDA_} $mdir/l1b-q8_0.gguf weights "Hello there" $v=1)"
done
add "$(bench NO_REPACK $mdir/l1b-q4_0.gguf weights "Hello there" SP_CUDA_NO_REPACK=1)"
add "$(bench Q8_ASIS $mdir/l1b-q8_0.gguf weights "Hello there" SP_CUDA_REPACK_Q8=0)"
# where the GPU time goes: per decode list (graphs on), then per op (graphs off)
for t in 1; do
  for m in l1b-q8_0 smol-q4_1; do
    SP_CUDA_TIMING=$t timeout 60 $sp run --backend cuda -m $mdir/$m.gguf --raw -n 64 --temp 0 "Hello there" > /dev/null 2> $out/logs/timing${t}_$m.txt
    grep "cuda timing" $out/logs/timing${t}_$m.txt | sed "s/^/$m: /"
    add "timing$t $m: $(grep 'repeated lists' $out/logs/timing${t}_$m.txt | sed 's/samepage: cuda timing: //') | $(grep -o 'decode.*ms/token)' $out/logs/timing${t}_$m.txt)"
  done
done

# ---- 6. llama.cpp, same card, same files ----
if [ -n "$lcp_bench" ] && [ -x "$lcp_bench" ]; then
  export LD_LIBRARY_PATH="$(dirname $lcp_bench):/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib:${LD_LIBRARY_PATH:-}"
  ldd $lcp_bench | grep "not found" && add "llama-bench: missing libraries (above)"
  for m in smol-q4_1 l1b-q8_0 l1b-q4_0 l1b-f16; do
    [ $(elapsed) -lt $((deadline - 60)) ] || { add "llama-bench $m: skipped (time)"; continue; }
    timeout 90 $lcp_bench -m $mdir/$m.gguf -p 512 -n 128 -ngl 99 -o json > $out/logs/llama_$m.json 2>>$out/logs/llama_bench.err
    add "llama-bench $m rc=$?: $(python3 -c "import json;print(' | '.join('%s %.1f tok/s' % ('pp%d'%r['n_prompt'] if r['n_prompt'] else 'tg%d'%r['n_gen'], r['avg_ts']) for r in json.load(open('$out/logs/llama_$m.json'))))" 2>&1 | tail -1)"
  done
fi

# ---- 6b. where the decode time goes: nsys kernel summary of one greedy run (if nsys is there) ----
nsys=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
if [ -n "$nsys" ] && [ $(elapsed) -lt $((deadline - 120)) ]; then
  timeout 90 $nsys profile -t cuda --cuda-graph-trace=node -o /tmp/sp-prof -f true $sp run --backend cuda -m $mdir/l1b-q8_0.gguf \
    --raw -n 64 --temp 0 "Hello there" > $out/logs/nsys_run.txt 2>&1
  timeout 60 $nsys stats -r cuda_gpu_kern_sum,cuda_api_sum -f csv -o /tmp/sp-prof-stats /tmp/sp-prof.nsys-rep > /dev/null 2>&1
  cp /tmp/sp-prof-stats*.csv $out/logs/ 2>/dev/null
  python3 - /tmp/sp-prof-stats_cuda_gpu_kern_sum.csv <<'PY' | tee $out/logs/nsys_top.txt
import csv,sys
try:
  rows=list(csv.DictReader(open(sys.argv[1])))
  tot=sum(float(r['Total Time (ns)']) for r in rows)
  print('nsys: %d kernel launches, %.1f ms GPU time' % (sum(int(r['Instances']) for r in rows), tot/1e6))
  for r in rows[:12]: print('  %5.1f%% %8d x %8.1f us  %s' % (float(r['Time (%)']), int(r['Instances']), float(r['Avg (ns)'])/1e3, r['Name'][:90]))
except Exception as e: print('nsys stats: %s' % e)
PY
  add "$(head -1 $out/logs/nsys_top.txt 2>/dev/null)"
fi

# ---- 7. compute-sanitizer memcheck of a short generation (if time is left) ----
if [ "${1:-}" != quick ] && command -v compute-sanitizer >/dev/null && [ $(elapsed) -lt $((deadline - 150)) ]; then
  timeout $((deadline - $(elapsed) - 20)) compute-sanitizer --tool memcheck --error-exitcode 9 $sp run --backend cuda -m $mdir/smol-q4_1.gguf --raw -n 6 "$prompt" > $out/logs/memcheck.txt 2>&1
  add "memcheck rc=$?: $(grep -E 'ERROR SUMMARY' $out/logs/memcheck.txt)"
fi

# ---- 7b. the hostile-guest suite on the GPU under compute-sanitizer ----
# (test_hostile and its guests in $SP_BIN and $SP_BIN/guests, when carried)
if [ "${1:-}" != quick ] && [ -x $b/test_hostile ] && command -v compute-sanitizer >/dev/null && [ $(elapsed) -lt $((deadline - 120)) ]; then
  SP_TEST_BACKEND=cuda SP_GUEST_DIR=$b/guests timeout $((deadline - $(elapsed) - 20)) compute-sanitizer --tool memcheck \
    --error-exitcode 9 $b/test_hostile > $out/logs/hostile_cuda.txt 2>&1
  add "hostile suite on cuda under memcheck rc=$?: $(grep -E 'checks passed' $out/logs/hostile_cuda.txt | tail -1) $(grep -E 'ERROR SUMMARY' $out/logs/hostile_cuda.txt | tail -1)"
  grep -E "^FAIL" $out/logs/hostile_cuda.txt | head -10
fi

# ---- 8. the table ----
python3 - "$out" > $out/table.txt <<'PY'
import json,sys,os
o=sys.argv[1]
runs=[json.loads(l) for l in open(o+'/logs/runs.jsonl')]
def ours(name,label,key):
  r=[x for x in runs if x['name']==name and x['label']==label]; return r[0][key] if r else None
print('| model | decode tok/s: ours (device-local) | ours (mapped, before) | llama.cpp tg128 | ratio | prefill 512 tok/s: ours (warm) | llama.cpp pp512 | ratio |')
print('|---|---|---|---|---|---|---|---|')
for m in ['smol-q4_1','l1b-q8_0','l1b-q4_0','l1b-f16']:
  lt=lp=None
  try:
    for r in json.load(open(f'{o}/logs/llama_{m}.json')):
      if r['n_gen']: lt=r['avg_ts']
      else: lp=r['avg_ts']
  except Exception: pass
  d,dm=ours(m,'short','decode_tok_s'),ours(m,'mapped','decode_tok_s')
  try: p=json.load(open(f'{o}/logs/prefill_{m}.json'))['warm_tok_s']
  except Exception: p=None
  f=lambda v:'%.1f'%v if v else '-'
  rt=lambda a,b:'%.2fx'%(a/b) if a and b else '-'
  print(f'| {m} | {f(d)} | {f(dm)} | {f(lt)} | {rt(d,lt)} | {f(p)} | {f(lp)} | {rt(p,lp)} |')
PY
echo; echo "==== summary ($(cat $out/logs/card.txt), $(cat $out/logs/date.txt), $(elapsed) s) ===="; printf '%s\n' "${summary[@]}"
echo; cat $out/table.txt
tar czf $out/logs.tgz -C $out logs && rm -rf $out/logs
