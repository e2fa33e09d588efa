#!/usr/bin/env bash
# device-ab.sh A_DIR B_DIR: CUDA decode of two builds, side by side, on one
# GPU in one call (a structural change must leave decode speed alone).
#
# Each DIR holds a source tree (src/, scripts/, include/: `git archive`) and
# spbin.tar.xz, that commit's host binaries (scripts/pack-device.sh). For
# each side this compiles libsamepage_cuda.so from its own source (the
# backend interface version must match its host binaries), then runs greedy
# decode (128 tokens, `samepage run --backend cuda --json`) on synthetic
# models of real shapes, A and B interleaved, 5 rounds, and prints the
# median tok/s of each and the ratio B / A. Logs go to $OUT (or ./device-out).
set -uo pipefail
a_dir="$(cd "$1" && pwd)"; b_dir="$(cd "$2" && pwd)"
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${OUT:-$root/device-out}"; mkdir -p "$out/logs"
export PATH=/usr/local/cuda/bin:$PATH
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $out/logs/card.txt
for side in a b; do
  dir=$a_dir; [[ $side == b ]] && dir=$b_dir
  mkdir -p /tmp/ab-$side/bin && tar xJf "$dir/spbin.tar.xz" -C /tmp/ab-$side/bin
  (cd "$dir" && scripts/build-cuda-lib.sh /tmp/ab-$side/bin/libsamepage_cuda.so /tmp/ab-$side/ptxas.txt) \
    > $out/logs/build_$side.txt 2>&1 || { echo "build $side failed"; tail -20 $out/logs/build_$side.txt; exit 1; }
done
mdir=/tmp/ab-models; mkdir -p $mdir
/tmp/ab-b/bin/synth_gguf --out $mdir/smol-q4_1.gguf --preset smollm2-135m --type q4_1 >/dev/null
/tmp/ab-b/bin/synth_gguf --out $mdir/l1b-q8_0.gguf --preset llama-3.2-1b --type q8_0 >/dev/null
decode() { # side model: one run's decode tok/s
  SP_CUDA_LIB=/tmp/ab-$1/bin/libsamepage_cuda.so timeout 120 /tmp/ab-$1/bin/samepage run --backend cuda \
    -m "$2" --raw -n 128 --temp 0 --repeat-penalty 1 --json "Hello there" 2>>$out/logs/runs.err |
    python3 -c "import json,sys; print(json.loads(sys.stdin.buffer.read().decode('utf-8','replace').strip().splitlines()[-1])['decode_tok_s'])"
}
printf '%-12s %10s %10s %7s\n' model "A tok/s" "B tok/s" "B/A"
for m in smol-q4_1 l1b-q8_0; do
  decode a $mdir/$m.gguf >/dev/null; decode b $mdir/$m.gguf >/dev/null # warm-up
  ra=(); rb=()
  for round in 1 2 3 4 5; do ra+=("$(decode a $mdir/$m.gguf)"); rb+=("$(decode b $mdir/$m.gguf)"); done
  echo "$m A: ${ra[*]} | B: ${rb[*]}" >> $out/logs/ab.txt
  python3 - "$m" "${ra[*]}" "${rb[*]}" <<'PY'
import statistics, sys
m, a, b = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
ma, mb = statistics.median(a), statistics.median(b)
print('%-12s %10.1f %10.1f %6.3fx' % (m, ma, mb, mb / ma))
PY
done
