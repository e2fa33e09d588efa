#!/usr/bin/env bash
# device-actors-check.sh: actors on the GPU, in one call on a GPU machine
# (issues 4 and 5). Needs the host binaries of scripts/build.sh in $SP_BIN
# (default build/: samepage, synth_gguf, test_cuda_ops, test_cuda_fault,
# test_hostile, guests/); compiles libsamepage_cuda.so here with nvcc.
#  1. test_cuda_ops (op parity, shared copies, coherence);
#  2. test_cuda_fault: a GPU fault in one actor, with another CUDA actor and
#     a CPU actor in the same process;
#  3. greedy text on CUDA (the model mapped, not read) against the CPU's,
#     and with no room for the weights' copy (SP_CUDA_RESIDENT_MAX_MB=1: the
#     mapped range is read instead) against the normal CUDA run;
#  4. a conversation saved on CUDA continues on the CPU, and the other way;
#  5. `samepage bench actors --counts 1,8,32`: host and device memory;
#  6. `samepage bench snapshot`: restore vs re-prefill, CUDA and CPU;
#  7. compute-sanitizer memcheck: a generation, and the hostile-guest suite.
# Output: logs and JSON in $OUT/actors-logs.tgz (or ./device-out), a summary last.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"; cd "$root"
out="${OUT:-$root/device-out}/actors"; mkdir -p "$out"
b="$(cd "${SP_BIN:-build}" && pwd)"; sp=$b/samepage; m=${SP_SHARE_MODEL:-/tmp/smol-q4_1.gguf}
export LD_LIBRARY_PATH="$b:${LD_LIBRARY_PATH:-}" # the server libraries packed beside the binaries
export PATH=/usr/local/cuda/bin:$PATH
t_start=$(date +%s); elapsed() { echo $(( $(date +%s) - t_start )); }
summary=(); add() { summary+=("$*"); echo "== [$(elapsed)s] $*"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $out/card.txt
scripts/build-cuda-lib.sh $b/libsamepage_cuda.so || exit 1
export SP_CUDA_LIB=$b/libsamepage_cuda.so
[ -f "$m" ] || $b/synth_gguf --out $m --preset smollm2-135m --type q4_1 > /dev/null || exit 1

# ---- 1, 2: tests ----
timeout 120 $b/test_cuda_ops > $out/test_cuda_ops.txt 2>&1
add "test_cuda_ops rc=$?: $(tail -1 $out/test_cuda_ops.txt)"; grep -E "shared copies|FAIL" $out/test_cuda_ops.txt
timeout 120 $b/test_cuda_fault $b/guests $m > $out/test_cuda_fault.txt 2>&1
add "test_cuda_fault rc=$?: $(tail -1 $out/test_cuda_fault.txt)"; grep -vE "^(loading|$)" $out/test_cuda_fault.txt | head -12

# ---- 3: greedy text, mapped weights and the short-memory fallback ----
prompt="The quick brown fox jumps over the lazy dog and then runs into the forest where"
gen() { # tag backend [VAR=value...]
  local tag=$1 be=$2; shift 2
  env "$@" timeout 120 $sp run --backend $be -m $m --raw -n 48 --temp 0 --repeat-penalty 1 --json "$prompt" \
    > $out/e2e_$tag.json 2> $out/e2e_$tag.err
  python3 -c "import json,sys; print(json.loads(open(sys.argv[1],'rb').read().decode('utf-8','replace'))['text'])" $out/e2e_$tag.json 2>/dev/null
}
cpu=$(gen cpu cpu); cuda=$(gen cuda cuda); short=$(gen short cuda SP_CUDA_RESIDENT_MAX_MB=1)
same() { [ -n "$1" ] && [ "$1" = "$2" ] && echo SAME || echo "DIFFERS"; }
add "greedy 48 tokens: cuda (model mapped) vs cpu: $(same "$cuda" "$cpu"); cuda with no room for the copy vs cuda: $(same "$short" "$cuda")"
add "short-memory warning: $(grep -o 'reading the file into guest memory instead.*' $out/e2e_short.err | head -1)"
python3 - $out <<'PY'
import json,sys
for t in ('cuda','short'):
  try:
    d=json.load(open(sys.argv[1]+'/e2e_%s.json'%t)); print('  %s: decode %.1f tok/s, resident %.1f MiB' % (t, d['decode_tok_s'], d['resident_bytes']/1048576))
  except Exception as e: print('  %s: %s' % (t,e))
PY

# ---- 4: snapshots across backends ----
text() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['text'])"; }
cont() { $sp run --backend "$1" --model $m --resume "$2" -n 24 --json "Go on." 2>>$out/snap_err.txt | text; }
for pair in "cuda cpu" "cpu cuda"; do
  set -- $pair
  if $sp run --backend $1 --model $m --temp 0 --repeat-penalty 1 -n 16 --save /tmp/$1.snap "Hello there" > /dev/null 2>>$out/snap_err.txt; then
    own=$(cont $1 /tmp/$1.snap); other=$(cont $2 /tmp/$1.snap)
    add "saved on $1 ($(stat -c %s /tmp/$1.snap) bytes), resumed on $2: $(same "$other" "$own") as $1's own continuation (${#own} chars)"
  else add "save on $1: FAILED ($(tail -1 $out/snap_err.txt))"; fi
done

# ---- 5, 6: benches ----
timeout 300 $sp bench actors --backend cuda --model $m --counts 1,8,32 --json > $out/bench_actors_cuda.json 2>$out/bench_actors.err
add "bench actors (cuda) rc=$?"; tail -2 $out/bench_actors.err
timeout 300 $sp bench snapshot --backend cuda --model $m --contexts 24,512,4096 --json > $out/bench_snapshot_cuda.json 2>$out/bench_snapshot.err
add "bench snapshot (cuda) rc=$?"; tail -2 $out/bench_snapshot.err
timeout 200 $sp bench snapshot --backend cpu --model $m --contexts 24,512 --json > $out/bench_snapshot_cpu.json 2>>$out/bench_snapshot.err
add "bench snapshot (cpu) rc=$?"

# ---- 7: compute-sanitizer ----
if command -v compute-sanitizer >/dev/null; then
  timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 $sp run --backend cuda -m $m --raw -n 6 "$prompt" > $out/memcheck.txt 2>&1
  add "memcheck of a generation (model mapped) rc=$?: $(grep -E 'ERROR SUMMARY' $out/memcheck.txt)"
  if [ -x $b/test_hostile ]; then
    SP_TEST_BACKEND=cuda SP_GUEST_DIR=$b/guests timeout 300 compute-sanitizer --tool memcheck --error-exitcode 9 \
      $b/test_hostile > $out/hostile_cuda.txt 2>&1
    add "hostile suite on cuda under memcheck rc=$?: $(grep -E 'checks passed' $out/hostile_cuda.txt | tail -1) $(grep -E 'ERROR SUMMARY' $out/hostile_cuda.txt | tail -1)"
    grep -E "^FAIL" $out/hostile_cuda.txt | head -10
  fi
fi

python3 - "$out" > $out/table.txt <<'PY'
import json,sys
o=sys.argv[1]
try:
  d=json.load(open(o+'/bench_actors_cuda.json'))
  print('| actors | VmRSS MiB | RssAnon MiB | device used MiB | resident (weights) MiB | saved by sharing MiB | device-local MiB |')
  print('|---|---|---|---|---|---|---|')
  for r in d['rows']:
    print('| %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |' % (r['actors'], r['rss_mib'], r['rss_anon_mib'],
          r.get('device_used_mib',0), r.get('resident_mib',0), r.get('shared_mib',0), r.get('device_local_mib',0)))
  print('each additional actor: %.2f MiB host (RssAnon), %.2f MiB device' % (d['per_actor_anon_mib'], d.get('per_actor_device_mib',0)))
except Exception as e: print('bench actors: %s' % e)
for be in ('cuda','cpu'):
  try:
    d=json.load(open(o+'/bench_snapshot_%s.json' % be))
    print('\n%s | tokens | size MB | save ms | restore ms (verify + apply) | re-prefill ms | ratio | next token |' % be)
    print('|---|---|---|---|---|---|---|---|')
    for r in d['rows']:
      print('| %s | %d | %.2f | %.1f | %.2f (%.2f + %.2f) | %.1f | %.1fx | %s |' % (be, r['tokens'], r['size_mb'], r['save_ms'],
            r['restore_ms'], r.get('verify_ms',0), r.get('apply_ms',0), r['reprefill_ms'], r['ratio'], 'same' if r['same_next_token'] else 'DIFFERS'))
  except Exception as e: print('bench snapshot %s: %s' % (be, e))
PY
echo; echo "==== summary ($(cat $out/card.txt), $(date -u +%FT%TZ), $(elapsed) s) ===="; printf '%s\n' "${summary[@]}"
echo; cat $out/table.txt
tar czf $out/../actors-logs.tgz -C $out . && rm -rf $out   # one file back (a device call returns at most 8)
