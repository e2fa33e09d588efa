#!/usr/bin/env bash
# device-share-check.sh: one device copy of the weights for many actors, on
# a GPU machine, in one call (issue 5). Needs the host binaries from
# scripts/build.sh (samepage, test_cuda_ops, synth_gguf) in $SP_BIN (default
# build/); compiles libsamepage_cuda.so here with nvcc.
#  1. test_cuda_ops (its "shared copies" line: one copy for two bindings,
#     copy-on-flush, a restore's re-declaration copies nothing);
#  2. `samepage bench actors --backend cuda --counts 1,8,32`: device memory
#     next to RSS (SP_SHARE_MODEL: model file, default a synthetic
#     SmolLM2-135M-shaped Q4_1);
#  3. `samepage bench snapshot --backend cuda --contexts 24,512,4096`:
#     restore into a warm actor, which now skips the weights' copy.
# Output: logs and JSON under $OUT (or ./device-out), a short table last.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"; cd "$root"
out="${OUT:-$root/device-out}"; mkdir -p "$out"
b="$(cd "${SP_BIN:-build}" && pwd)"; sp=$b/samepage; m=${SP_SHARE_MODEL:-/tmp/smol-q4_1.gguf}
export PATH=/usr/local/cuda/bin:$PATH
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $out/card.txt
nvcc --version | tail -1
scripts/build-cuda-lib.sh $b/libsamepage_cuda.so || exit 1
export SP_CUDA_LIB=$b/libsamepage_cuda.so
[ -f "$m" ] || $b/synth_gguf --out $m --preset smollm2-135m --type q4_1 > /dev/null || exit 1

timeout 120 $b/test_cuda_ops > $out/test_cuda_ops.txt 2>&1; rc=$?
echo "== test_cuda_ops rc=$rc: $(tail -1 $out/test_cuda_ops.txt)"
grep -E "shared copies|coherence|FAIL" $out/test_cuda_ops.txt
timeout 400 $sp bench actors --backend cuda --model $m --counts 1,8,32 --json > $out/bench_actors_cuda.json 2>$out/bench_actors.err
echo "== bench actors (cuda) rc=$?"; tail -3 $out/bench_actors.err
timeout 300 $sp bench snapshot --backend cuda --model $m --contexts 24,512,4096 --json > $out/bench_snapshot_cuda.json 2>$out/bench_snapshot.err
echo "== bench snapshot (cuda) rc=$?"; tail -3 $out/bench_snapshot.err
python3 - "$out" <<'PY'
import json,sys
o=sys.argv[1]
try:
  d=json.load(open(o+'/bench_actors_cuda.json'))
  print('\n| actors | VmRSS MiB | RssAnon MiB | device used MiB | resident (weights) MiB | saved by sharing MiB | shared hits | device-local MiB |')
  print('|---|---|---|---|---|---|---|---|')
  for r in d['rows']:
    print('| %d | %.1f | %.1f | %.1f | %.1f | %.1f | %d | %.1f |' % (r['actors'], r['rss_mib'], r['rss_anon_mib'],
          r.get('device_used_mib',0), r.get('resident_mib',0), r.get('shared_mib',0), r.get('shared_hits',0), r.get('device_local_mib',0)))
  print('each additional actor: %.2f MiB host (RssAnon), %.2f MiB device' % (d['per_actor_anon_mib'], d.get('per_actor_device_mib',0)))
except Exception as e: print('bench actors: %s' % e)
try:
  d=json.load(open(o+'/bench_snapshot_cuda.json'))
  print('\n| tokens | size MB | save ms | restore ms | re-prefill ms | ratio | next token |')
  print('|---|---|---|---|---|---|---|')
  for r in d['rows']:
    print('| %d | %.2f | %.1f | %.2f | %.1f | %.1fx | %s |' % (r['tokens'], r['size_mb'], r['save_ms'], r['restore_ms'],
          r['reprefill_ms'], r['ratio'], 'same' if r['same_next_token'] else 'DIFFERS'))
except Exception as e: print('bench snapshot: %s' % e)
PY
