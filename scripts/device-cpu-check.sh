#!/usr/bin/env bash
# device-cpu-check.sh: the CPU kernel tables on the GPU machine's host CPU.
#
# This machine (the project's) may lack AVX-512; the GPU machine's Intel
# Xeon has it, so every table gets its op-level and model-level checks
# somewhere (issue 12). Runs, on each table the CPU has (generic, avx2,
# avx512):
#   - test_cpu_kernels: every table against generic, bit for bit;
#   - test_cpu_attention: attention on every table and thread count, bit
#     for bit, and against a reference in double;
#   - test_cpu_backend: every op through the backend, best table and avx2;
#   - test_llm_greedy and test_run_cli per table, through
#     tests/with_cpu_table.sh (a table the CPU lacks is reported skipped).
# Needs the host binaries in $SP_BIN (scripts/pack-device.sh --cpu packs
# them with the CPU test binaries) and the default model at $SP_TEST_MODEL (98 MB: carried in two
# parts over two calls, see below). Logs go to $OUT (or ./device-out); the
# last lines are a table: check, table, result.
#
# Carrying the model: call 1 `scripts/device-cpu-check.sh stash PART`
# copies one part to /tmp/sp-model-parts; call 2 (within the machine's warm
# period) `SP_MODEL_PARTS=/tmp/sp-model-parts:.carry/part2 scripts/device-cpu-check.sh`
# joins them and checks the sha256 before use.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"; cd "$root"
out="${OUT:-$root/device-out}"; mkdir -p "$out/logs"
parts=/tmp/sp-model-parts
if [[ "${1:-}" == stash ]]; then
  mkdir -p $parts && cp "$2" $parts/ && ls -la $parts; exit $?
fi
b="$(cd "${SP_BIN:-build}" && pwd)"
export LD_LIBRARY_PATH="$b:${LD_LIBRARY_PATH:-}" # the server libraries packed beside the binaries
model="${SP_TEST_MODEL:-/tmp/sp-model.gguf}"
want_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [[ ! -r "$model" && -n "${SP_MODEL_PARTS:-}" ]]; then
  IFS=: read -ra dirs <<< "$SP_MODEL_PARTS"
  for n in 1 2 3; do for d in "${dirs[@]}"; do [[ -r "$d/model.part$n" ]] && cat "$d/model.part$n"; done; done > "$model"
fi
have_model=0
[[ -r "$model" ]] && [[ "$(sha256sum < "$model" | cut -c1-64)" == "$want_sha" ]] && have_model=1
rows=(); row() { rows+=("$(printf '%-26s %-8s %s' "$1" "$2" "$3")"); echo "== $1 $2: $3"; }
result() { case $1 in 0) echo pass;; 77) echo skipped;; *) echo "FAIL (rc $1)";; esac; }

lscpu | grep -E "Model name|^CPU\(s\)" | tee $out/logs/cpu.txt
grep -o -w -E 'avx2|avx512[a-z_0-9]*|avx_vnni|amx[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' ' | tee -a $out/logs/cpu.txt; echo
export SP_CUDA_LIB=/nonexistent/cpu-check-uses-the-cpu-backend.so

$b/test_cpu_kernels > $out/logs/test_cpu_kernels.txt 2>&1; rc=$?
row test_cpu_kernels all "$(result $rc): $(tail -1 $out/logs/test_cpu_kernels.txt)"
$b/test_cpu_attention > $out/logs/test_cpu_attention.txt 2>&1; rc=$?
row test_cpu_attention all "$(result $rc): $(tail -1 $out/logs/test_cpu_attention.txt)"
for t in avx512 avx2; do
  tests/with_cpu_table.sh $b/cpu_table $t $b/test_cpu_backend --no-bench > $out/logs/test_cpu_backend_$t.txt 2>&1; rc=$?
  row test_cpu_backend $t "$(result $rc): $(tail -1 $out/logs/test_cpu_backend_$t.txt)"
done
if [[ $have_model -eq 0 ]]; then
  row "model-level checks" all "skipped: no model with sha256 $want_sha at $model"
else
  for t in ${SP_TABLES:-avx512 avx2 generic}; do
    timeout 600 tests/with_cpu_table.sh $b/cpu_table $t $b/test_llm_greedy $b/guests \
      tests/fixtures/greedy_smollm2.json "$model" > $out/logs/test_llm_greedy_$t.txt 2>&1; rc=$?
    row test_llm_greedy $t "$(result $rc): $(tail -1 $out/logs/test_llm_greedy_$t.txt)"
    timeout 300 tests/with_cpu_table.sh $b/cpu_table $t tests/test_run_cli.sh $b/samepage "$model" \
      > $out/logs/test_run_cli_$t.txt 2>&1; rc=$?
    row test_run_cli $t "$(result $rc): $(tail -1 $out/logs/test_run_cli_$t.txt)"
  done
fi
echo; echo "CPU: $(grep 'Model name' $out/logs/cpu.txt | sed 's/.*: *//')"
printf '%-26s %-8s %s\n' check table result; printf '%s\n' "${rows[@]}"
