#!/usr/bin/env bash
# device-serve-check.sh: the GPU halves of issues 16 and 17, in phases that
# fit one device call each (SP_PHASES, default "build decode serve"); a
# warm machine keeps what an earlier phase built (ignored build-dev-* dirs).
#
#   build   libsamepage_cuda.so (nvcc) and llama.cpp's CUDA llama-bench and
#           llama-server (from $LLAMA_SRC_TAR, the pinned sdist's
#           vendor/llama.cpp, trimmed), in parallel; meanwhile the CUDA op
#           checks and, for the one model over the parity bound on the last
#           run, which CUDA path moves it (each SP_CUDA_NO_* knob alone)
#   decode  issue 17's table: `samepage bench decode --depths` against
#           `llama-bench -d` at the same depths, same synthetic files,
#           greedy and sampled; the cold-start figure (first prefill in a
#           process, eager vs lazy kernel loading)
#   batch   issue 18 on CUDA: test_cuda_batch (every weight type) and
#           tests/test_batch_cuda.sh (the model: batched equals alone), then `samepage bench batch --backend cuda` off/on at
#           $BATCH_ACTORS (default 1,4,16,64) on SmolLM2 and the 1B Q8_0 shape
#   serve   issue 16 on CUDA: tests/server/test_load.py with
#           SP_SERVE_BACKEND=cuda (16 clients, each reply equal to its
#           single-client run), then bench/serve_vs_llama_server.py
#           --backend cuda against llama-server -ngl 999
#
# Needs: SP_PACK (scripts/pack-device.sh output; or SP_BIN, one unpacked), LLAMA_SRC_TAR
# (build phase), PY_PKGS (a directory of unpacked pure-Python wheels:
# pytest, requests and their dependencies; the GPU machine has no pip).
# EARLY_CMD: a command run in the build phase while llama.cpp compiles.
# Logs and JSON go to $OUT; the last lines are a table.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"; cd "$root"
out="${OUT:-$root/device-out}"; mkdir -p "$out/logs"; log=$out/logs
# SP_PACK: a new pack to unpack into build-dev-bin (kept while the machine stays warm)
if [[ -f "${SP_PACK:-}" ]]; then rm -rf "$root/build-dev-bin"; mkdir -p "$root/build-dev-bin"; tar xJf "$SP_PACK" -C "$root/build-dev-bin"; fi
b="$(cd "${SP_BIN:-$root/build-dev-bin}" && pwd)"; sp=$b/samepage; mdir=$root/build-dev-models; mkdir -p "$mdir"
lcp=$root/build-dev-lcp; lib=$root/build-dev-lib/libsamepage_cuda.so; mkdir -p "$(dirname "$lib")"
export LD_LIBRARY_PATH="$b:${LD_LIBRARY_PATH:-}" PATH=/usr/local/cuda/bin:$PATH SP_CUDA_LIB=$lib
t_start=$(date +%s); elapsed() { echo $(( $(date +%s) - t_start )); }
deadline=${SP_DEADLINE:-570}
summary=(); add() { summary+=("$*"); echo "== [$(elapsed)s] $*"; }
phase() { [[ " ${SP_PHASES:-build decode serve} " == *" $1 "* ]]; }
finish() { echo; printf '%s\n' "${summary[@]}"; exit 0; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $log/card.txt
date -u +%FT%TZ | tee $log/date.txt

# The real default model travels in two parts over two calls (over 64 MiB):
# SMOL_PARTS names this call's part(s); once both are here they are joined
# and checked against the sha256 scripts/fetch-model.sh checks.
smol=$mdir/SmolLM2-135M-Instruct.Q4_1.gguf
for p in ${SMOL_PARTS:-}; do cp "$p" "$mdir/part.${p##*.}"; done
if [[ ! -s $smol && -s $mdir/part.00 && -s $mdir/part.01 ]]; then
  cat $mdir/part.00 $mdir/part.01 > $smol
  sha256sum $smol | grep -q '^b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 ' || { echo "smol: bad sha256"; rm -f $smol; }
fi

synth() { # name preset type [extra synth_gguf args]
  local f=$mdir/$1.gguf; [[ -s $f ]] || $b/synth_gguf --out "$f" --preset "$2" --type "$3" "${@:4}" >/dev/null
  echo "$f"
}

# issue 18's checks on CUDA: every weight type batched equals alone, then
# the model (run in the build phase too, while llama.cpp compiles, with
# BATCH_CHECK_EARLY=1)
batch_checks() {
  local model=$smol; [[ -s $model ]] || model=$(synth smol-q4_1 smollm2-135m q4_1)
  timeout 200 $b/test_cuda_batch > $log/test_cuda_batch.txt 2>&1
  add "test_cuda_batch rc=$?: $(tail -1 $log/test_cuda_batch.txt)"; grep -E "^FAIL" $log/test_cuda_batch.txt | head -8
  timeout 300 tests/test_batch_cuda.sh $sp $model > $log/batch_check.txt 2>&1; local rc=$?
  add "batch --check on cuda, $(basename $model) rc=$rc"; grep -E '^ +[0-9]+ |differ|changed' $log/batch_check.txt | head -12
}

if phase build; then
  # ---- llama.cpp's CUDA binaries, in the background ----
  lcp_pid=""
  if [[ ! -x $lcp/bin/llama-server && -f "${LLAMA_SRC_TAR:-/nonexistent}" ]]; then
    mkdir -p /tmp/lcp-src && tar xJf "$LLAMA_SRC_TAR" -C /tmp/lcp-src
    setsid bash -c "cmake -S /tmp/lcp-src/llama.cpp -B $lcp -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
        -DLLAMA_BUILD_APP=OFF -DGGML_CUDA_NCCL=OFF && cmake --build $lcp --target ${LCP_TARGETS:-llama-bench llama-server} -j13" \
        > $log/llama_build.txt 2>&1 &
    lcp_pid=$!
  fi
  t0=$(date +%s)
  JOBS=${LIB_JOBS:-3} SP_TEST_HOOKS=1 scripts/build-cuda-lib.sh $lib $log/ptxas.txt > $log/build.txt 2>&1 \
    || { add "BUILD FAIL"; grep -i error $log/build.txt | head -30; finish; }
  add "our CUDA library: $(( $(date +%s) - t0 )) s"
  if [[ -z ${SKIP_CHECKS:-} ]]; then
  timeout 150 $b/test_cuda_ops > $log/test_cuda_ops.txt 2>&1; rc=$?
  grep -E "^FAIL" $log/test_cuda_ops.txt | head -10; add "test_cuda_ops rc=$rc: $(tail -1 $log/test_cuda_ops.txt)"
  # the Llama-1B Q4_K_M file over the parity bound (6.0e-2 > 0.05): which path moves it
  m=$(synth l1b-q4_k_m llama-3.2-1b q4_k_m)
  for v in ${SKIP_PARITY:+-} "" SP_CUDA_NO_FUSION SP_CUDA_NO_FLASH SP_CUDA_NO_GRAPHS SP_CUDA_NO_REPACK SP_CUDA_NO_CUBLAS; do
    [[ $v == - ]] || (( $(elapsed) > 400 )) && break
    env ${v:+$v=1} timeout 90 $b/backend_parity $b/guests $m cpu cuda 100 24 0.05 > $log/parity_${v:-default}.txt 2>&1
    add "parity l1b-q4_k_m ${v:-default} rc=$?: $(grep -E '^prefill' $log/parity_${v:-default}.txt | cut -c1-70) | $(grep -E '^decode' $log/parity_${v:-default}.txt | cut -c1-70)"
  done
  fi # SKIP_CHECKS
  [[ -n ${BATCH_CHECK_EARLY:-} ]] && batch_checks
  # EARLY_CMD: other GPU work for the minutes llama.cpp compiles (a bash command line)
  if [[ -n ${EARLY_CMD:-} ]]; then
    bash -c "$EARLY_CMD" > $log/early.txt 2>&1; add "EARLY_CMD rc=$?"; tail -40 $log/early.txt
  fi
  if [[ -n $lcp_pid ]]; then
    while kill -0 $lcp_pid 2>/dev/null && (( $(elapsed) < deadline )); do sleep 5; done
    kill -0 $lcp_pid 2>/dev/null && { kill -- -$lcp_pid; add "llama.cpp build: not done by the deadline"; }
  fi
  add "llama.cpp binaries: $(ls $lcp/bin 2>/dev/null | grep -E '^llama-(bench|server)$' | tr '\n' ' ')"
  tail -3 $log/llama_build.txt
fi

if phase decode; then
  [[ -s $lib ]] || { add "no $lib (run the build phase first)"; finish; }
  depths=${DEPTHS:-0,1024,4096,16384}
  echo "model | depth | samepage greedy | llama.cpp tg128 | ratio | samepage sampled" > $out/decode_table.txt
  # SmolLM2's trained context is 8,192 tokens, and the guest will not go past it
  for spec in ${DECODE_MODELS:-smol-q4_1:smollm2-135m:q4_1:0,1024,4096 l1b-q8_0:llama-3.2-1b:q8_0 l1b-q4_0:llama-3.2-1b:q4_0 l1b-f16:llama-3.2-1b:f16}; do
    IFS=: read -r name preset type model_depths <<<"$spec"
    model_depths=${model_depths:-$depths}
    (( $(elapsed) > deadline - 90 )) && { add "decode $name: skipped (time)"; continue; }
    m=$(synth $name $preset $type)
    timeout 150 $sp bench decode --backend cuda --model $m --depths $model_depths --tokens 128 --runs 3 --json \
      > $out/decode_$name.json 2> $log/decode_$name.err
    timeout 90 $sp bench decode --backend cuda --model $m --depths $model_depths --tokens 128 --runs 3 --sampled --json \
      > $out/decode_sampled_$name.json 2> $log/decode_sampled_$name.err
    [[ -x $lcp/bin/llama-bench ]] && timeout 200 $lcp/bin/llama-bench -m $m -ngl 99 -p 0 -n 128 -d $model_depths -r 3 -o json \
      > $out/llama_$name.json 2> $log/llama_$name.err
    python3 - "$name" "$out" >> $out/decode_table.txt <<'EOF'
import json, sys
name, out = sys.argv[1], sys.argv[2]
def load(p):
    try:
        return json.load(open(p))
    except Exception:
        return None
def ours(p):  # bench decode --json: a line per depth; depth -> tok/s
    try:
        rows = [json.loads(ln) for ln in open(p) if ln.startswith("{")]
    except Exception:
        rows = []
    return {int(r["depth"]): r["tok_s"] for r in rows}
g, s = ours(f"{out}/decode_{name}.json"), ours(f"{out}/decode_sampled_{name}.json")
theirs = {int(r.get("n_depth", 0)): r["avg_ts"] for r in (load(f"{out}/llama_{name}.json") or []) if r.get("n_gen")}
for d in sorted(set(g) | set(theirs)):
    a, t = g.get(d), theirs.get(d)
    ratio = f"{a / t:.2f}x" if a and t else "-"
    f = lambda v: f"{v:.1f}" if v else "-"
    print(f"{name} | {d} | {f(a)} | {f(t)} | {ratio} | {f(s.get(d))}")
EOF
    add "decode $name: $(grep "^$name " $out/decode_table.txt | awk -F'|' '{printf "d%s %s;", $2, $5}')"
  done
  # cold start: the first prefill of a process against the warm median, as
  # shipped (the driver's default, lazy) and with every module loaded eagerly
  m=$(synth l1b-q8_0 llama-3.2-1b q8_0)
  for mode in ${PREFILL_MODES:-default EAGER}; do
    (( $(elapsed) > deadline - 30 )) && break
    env $([[ $mode == default ]] || echo CUDA_MODULE_LOADING=$mode) timeout 60 $sp bench prefill --backend cuda --model $m --tokens 512 --runs 4 --json \
      > $out/prefill_$mode.json 2> $log/prefill_$mode.err
    add "prefill 512 CUDA_MODULE_LOADING=$mode: $(python3 -c "
import json; d=json.loads(open('$out/prefill_$mode.json').read().strip().splitlines()[-1]); print('cold %.1f ms, warm %.1f ms' % (d['cold_ms'], d['warm_ms']))" 2>&1 | tail -1)"
  done
fi

if phase batch; then
  [[ -s $lib ]] || { add "no $lib (run the build phase first)"; finish; }
  model=$smol; [[ -s $model ]] || model=$(synth smol-q4_1 smollm2-135m q4_1)
  [[ -z ${SKIP_BATCH_CHECK:-} ]] && batch_checks
  echo "model | actors | off tok/s | on tok/s | ratio | off p50/p99 ms | on p50/p99 ms | batched" > $out/batch_table.txt
  for spec in ${BATCH_MODELS:-smol-q4_1:smollm2-135m:q4_1 l1b-q8_0:llama-3.2-1b:q8_0}; do
    IFS=: read -r name preset type <<<"$spec"
    (( $(elapsed) > deadline - 60 )) && { add "batch $name: skipped (time)"; continue; }
    m=$(synth $name $preset $type)
    SP_CUDA_BATCH=1 timeout $(( deadline - $(elapsed) - 10 )) $sp bench batch --backend cuda --model $m --actors ${BATCH_ACTORS:-1,4,16,64} \
      --tokens ${BATCH_TOKENS:-64} --json > $out/batch_$name.json 2> $log/batch_$name.err
    add "batch $name rc=$?: $(tail -2 $log/batch_$name.err | tr '\n' ' ')"
    python3 - $name $out/batch_$name.json >> $out/batch_table.txt <<'EOF'
import json, sys
for ln in open(sys.argv[2]):
    if not ln.startswith("{"): continue
    r = json.loads(ln)
    ratio = r["tok_s_on"] / r["tok_s_off"] if r["tok_s_off"] else 0
    pct = 100 * r["batched_lists"] / r["lists"] if r["lists"] else 0
    print(f'{sys.argv[1]} | {r["actors"]} | {r["tok_s_off"]:.1f} | {r["tok_s_on"]:.1f} | {ratio:.2f}x | '
          f'{r["step_ms_p50_off"]:.2f}/{r["step_ms_p99_off"]:.2f} | {r["step_ms_p50_on"]:.2f}/{r["step_ms_p99_on"]:.2f} | {pct:.0f}%')
EOF
  done
  add "batch table:"; while read -r ln; do add "$ln"; done < $out/batch_table.txt
fi

if phase serve; then
  [[ -s $lib ]] || { add "no $lib (run the build phase first)"; finish; }
  model=$smol; [[ -s $model ]] || model=$(synth smol-q4_1 smollm2-135m q4_1)
  add "serve model: $(basename $model)"
  export PYTHONPATH="${PY_PKGS:-}" SAMEPAGE_EXE=$sp SP_TEST_MODEL=$model SP_SERVE_BACKEND=cuda SP_WORKER_EXE=$b/samepage-worker
  if [[ -z ${SKIP_LOAD:-} ]]; then
    (cd tests/server && SP_SERVE_LOAD=1 timeout 240 python3 -m pytest -q -p no:cacheprovider test_load.py) > $log/serve_load.txt 2>&1
    add "test_load.py on cuda rc=$?: $(tail -1 $log/serve_load.txt)"
  fi
  # samepage alone (bench/serve_ours.py), per kernel-loading mode: where the
  # peer cannot be built in the time left, a before/after of our own
  for mode in ${SERVE_OURS_MODES:-}; do
    (( $(elapsed) > deadline - 60 )) && break
    env $([[ $mode == default ]] || echo CUDA_MODULE_LOADING=$mode) timeout $(( deadline - $(elapsed) - 10 )) \
      python3 bench/serve_ours.py --samepage $sp --model $model --backend cuda --json $out/serve_ours_$mode.json \
      > $log/serve_ours_$mode.txt 2>&1
    add "serve, samepage alone, CUDA_MODULE_LOADING=$mode rc=$?"; grep -E '^\|' $log/serve_ours_$mode.txt
  done
  if [[ -x $lcp/bin/llama-server ]] && (( $(elapsed) < deadline - ${SERVE_BENCH_S:-200} )); then
    timeout $(( deadline - $(elapsed) - 10 )) python3 bench/serve_vs_llama_server.py --backend cuda --samepage $sp \
      --llama-server $lcp/bin/llama-server --model $model --threads 8 --repeats ${SERVE_REPEATS:-1} \
      --clients ${SERVE_CLIENTS:-1,4,16} --parts ${SERVE_PARTS:-a,b} --wait-quiet 0 --json $out/serve_vs_llama_server.json > $log/serve_bench.txt 2>&1
    add "serve bench rc=$?"; grep -E '^\|' $log/serve_bench.txt | head -24
  fi
fi
finish
