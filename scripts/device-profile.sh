#!/usr/bin/env bash
# device-profile.sh: where one decode token's GPU time goes, ours and
# llama.cpp's, kernel by kernel (Nsight Compute, isolated kernel durations),
# on the same card and the same synthetic file, in one call.
#
# Needs SP_BIN (samepage, synth_gguf; libsamepage_cuda.so is built here with
# nvcc) and optionally LLAMA_BENCH (a built llama-bench with its libraries).
# Usage: SP_BIN=dir [LLAMA_BENCH=path] scripts/device-profile.sh [MODEL_PRESET TYPE]
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"; cd "$root"
out="${OUT:-$root/device-out}"; mkdir -p "$out"
b="$(cd "${SP_BIN:-build}" && pwd)"; export PATH=/usr/local/cuda/bin:$PATH
export LD_LIBRARY_PATH="$b:${LD_LIBRARY_PATH:-}" # the server libraries packed beside the binaries
preset=${1:-llama-3.2-1b}; type=${2:-q8_0}; model=/tmp/sp-prof-$preset-$type.gguf

build_lib() { scripts/build-cuda-lib.sh /tmp/libsamepage_cuda.so $out/ptxas.txt; }
build_lib || exit 1
export SP_CUDA_LIB=/tmp/libsamepage_cuda.so
if [ -x $b/test_cuda_ops ]; then
  timeout 120 $b/test_cuda_ops > $out/test_cuda_ops.txt 2>&1; echo "test_cuda_ops rc=$?: $(tail -1 $out/test_cuda_ops.txt)"
  grep -E "^FAIL|layer list" $out/test_cuda_ops.txt
fi
$b/synth_gguf --out $model --preset $preset --type $type > /dev/null || exit 1

# Per-kernel table: name, instances per token, mean us, us per token.
summarize() { # csv tokens_marker_regex marker_per_token label
  python3 - "$@" <<'PY'
import csv, sys, collections, re
path, marker, per_tok, label = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
rows = [l for l in open(path, errors='replace') if l.startswith('"')]
k = collections.OrderedDict()
for r in csv.DictReader(rows):
    if r.get('Metric Name') != 'gpu__time_duration.sum': continue
    name = re.sub(r'\(.*', '', r['Kernel Name'])[:70] + ' ' + r['Grid Size'] + 'x' + r['Block Size']
    v = float(r['Metric Value'].replace(',', ''))
    e = k.setdefault(name, [0, 0.0]); e[0] += 1; e[1] += v
marks = sum(e[0] for n, e in k.items() if re.search(marker, n))
tokens = max(marks / per_tok, 1e-9)
tot = sum(e[1] for e in k.values())
print('%s: %d kernels, %.1f tokens by marker, %.1f kernels/token, %.3f ms GPU/token (isolated durations)' %
      (label, sum(e[0] for e in k.values()), tokens, sum(e[0] for e in k.values()) / tokens, tot / tokens / 1e6))
for n, e in sorted(k.items(), key=lambda x: -x[1][1])[:25]:
    print('  %6.1f/tok %8.2f us %8.1f us/tok  %s' % (e[0] / tokens, e[1] / e[0] / 1e3, e[1] / tokens / 1e3, n))
PY
}

ncu_args="--clock-control none --metrics gpu__time_duration.sum --csv"
# ours: a short prompt then 24 greedy tokens; kernels after the prefill list
timeout 240 ncu $ncu_args --launch-skip 600 --launch-count 2000 $b/samepage run --backend cuda -m $model --raw -n 24 --temp 0 "Hello there" \
  > $out/ncu_ours.csv 2> $out/ncu_ours.err
echo "ncu ours rc=$?"
summarize $out/ncu_ours.csv 'rms' 33 ours | tee $out/prof_ours.txt

[ -n "${LLAMA_BENCH:-}" ] && export LD_LIBRARY_PATH="$(dirname $LLAMA_BENCH):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
if [ -n "${LLAMA_BENCH:-}" ] && [ -n "${PROFILE_LLAMA:-}" ]; then
  timeout 240 ncu $ncu_args --launch-skip 600 --launch-count 2000 $LLAMA_BENCH -m $model -p 0 -n 32 -r 1 -ngl 99 \
    > $out/ncu_llama.csv 2> $out/ncu_llama.err
  echo "ncu llama rc=$?"
  summarize $out/ncu_llama.csv 'rms_norm' 33 llama.cpp | tee $out/prof_llama.txt
fi

# end to end: greedy text on the CUDA backend (fused) equals the CPU backend's
sm=/tmp/sp-prof-smol-q4_1.gguf; $b/synth_gguf --out $sm --preset smollm2-135m --type q4_1 > /dev/null
pr="The quick brown fox jumps over the lazy dog and then runs into the forest where"
for be in cpu cuda; do timeout 120 $b/samepage run --backend $be -m $sm --raw -n 32 --temp 0 --repeat-penalty 1 "$pr" > /tmp/e2e_$be.txt 2>/dev/null; done
cmp -s /tmp/e2e_cpu.txt /tmp/e2e_cuda.txt && echo "e2e greedy smol q4_1 32 tokens: MATCH" || { echo "e2e greedy: DIFFER"; head -c 300 /tmp/e2e_cpu.txt; echo; head -c 300 /tmp/e2e_cuda.txt; echo; }

# plain timings in the same call, no profiler: decode tok/s, ours (fused and
# not) and llama.cpp's tg128, per model
: > $out/table.txt
ours_tps() { # model [VAR=value...]: decode tok/s (0 on failure, with the error on stderr)
  local m=$1; shift
  env "$@" timeout 60 $b/samepage run --backend cuda -m $m --raw -n 128 --temp 0 --json "Hello there" > /tmp/o.json 2>/tmp/o.err
  python3 - <<'PY' || { echo 0; echo "FAILED $(basename $m) $*: $(tail -3 /tmp/o.err | tr '\n' ' ')" >&2; }
import json, sys
d = json.loads(open('/tmp/o.json', 'rb').read().decode('utf-8', 'replace'))
n = max(d['generated_tokens'], 1)
print('%.1f' % d['decode_tok_s'])
print('  per token: %.3f ms wall, %.3f ms in the backend (submit+wait), %.3f ms validating, %.1f commands' % (
    d['decode_ms'] / n, d['decode_backend_ms'] / n, d['decode_validate_ms'] / n, d['decode_commands'] / max(d['decode_lists'], 1)),
    file=sys.stderr)
PY
}
# prefill: `samepage bench prefill` (512 tokens, a fresh actor per run in a
# warm runtime: cold = the first run, warm = the median of the rest), with
# cuBLAS and with our own tiles, and llama.cpp's pp512 (warmed up too)
ours_pp() { # model [VAR=value...]: "cold warm" tok/s
  local m=$1; shift
  env "$@" timeout 120 $b/samepage bench prefill --backend cuda --model $m --tokens 512 --runs 4 --json > /tmp/p.json 2>/tmp/p.err
  python3 -c "import json; d=json.load(open('/tmp/p.json')); print('%.1f %.1f' % (d['cold_tok_s'], d['warm_tok_s']))" 2>/dev/null ||
    { echo 0 0; echo "FAILED prefill $(basename $m) $*: $(tail -3 /tmp/p.err | tr '\n' ' ')" >&2; }
}
: > $out/prefill.txt
for spec in ${MODELS:-llama-3.2-1b:q8_0}; do
  p=${spec%%:*}; t=${spec##*:}; m=/tmp/sp-prof-$p-$t.gguf
  [ -f $m ] || $b/synth_gguf --out $m --preset $p --type $t > /dev/null
  set -- $(ours_pp $m); fc=$1 fw=$2
  set -- $(ours_pp $m SP_CUDA_NO_CUBLAS=1); tc=$1 tw=$2
  lp=0
  [ -n "${LLAMA_BENCH:-}" ] && lp=$(timeout 120 $LLAMA_BENCH -m $m -p 512 -n 0 -ngl 99 -r 3 -o json 2>/dev/null |
    python3 -c "import json,sys; print('%.1f' % json.load(sys.stdin)[0]['avg_ts'])" 2>/dev/null || echo 0)
  python3 -c "
fc,fw,tc,tw,l=$fc,$fw,$tc,$tw,$lp
print('| $p $t | %.1f | %.1f | %.1f | %.1f | %.1f | %s |' % (fw, fc, tw, tc, l, '%.2fx' % (fw/l) if l else '-'))" >> $out/prefill.txt
done
for spec in ${MODELS:-llama-3.2-1b:q8_0}; do
  p=${spec%%:*}; t=${spec##*:}; m=/tmp/sp-prof-$p-$t.gguf
  [ -f $m ] || $b/synth_gguf --out $m --preset $p --type $t > /dev/null
  fused=$(ours_tps $m); plain=$(ours_tps $m SP_CUDA_NO_FUSION=1)
  nostage=$(ours_tps $m SP_CUDA_NO_STAGING=1); wpr2=$(ours_tps $m SP_CUDA_MMV_WPR=2)
  norepack=$(ours_tps $m SP_CUDA_NO_REPACK=1); nopdl=$(ours_tps $m SP_CUDA_NO_PDL=1)
  lt=0
  [ -n "${LLAMA_BENCH:-}" ] && lt=$(timeout 120 $LLAMA_BENCH -m $m -p 0 -n 128 -ngl 99 -r 3 -o json 2>/dev/null |
    python3 -c "import json,sys; print('%.1f' % json.load(sys.stdin)[0]['avg_ts'])" 2>/dev/null || echo 0)
  python3 -c "
f,p,s,r,d,w,l=$fused,$plain,$nostage,$norepack,$nopdl,$wpr2,$lt
print('| $p $t | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %s |' % (f, p, s, r, d, w, l, '%.2fx' % (f/l) if l else '-'))" >> $out/table.txt
done
SP_CUDA_TIMING=1 timeout 60 $b/samepage run --backend cuda -m $model --raw -n 128 --temp 0 "Hello there" \
  > /dev/null 2> $out/timing_ours.txt
grep "cuda timing" $out/timing_ours.txt | head -2
echo "| model | prefill 512 tok/s: ours warm (cuBLAS) | ours cold | own tiles warm | own tiles cold | llama.cpp pp512 | ratio (warm) |"
echo "|---|---|---|---|---|---|---|"
cat $out/prefill.txt
echo "| model | ours tok/s | unfused | no staging | no repack | no PDL | 2 warps/row | llama.cpp tg128 | ratio |"
echo "|---|---|---|---|---|---|---|---|---|"
cat $out/table.txt
