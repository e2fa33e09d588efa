#!/usr/bin/env bash
# device-vulkan-check.sh: issue 19 on the GPU machine, one call (and issue
# 18's batch check again, while the CUDA library is at hand):
#   - test_vulkan_ops, test_vulkan_local and the hostile suite on the NVIDIA Vulkan driver;
#   - `samepage bench zerocopy --backend vulkan` (on a discrete card the
#     device address is not the host pointer: read RSS and matmul there);
#   - backend_parity cuda vs vulkan on the SmolLM2 shape;
#   - decode (depth 0, 64 tokens) and a 512-token prefill of SmolLM2 Q4_1
#     and the 1B Q8_0 shape on --backend vulkan beside --backend cuda;
#   - `samepage run` decode on vulkan with --residency weights and none.
# Needs SP_PACK (scripts/pack-device.sh) and VK_BUNDLE (scripts/pack-vulkan-device.sh,
# default .carry/vk). Logs and JSON go to $OUT; the last lines are a table.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"; cd "$root"
out="${OUT:-$root/device-out}"; mkdir -p "$out/logs"; log=$out/logs
if [[ -f "${SP_PACK:-}" ]]; then rm -rf build-dev-bin; mkdir -p build-dev-bin; tar xJf "$SP_PACK" -C build-dev-bin; fi
b=$root/build-dev-bin; sp=$b/samepage; vk=$(cd "${VK_BUNDLE:-.carry/vk}" && pwd); mdir=$root/build-dev-models; mkdir -p $mdir
lib=$root/build-dev-lib/libsamepage_cuda.so; mkdir -p "$(dirname $lib)"
export LD_LIBRARY_PATH="$vk/lib:$b:${LD_LIBRARY_PATH:-}" PATH=/usr/local/cuda/bin:$PATH SP_CUDA_LIB=$lib \
       SP_VULKAN_LIB=$vk/libsamepage_vulkan.so SP_GUEST_DIR=$b/guests
t_start=$(date +%s); elapsed() { echo $(( $(date +%s) - t_start )); }
summary=(); add() { summary+=("$*"); echo "== [$(elapsed)s] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $log/card.txt
synth() { local f=$mdir/$1.gguf; [[ -s $f ]] || $b/synth_gguf --out "$f" --preset "$2" --type "$3" >/dev/null; echo "$f"; }
[[ -s $lib ]] || JOBS=16 SP_TEST_HOOKS=1 scripts/build-cuda-lib.sh $lib > $log/build.txt 2>&1 || add "CUDA library: build failed"
smol=$(synth smol-q4_1 smollm2-135m q4_1); l1b=$(synth l1b-q8_0 llama-3.2-1b q8_0)

SP_CUDA_BATCH=1 timeout 150 tests/test_batch_cuda.sh $sp $smol > $log/batch_check.txt 2>&1; rc=$?
add "issue 18: test_batch_cuda rc=$rc"; grep -E '^ +[0-9]+ |differ|changed' $log/batch_check.txt | head -8
for t in test_vulkan_ops test_vulkan_local; do
  timeout 150 $vk/$t > $log/$t.txt 2>&1; rc=$?
  add "$t rc=$rc: $(tail -1 $log/$t.txt)"; grep -E '^FAIL' $log/$t.txt | head -5
done
SP_TEST_BACKEND=vulkan timeout 120 $b/test_hostile > $log/hostile.txt 2>&1; rc=$?
add "test_hostile (vulkan) rc=$rc: $(tail -1 $log/hostile.txt)"
timeout 60 $sp bench zerocopy --backend vulkan --json > $out/zerocopy_vulkan.json 2> $log/zerocopy.err; rc=$?
add "bench zerocopy vulkan rc=$rc: $(grep -o '"pointer_identity": [a-z]*\|"rss_delta_zero_copy_mb": [0-9.]*\|"matmul_errors": [0-9]*' $out/zerocopy_vulkan.json | tr '\n' ' ')"
timeout 120 $b/backend_parity $b/guests $smol cuda vulkan 16 8 0.05 > $log/parity.txt 2>&1; rc=$?
add "backend_parity cuda vs vulkan (smol) rc=$rc: $(grep -E '^(prefill|decode)' $log/parity.txt | cut -c1-60 | tr '\n' ' ')"

timeout 60 $sp run --backend vulkan --model $smol --temp 0 -n 16 -p "Hello" > $log/run_vulkan.txt 2>&1; rc=$?
add "samepage run --backend vulkan (synthetic SmolLM2, 16 tokens) rc=$rc: $(tail -1 $log/run_vulkan.txt | cut -c1-100)"

echo "model | backend | decode tok/s (depth 0, 64 tokens) | prefill 512 ms (warm)" > $out/vulkan_table.txt
for m in $smol $l1b; do
  for be in cuda vulkan; do
    (( $(elapsed) > ${SP_DEADLINE:-480} )) && { add "$(basename $m) $be: skipped (time)"; continue; }
    timeout 90 $sp bench decode --backend $be --model $m --depths 0 --tokens 64 --runs 2 --json \
      > $out/decode_${be}_$(basename $m .gguf).json 2> $log/decode_$be.err
    timeout 90 $sp bench prefill --backend $be --model $m --tokens 512 --runs 2 --json \
      > $out/prefill_${be}_$(basename $m .gguf).json 2> $log/prefill_$be.err
    python3 - "$out" "$be" "$(basename $m .gguf)" >> $out/vulkan_table.txt <<'PY'
import json, sys
out, be, name = sys.argv[1:]
def last(p):
    try:
        return json.loads([l for l in open(p) if l.startswith("{")][-1])
    except Exception:
        return {}
d, p = last(f"{out}/decode_{be}_{name}.json"), last(f"{out}/prefill_{be}_{name}.json")
print(f"{name} | {be} | {d.get('tok_s', '-')} | {p.get('warm_ms', '-')}")
PY
  done
done
add "table:"; while read -r ln; do add "$ln"; done < $out/vulkan_table.txt
# the memory layer's effect on the same card: `samepage run` decode with and without resident copies
for m in $smol $l1b; do
  for r in weights none; do
    (( $(elapsed) > ${SP_DEADLINE:-480} )) && break
    timeout 60 $sp run --backend vulkan --residency $r --model $m --temp 0 -n 64 "Hello" > $log/run_res_$r.txt 2>&1
    add "$(basename $m .gguf) vulkan --residency $r: $(grep -o 'decode [0-9]* tokens, [0-9.]* tok/s' $log/run_res_$r.txt)"
  done
done
echo; printf '%s\n' "${summary[@]}"
