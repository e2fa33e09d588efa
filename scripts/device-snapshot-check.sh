#!/usr/bin/env bash
# device-snapshot-check.sh: snapshots across backends, on a GPU machine, in
# one call (issue 5). Needs build/ from scripts/build.sh (samepage,
# synth_gguf); compiles libsamepage_cuda.so here with nvcc.
#  1. a conversation saved on CUDA continues on the CPU, and the other way;
#     the continuation is compared token by token with the same backend's
#     own continuation (numerics differ across backends, so tokens may part
#     after a near-tie: we report where);
#  2. `samepage bench snapshot` on CUDA: restore vs re-prefill.
# Output: logs and JSON under $OUT (or ./device-out), a table last.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"; cd "$root"
out="${OUT:-$root/device-out}"; mkdir -p "$out"
b=${SP_BIN:-build}; sp=$b/samepage; m=/tmp/smol-q4_1.gguf
export PATH=/usr/local/cuda/bin:$PATH
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $out/card.txt
scripts/build-cuda-lib.sh $b/libsamepage_cuda.so || exit 1
export SP_CUDA_LIB=$root/$b/libsamepage_cuda.so
$b/synth_gguf --out $m --preset smollm2-135m --type q4_1 > /dev/null || exit 1

tokens() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['text'])"; }
cont() { # backend snapshot -> continuation text
  $sp run --backend "$1" --model $m --resume "$2" -n 24 --json "Go on." 2>>$out/err.txt | tokens; }
rows=()
for pair in "cuda cpu" "cpu cuda"; do
  set -- $pair
  $sp run --backend $1 --model $m --temp 0 --repeat-penalty 1 -n 16 --save /tmp/$1.snap "Hello there" \
      > /dev/null 2>>$out/err.txt || { rows+=("save on $1: FAILED"); continue; }
  same=$(cont $1 /tmp/$1.snap); other=$(cont $2 /tmp/$1.snap); rc=$?
  n=$(python3 -c "import sys; a,b=sys.argv[1],sys.argv[2]; i=0
while i<min(len(a),len(b)) and a[i]==b[i]: i+=1
print(i, len(a))" "$same" "$other")
  rows+=("saved on $1, resumed on $2: rc=$rc, first $n characters equal to $1's own continuation")
done
timeout 300 $sp bench snapshot --backend cuda --model $m --contexts 24,512,4096 --json > $out/bench_snapshot_cuda.json 2>>$out/err.txt
echo "== bench snapshot (cuda): $(cat $out/bench_snapshot_cuda.json)"
timeout 300 $sp bench snapshot --backend cpu --model $m --contexts 24,512 --json > $out/bench_snapshot_cpu.json 2>>$out/err.txt
echo "== bench snapshot (cpu, same machine): $(cat $out/bench_snapshot_cpu.json)"
tail -5 $out/err.txt
printf '%s\n' "${rows[@]}"
