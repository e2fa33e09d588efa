#!/bin/sh
# test_batch_cuda.sh SAMEPAGE MODEL: cross-actor batching on the CUDA
# backend (issue 18, docs/BATCHING.md): 2, 8 and 32 conversations of the
# real model, batched, each equal to its lone run in tokens and memory; a
# snapshot taken while batched continues alike; a neighbour tampering with
# its weights changes no one else (`samepage bench batch --check`).
# Exit 77 (skipped) without the model, the CUDA library or a device.
cli=$1 model=$2
[ -r "$model" ] || { echo "skipped: no model"; exit 77; }
err=$(mktemp) || exit 1
trap 'rm -f "$err"' EXIT
SP_CUDA_BATCH=1 "$cli" bench batch --backend cuda --model "$model" --actors 2,8,32 --tokens 12 --prompt-tokens 8 --check 2>"$err"
rc=$?
cat "$err" >&2
if [ $rc -ne 0 ] && grep -q "cuda backend: \(cannot load\|no CUDA device\)" "$err"; then
  echo "skipped: no CUDA backend here"
  exit 77
fi
exit $rc
