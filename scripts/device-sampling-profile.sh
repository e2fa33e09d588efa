#!/usr/bin/env bash
# device-sampling-profile.sh: where CUDA decode time goes (issues 15 and 17), one
# call: for each model of PROFILE_MODELS ("name:preset:type", synthetic files with
# the real shapes; default the 1B Q8_0 shape), `samepage bench decode` greedy and
# --sampled at PROFILE_DEPTHS (default 0,1024), then SP_CUDA_TIMING=1 (GPU time
# per list) and =2 (per command, graphs off; the reports name the ops) at the
# first and last depth. Needs SP_PACK (scripts/pack-device.sh) or an unpacked
# build-dev-bin. Output under $OUT; the last lines are a summary.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"; cd "$root"
out="${OUT:-$root/device-out}"; mkdir -p "$out"
if [[ -f "${SP_PACK:-}" ]]; then rm -rf build-dev-bin; mkdir -p build-dev-bin; tar xJf "$SP_PACK" -C build-dev-bin; fi
b=$root/build-dev-bin; sp=$b/samepage; lib=$root/build-dev-lib/libsamepage_cuda.so; mkdir -p "$(dirname $lib)"
export LD_LIBRARY_PATH="$b:${LD_LIBRARY_PATH:-}" PATH=/usr/local/cuda/bin:$PATH SP_CUDA_LIB=$lib
[[ -s $lib ]] || JOBS=16 scripts/build-cuda-lib.sh $lib > $out/build.txt 2>&1 || { echo "build failed"; tail $out/build.txt; exit 1; }
depths=${PROFILE_DEPTHS:-0,1024}; first=${depths%%,*}; last=${depths##*,}
for spec in ${PROFILE_MODELS:-l1b-q8_0:llama-3.2-1b:q8_0}; do
  IFS=: read -r name preset type <<<"$spec"
  m=$root/build-dev-models/$name.gguf; mkdir -p "$(dirname $m)"
  [[ -s $m ]] || $b/synth_gguf --out $m --preset $preset --type $type >/dev/null
  for mode in "" --sampled; do
    timeout 100 $sp bench decode --backend cuda --model $m --depths $depths --tokens 128 --runs 3 $mode --json \
      > $out/${name}_decode${mode:+_sampled}.json 2>&1
    for d in $first $last; do
      SP_CUDA_TIMING=1 timeout 100 $sp bench decode --backend cuda --model $m --depths $d --tokens 64 --runs 1 $mode \
        > $out/${name}_timing1_d$d${mode:+_sampled}.txt 2>&1
      [[ -z $mode || $d == $first ]] && SP_CUDA_TIMING=2 timeout 100 $sp bench decode --backend cuda --model $m \
        --depths $d --tokens 64 --runs 1 $mode > $out/${name}_timing2_d$d${mode:+_sampled}.txt 2>&1
    done
  done
done
for f in $out/*_decode*.json; do echo "== $(basename $f)"; grep '^{' $f | grep -o '"depth": [0-9]*\|"tok_s": [0-9.]*' | tr '\n' ' '; echo; done
for f in $out/*_timing*.txt; do echo "== $(basename $f)"; grep -E "cuda timing" $f | cut -c24- | head -16; done
