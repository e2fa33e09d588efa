#!/usr/bin/env bash
# test_tok_vocab.sh BIN ROOT [ARG...]: finds llama.cpp's vocab test files
# through scripts/fetch-llama-vocab.sh (never downloading) and runs
# `BIN MODELS_DIR ARG...`; exits 77 (skipped) when they are not on this
# machine. Used by test_tok_vocab and test_tok_chat.
set -uo pipefail
bin="$1" root="$2"
shift 2
models="$("$root/scripts/fetch-llama-vocab.sh" --no-download)" || {
  echo "SKIP: llama.cpp vocab files missing; run scripts/fetch-llama-vocab.sh"
  exit 77
}
exec "$bin" "$models" "$@"
