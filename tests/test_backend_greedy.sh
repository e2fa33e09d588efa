#!/usr/bin/env bash
# test_backend_greedy.sh SAMEPAGE MODEL BACKEND [TOKENS]: greedy text on
# BACKEND equals the CPU backend's, through `samepage run` as a user runs
# it: TOKENS tokens (default 8) in a 256-token context, short because
# lavapipe computes a Vulkan device on the CPU, slowly. The CPU backend is
# the reference every backend is held to (docs/BACKENDS.md).
# The prompt, through the CLI's chat template, is token for token the
# fixture's chat_chatml (tests/fixtures/greedy_smollm2.json, 42 ids):
# llama.cpp's top-1/top-2 logit margin is at least 0.89 at each of the 7
# tokens of its answer, far above what summation order moves (NEAR_TIE,
# test_llm_greedy.c), so two correct backends cannot part ways on it.
# backend_parity measures the logits themselves. Run through
# with_backend.sh, so a machine without BACKEND skips.
set -u
bin="$1"; model="$2"; backend="$3"; tokens="${4:-8}"
[[ -r "$model" ]] || { echo "SKIP: no model at $model"; exit 77; }
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0

# same_text NAME ARGS...: the greedy text of ARGS on the CPU and on BACKEND.
same_text() {
  local name="$1"; shift
  "$bin" run --model "$model" --backend cpu --ctx 256 --temp 0 -n "$tokens" "$@" > "$tmp/cpu" 2> "$tmp/cpu.err"
  local cpu_rc=$?
  "$bin" run --model "$model" --backend "$backend" --ctx 256 --temp 0 -n "$tokens" "$@" > "$tmp/dev" 2> "$tmp/dev.err"
  local dev_rc=$?
  if [[ $cpu_rc -eq 0 && $dev_rc -eq 0 && -s "$tmp/cpu" ]] && cmp -s "$tmp/cpu" "$tmp/dev"; then
    pass=$((pass + 1)); echo "ok   $name: $(tr '\n' ' ' < "$tmp/dev")"
  else
    fail=$((fail + 1)); echo "FAIL $name (exit cpu $cpu_rc, $backend $dev_rc)"
    echo "  cpu:      $(tr '\n' ' ' < "$tmp/cpu") $(tail -1 "$tmp/cpu.err")"
    echo "  $backend: $(tr '\n' ' ' < "$tmp/dev") $(tail -1 "$tmp/dev.err")"
  fi
}

same_text "chat prompt" "What is the capital of France? Answer in one sentence."
echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
