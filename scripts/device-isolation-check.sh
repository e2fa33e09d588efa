#!/usr/bin/env bash
# device-isolation-check.sh: process isolation on a GPU machine, in one call
# (docs/CUDA.md, "Process isolation"). Each CUDA actor in a worker process:
#  - a GPU fault in one actor ends that actor alone (test_cuda_fault, both
#    ways: in-process, where a fault takes every CUDA actor of the process,
#    and isolated, where the other actor finishes);
#  - the hostile suite and greedy text are unchanged when isolated;
#  - what isolation costs, A/B in the same call: decode and prefill tok/s,
#    first-actor start, memory per actor, restore; llama.cpp beside them.
# Needs the host binaries of scripts/pack-device.sh in $SP_BIN; builds
# libsamepage_cuda.so with nvcc. LLAMA_BENCH=path/to/llama-bench (optional).
# Logs to $OUT/isolation (and isolation.tgz); the last lines are a summary
# and a table. Usage: device-isolation-check.sh [cost]  (cost: only the
# timings, sections 3 and 5)
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"; cd "$root"
out="${OUT:-$root/device-out}/isolation"; mkdir -p "$out"
b="$(cd "${SP_BIN:-build}" && pwd)"; sp=$b/samepage; mdir=/tmp/sp-models; mkdir -p $mdir
export LD_LIBRARY_PATH="$b:${LD_LIBRARY_PATH:-}" # the server libraries packed beside the binaries
export PATH=/usr/local/cuda/bin:$PATH SP_WORKER_EXE=$b/samepage-worker
t_start=$(date +%s); elapsed() { echo $(( $(date +%s) - t_start )); }
deadline=${SP_DEADLINE:-540}
summary=(); add() { summary+=("$*"); echo "== [$(elapsed)s] $*"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $out/card.txt
date -u +%FT%TZ | tee $out/date.txt; echo "commit ${SP_COMMIT:-unknown}" | tee $out/commit.txt
SP_TEST_HOOKS=1 scripts/build-cuda-lib.sh $b/libsamepage_cuda.so /tmp/ptxas.txt || { echo "BUILD FAIL"; exit 1; }
export SP_CUDA_LIB=$b/libsamepage_cuda.so
$b/synth_gguf --out $mdir/smol-q4_1.gguf --preset smollm2-135m --type q4_1 > /dev/null
$b/synth_gguf --out $mdir/l1b-q8_0.gguf --preset llama-3.2-1b --type q8_0 > /dev/null
smol=$mdir/smol-q4_1.gguf; l1b=$mdir/l1b-q8_0.gguf

only_cost=$([ "${1:-}" = cost ] && echo 1 || echo 0)
if [ $only_cost = 0 ]; then
# ---- 1. op parity (the backend itself), then a GPU fault, in-process and isolated ----
timeout 120 $b/test_cuda_ops > $out/test_cuda_ops.txt 2>&1
add "test_cuda_ops rc=$?: $(tail -1 $out/test_cuda_ops.txt)"; grep -E "^FAIL" $out/test_cuda_ops.txt | head -5
for iso in none process; do
  SP_ISOLATION=$iso timeout 180 $b/test_cuda_fault $b/guests $smol > $out/fault_$iso.txt 2>&1
  add "test_cuda_fault isolation=$iso rc=$?: $(tail -1 $out/fault_$iso.txt)"
  grep -E "actor [0-9]:|new cuda actor|^FAIL" $out/fault_$iso.txt | cut -c1-300
done

# ---- 2. the hostile suite and greedy text, isolated ----
SP_TEST_BACKEND=cuda SP_ISOLATION=process SP_GUEST_DIR=$b/guests timeout 200 $b/test_hostile > $out/hostile.txt 2>&1
add "hostile suite on cuda, isolated rc=$?: $(grep -E 'checks passed' $out/hostile.txt | tail -1)"; grep -E "^FAIL" $out/hostile.txt | head -5
prompt="The quick brown fox jumps over the lazy dog and then runs into the forest where"
text() { python3 -c "import json,sys; print(json.loads(open(sys.argv[1],'rb').read().decode('utf-8','replace'))['text'])" "$1" 2>/dev/null; }
for m in smol-q4_1 l1b-q8_0; do
  for iso in none process; do
    SP_ISOLATION=$iso timeout 120 $sp run --backend cuda -m $mdir/$m.gguf --raw -n 48 --temp 0 --repeat-penalty 1 --json "$prompt" \
      > $out/e2e_${m}_$iso.json 2> $out/e2e_${m}_$iso.err
  done
  a=$(text $out/e2e_${m}_none.json); c=$(text $out/e2e_${m}_process.json)
  add "greedy 48 tokens $m: isolated vs in-process: $([ -n "$a" ] && [ "$a" = "$c" ] && echo SAME || echo DIFFERS) (${#a} chars)"
done

fi
# ---- 3. cost, A/B in the same call: decode 128 tokens, median of 3, interleaved ----
: > $out/runs.jsonl
for m in l1b-q8_0 smol-q4_1; do
  for rep in 1 2 3; do
    for iso in none process; do
      SP_ISOLATION=$iso timeout 120 $sp run --backend cuda -m $mdir/$m.gguf --raw -n 128 --batch 512 --temp 0 --json "Hello there" \
        > /tmp/r.json 2>> $out/runs.err && python3 -c "
import json,sys; d=json.load(open('/tmp/r.json')); d.pop('text',None); d.update(name='$m', iso='$iso', rep=$rep); print(json.dumps(d))" >> $out/runs.jsonl
    done
  done
done
# prefill 512, warm: one actor put back to its loaded state before each run;
# and a fresh actor per run (isolated: a fresh worker, which repacks and
# uploads its own device copies, nothing being shared across processes)
for iso in none process; do
  for how in same fresh; do
    SP_ISOLATION=$iso timeout 120 $sp bench prefill --backend cuda --model $l1b --tokens 512 --runs 5 --json \
      $([ $how = same ] && echo --same-actor) > $out/prefill_${iso}_$how.json 2>> $out/runs.err
    add "prefill 512 l1b-q8_0 isolation=$iso actor=$how rc=$?: $(cut -c1-300 $out/prefill_${iso}_$how.json)"
  done
done

if [ $only_cost = 0 ]; then
# ---- 4. memory per actor and restore, isolated and not ----
for iso in none process; do
  SP_ISOLATION=$iso timeout 240 $sp bench actors --backend cuda --model $smol --counts 1,8 --json > $out/actors_$iso.json 2>> $out/actors.err
  add "bench actors isolation=$iso rc=$?: $(python3 -c "import json;d=json.load(open('$out/actors_$iso.json'));print('per actor %.1f MiB host, %.1f MiB device; rows %s' % (d['per_actor_anon_mib'], d.get('per_actor_device_mib',0), [(r['actors'], r.get('device_used_mib'), r.get('resident_mib'), r.get('shared_mib'), r.get('shared_hits')) for r in d['rows']]))" 2>&1 | tail -1)"
  SP_ISOLATION=$iso timeout 240 $sp bench actors --backend cuda --model $l1b --counts 1,4 --json > $out/actors_l1b_$iso.json 2>> $out/actors.err
  add "bench actors 1B isolation=$iso rc=$?: $(python3 -c "import json;d=json.load(open('$out/actors_l1b_$iso.json'));print('per actor %.1f MiB host, %.1f MiB device; rows %s' % (d['per_actor_anon_mib'], d.get('per_actor_device_mib',0), [(r['actors'], r.get('device_used_mib'), r.get('resident_mib'), r.get('shared_mib'), r.get('shared_hits')) for r in d['rows']]))" 2>&1 | tail -1)"
  [ $(elapsed) -lt $((deadline - 150)) ] || continue
  SP_ISOLATION=$iso timeout 200 $sp bench snapshot --backend cuda --model $smol --contexts 24,512 --json > $out/snapshot_$iso.json 2>> $out/snapshot.err
  add "bench snapshot isolation=$iso rc=$?: $(cut -c1-400 $out/snapshot_$iso.json)"
done
# saved isolated on CUDA, resumed in-process on the CPU
if SP_ISOLATION=process $sp run --backend cuda --model $smol --temp 0 --repeat-penalty 1 -n 16 --save /tmp/iso.snap "Hello there" > /dev/null 2>> $out/snap_err.txt; then
  own=$(SP_ISOLATION=process $sp run --backend cuda --model $smol --resume /tmp/iso.snap -n 24 --json "Go on." 2>>$out/snap_err.txt | tail -1 > /tmp/own.json; text /tmp/own.json)
  cpu=$($sp run --backend cpu --model $smol --resume /tmp/iso.snap -n 24 --json "Go on." 2>>$out/snap_err.txt | tail -1 > /tmp/cpu.json; text /tmp/cpu.json)
  add "saved isolated on cuda, resumed on the cpu: $([ -n "$own" ] && [ "$own" = "$cpu" ] && echo SAME || echo DIFFERS) (${#own} chars)"
else add "isolated save: FAILED $(tail -1 $out/snap_err.txt)"; fi

fi
# ---- 5. llama.cpp on the same card and files ----
if [ -n "${LLAMA_BENCH:-}" ] && [ -x "$LLAMA_BENCH" ] && [ $(elapsed) -lt $((deadline - 60)) ]; then
  export LD_LIBRARY_PATH="$(dirname $LLAMA_BENCH):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
  for m in l1b-q8_0 smol-q4_1; do
    timeout 90 $LLAMA_BENCH -m $mdir/$m.gguf -p 512 -n 128 -ngl 99 -o json > $out/llama_$m.json 2>> $out/llama.err
    add "llama-bench $m rc=$?"
  done
fi

[ $only_cost = 1 ] && deadline=0 # no memcheck
# ---- 6. memcheck of an isolated generation (the worker is the child) ----
if command -v compute-sanitizer > /dev/null && [ $(elapsed) -lt $((deadline - 90)) ]; then
  SP_ISOLATION=process timeout 80 compute-sanitizer --tool memcheck --target-processes all --error-exitcode 9 \
    $sp run --backend cuda -m $smol --raw -n 6 "$prompt" > $out/memcheck.txt 2>&1
  add "memcheck, isolated rc=$?: $(grep -E 'ERROR SUMMARY' $out/memcheck.txt | tr '\n' ' ')"
fi

python3 - "$out" > $out/table.txt <<'PY'
import json,sys,statistics as st
o=sys.argv[1]
runs=[json.loads(l) for l in open(o+'/runs.jsonl')]
def med(m,iso,k):
  v=[r[k] for r in runs if r['name']==m and r['iso']==iso]; return st.median(v) if v else float('nan')
def lcp(m,kind):
  try:
    for r in json.load(open(o+'/llama_%s.json'%m)):
      if (kind=='tg' and r['n_gen']) or (kind=='pp' and r['n_prompt']): return r['avg_ts']
  except Exception: pass
  return float('nan')
print('| model | decode tok/s in-process | isolated | isolated / in-process | llama.cpp tg128 | isolated / llama.cpp | load ms in-process | isolated |')
print('|---|---|---|---|---|---|---|---|')
for m in ('l1b-q8_0','smol-q4_1'):
  a,b=med(m,'none','decode_tok_s'),med(m,'process','decode_tok_s'); l=lcp(m,'tg')
  print('| %s | %.1f | %.1f | %.3f | %.1f | %.2f | %.0f | %.0f |' % (m,a,b,b/a,l,b/l,med(m,'none','load_ms'),med(m,'process','load_ms')))
for iso in ('none','process'):
  for how in ('same','fresh'):
    try:
      d=json.load(open(o+'/prefill_%s_%s.json'%(iso,how))); print('prefill 512 l1b-q8_0 isolation %-7s %-5s actor: warm %8.1f tok/s, cold %8.1f tok/s, runs %s' % (iso, how, d['warm_tok_s'], d['cold_tok_s'], d['runs_ms']))
    except Exception as e: print('prefill %s %s: %s' % (iso,how,e))
print('llama.cpp pp512 l1b-q8_0: %.1f' % lcp('l1b-q8_0','pp'))
PY
tar czf "$out.tgz" -C "$(dirname $out)" isolation
echo; echo "==== summary ($(elapsed)s) ===="; printf '%s\n' "${summary[@]}"; echo; cat $out/table.txt
