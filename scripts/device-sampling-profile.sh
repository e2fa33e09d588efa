#!/usr/bin/env bash
# device-sampling-profile.sh: where issue 17's sampled decode loses to greedy
# on the GPU machine, one call: `samepage bench decode` greedy and --sampled
# on the 1B Q8_0 shape (depth 0 and 1024), then the same with SP_CUDA_TIMING=1
# (GPU time per list) and =2 (per command, graphs off), whose reports name
# the ops; =2 once more at depth 1,024. Needs SP_PACK (scripts/pack-device.sh). Output under $OUT.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"; cd "$root"
out="${OUT:-$root/device-out}"; mkdir -p "$out"
if [[ -f "${SP_PACK:-}" ]]; then rm -rf build-dev-bin; mkdir -p build-dev-bin; tar xJf "$SP_PACK" -C build-dev-bin; fi
b=$root/build-dev-bin; sp=$b/samepage; lib=$root/build-dev-lib/libsamepage_cuda.so; mkdir -p "$(dirname $lib)"
export LD_LIBRARY_PATH="$b:${LD_LIBRARY_PATH:-}" PATH=/usr/local/cuda/bin:$PATH SP_CUDA_LIB=$lib
[[ -s $lib ]] || JOBS=16 scripts/build-cuda-lib.sh $lib > $out/build.txt 2>&1 || { echo "build failed"; tail $out/build.txt; exit 1; }
m=$root/build-dev-models/l1b-q8_0.gguf; mkdir -p "$(dirname $m)"
[[ -s $m ]] || $b/synth_gguf --out $m --preset llama-3.2-1b --type q8_0 >/dev/null
for mode in "" --sampled; do
  timeout 100 $sp bench decode --backend cuda --model $m --depths 0,1024 --tokens 128 --runs 3 $mode --json \
    > $out/decode${mode:+_sampled}.json 2>&1
  for t in 1 2; do
    SP_CUDA_TIMING=$t timeout 100 $sp bench decode --backend cuda --model $m --depths 0 --tokens 64 --runs 1 $mode \
      > $out/timing${t}${mode:+_sampled}.txt 2>&1
  done
done
# depth 0 decodes slower than depth 1,024 (BENCHMARKS.md): the same per-command report at 1,024
SP_CUDA_TIMING=2 timeout 100 $sp bench decode --backend cuda --model $m --depths 1024 --tokens 64 --runs 1 \
  > $out/timing2_d1024.txt 2>&1
for f in $out/decode.json $out/decode_sampled.json; do echo "== $(basename $f)"; grep '^{' $f | grep -o '"depth": [0-9]*\|"tok_s": [0-9.]*\|"ms_per_token": [0-9.]*' | tr '\n' ' '; echo; done
for f in $out/timing*.txt; do echo "== $(basename $f)"; grep -E "cuda timing|tok/s" $f | head -30; done
