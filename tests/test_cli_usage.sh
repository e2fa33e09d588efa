#!/usr/bin/env bash
# test_cli_usage.sh SAMEPAGE: the command line of every subcommand (issue 14,
# part 8). For each one: an unknown option is refused by name (exit 2, the
# subcommand named too); --help exits 0 and lists every option the
# subcommand parses; an option given without its value is refused (exit 2).
# The top level (no arguments, help, --help, -h, an unknown command) lists
# every subcommand. The expected options are the fixed lists below, written
# from the parsers in src/cli/, never read from the binary's output.
set -u
bin="$1"
pass=0; fail=0

ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [[ -n "${2:-}" ]] && echo "$2" | sed 's/^/     /'; }

# expect NAME WANT_CODE NEEDLE... -- COMMAND...: runs COMMAND (stdin closed),
# checks its exit code and that each NEEDLE occurs in its combined output.
expect() {
  local name="$1" want="$2"; shift 2
  local needles=()
  while [[ "$1" != "--" ]]; do needles+=("$1"); shift; done
  shift
  local out code missing=""
  out="$("$@" < /dev/null 2>&1)"; code=$?
  for n in "${needles[@]}"; do [[ "$out" == *"$n"* ]] || missing+=" [$n]"; done
  if [[ $code -eq $want && -z "$missing" ]]; then ok "$name"
  else bad "$name: exit $code (want $want), missing:${missing:- none}" "$(echo "$out" | head -8)"; fi
}

# lists_option TEXT OPT: whether TEXT names OPT as an option (a whole word,
# so -n is not found inside --n-predict).
lists_option() { grep -qE -- "(^|[][ ,|(])$2([] ,=|)]|$)" <<< "$1"; }

# ---- the fixed lists: command, then its options ----
# Options with a value (refused without one) and flags (no value), per
# subcommand; "argv..." is what makes the rest of the line valid, so the
# only fault is the one under test.
declare -A valued flags
valued[run]="-m --model -p --prompt -n --n-predict --temp --top-k --top-p --min-p --repeat-penalty
             --repeat-last-n --seed --ctx --batch --system --backend --timeout --save --resume --residency
             --isolation --threads"
flags[run]="--raw --self-contained --sample-full --json"
valued[exec]="--dir --backend --memory-limit --threads --isolation --timeout --cpu-timeout"
flags[exec]=""
valued["kv export"]=""
flags["kv export"]=""
valued["kv import"]="--model"
flags["kv import"]=""
valued["bench zerocopy"]="--backend"
flags["bench zerocopy"]="--json"
valued["bench snapshot"]="--contexts --model --backend"
flags["bench snapshot"]="--json"
valued["bench actors"]="--counts --ctx --model --backend --decode-tokens --batch-window-us"
flags["bench actors"]="--json"
valued["bench prefill"]="--tokens --runs --batch --model --backend"
flags["bench prefill"]="--same-actor --json"
valued["bench decode"]="--depths --tokens --runs --batch --model --backend"
flags["bench decode"]="--sampled --sample-full --json"
valued["bench batch"]="--actors --tokens --prompt-tokens --window-us --model --backend"
flags["bench batch"]="--check --json"
valued["bench soak"]="--actors --seconds --ctx --bound --model"
flags["bench soak"]="--json"
valued[serve]="-m --model --host --port --backend --isolation --sessions --max-live --ctx --max-body --api-keys
  --max-concurrent-per-tenant --max-import --max-memory --client-timeout --header-timeout --max-connections
  --max-connections-per-ip --max-templates --batch-window-us --spare-actors"
flags[serve]=""
commands=("run" "serve" "exec" "kv export" "kv import" "bench zerocopy" "bench snapshot" "bench actors" "bench prefill"
          "bench decode" "bench batch" "bench soak")
# Positional arguments after an unknown option, so that only the option is wrong.
declare -A rest
rest[exec]="guest.wasm"; rest["kv export"]="a.snap b.safetensors"; rest["kv import"]="a.snap b.safetensors c.snap"

for cmd in "${commands[@]}"; do
  read -r -a words <<< "$cmd"
  read -r -a positional <<< "${rest[$cmd]:-}"
  # An unknown option, alone, with a value after it, and last on the line.
  expect "$cmd: unknown option refused" 2 "samepage $cmd: unknown option --no-such-flag" \
    -- "$bin" "${words[@]}" --no-such-flag "${positional[@]}"
  expect "$cmd: unknown option with a value refused" 2 "samepage $cmd: unknown option --no-such-flag" \
    -- "$bin" "${words[@]}" --no-such-flag 7 "${positional[@]}"
  [[ ${#positional[@]} -eq 0 ]] &&
    expect "$cmd: unknown option last refused" 2 "samepage $cmd: unknown option --no-such-flag" \
      -- "$bin" "${words[@]}" --no-such-flag
  expect "$cmd: unknown short option refused" 2 "samepage $cmd: unknown option -Z" \
    -- "$bin" "${words[@]}" -Z "${positional[@]}"
  # The refusal prints this subcommand's usage.
  expect "$cmd: refusal shows its usage" 2 "usage: samepage $cmd" -- "$bin" "${words[@]}" --no-such-flag

  # --help and -h: exit 0, every option listed.
  for h in --help -h; do
    out="$("$bin" "${words[@]}" "$h" 2>/dev/null < /dev/null)"; code=$?
    missing=""
    for opt in ${valued[$cmd]} ${flags[$cmd]} --help; do lists_option "$out" "$opt" || missing+=" $opt"; done
    if [[ $code -eq 0 && "$out" == *"usage: samepage $cmd"* && -z "$missing" ]]; then ok "$cmd $h lists every option"
    else bad "$cmd $h: exit $code, options not listed:${missing:- none}" "$(echo "$out" | head -5)"; fi
  done
  # A subcommand that takes --backend names every backend there is.
  if lists_option "${valued[$cmd]}" --backend; then
    out="$("$bin" "${words[@]}" --help 2>/dev/null < /dev/null)"
    if grep -q -- "--backend cpu|cuda|vulkan|auto" <<< "$out"; then ok "$cmd --help names every backend"
    else bad "$cmd --help does not name cpu|cuda|vulkan|auto" "$(grep -- --backend <<< "$out")"; fi
  fi

  # Every option with a value, given last without one (exec's options end
  # at the guest, so there it comes alone).
  [[ "$cmd" == exec ]] && positional=()
  for opt in ${valued[$cmd]}; do
    expect "$cmd $opt without its value refused" 2 "samepage $cmd: $opt needs a value" \
      -- "$bin" "${words[@]}" "${positional[@]}" "$opt"
  done
done

# ---- the top level and the command groups ----
top_list=("run" "serve" "exec" "kv export" "kv import" "bench zerocopy" "bench snapshot" "bench actors" "bench prefill"
          "bench soak" "help")
for how in "" help --help -h frobnicate; do
  out="$("$bin" $how 2>&1 < /dev/null)"; code=$?
  want=0; [[ -z "$how" || "$how" == frobnicate ]] && want=2
  missing=""
  for c in "${top_list[@]}"; do grep -qE "^  $c( |$)" <<< "$out" || missing+=" [$c]"; done
  # One description line per command: nothing listed without text after it.
  if [[ $code -eq $want && -z "$missing" ]]; then ok "samepage ${how:-(no arguments)}: exit $code, every command listed"
  else bad "samepage ${how:-(no arguments)}: exit $code (want $want), not listed:${missing:- none}" "$out"; fi
done
expect "unknown command named" 2 'unknown command "frobnicate"' -- "$bin" frobnicate
expect "unknown top-level option named" 2 "unknown option --frobnicate" -- "$bin" --frobnicate

for how in --help -h help; do
  expect "bench $how lists every benchmark" 0 zerocopy snapshot actors prefill soak -- "$bin" bench "$how"
  expect "kv $how lists export and import" 0 "kv export" "kv import" -- "$bin" kv "$how"
done
expect "bench without a benchmark" 2 "missing the benchmark" zerocopy soak -- "$bin" bench
expect "unknown benchmark named" 2 'unknown benchmark "frobnicate"' -- "$bin" bench frobnicate
expect "kv without export or import" 2 "missing export or import" "kv import" -- "$bin" kv
expect "unknown kv command named" 2 'unknown command "frobnicate"' -- "$bin" kv frobnicate
expect "unknown kv option named" 2 "samepage kv: unknown option --frobnicate" -- "$bin" kv --frobnicate

# ---- positional arguments the commands do not take ----
expect "kv export: a third path refused" 2 'unexpected argument "c"' -- "$bin" kv export a b c
expect "kv import: a missing path refused" 2 "needs 3 paths, 2 given" -- "$bin" kv import a b
expect "bench actors: a stray argument refused" 2 'unexpected argument "stray"' -- "$bin" bench actors stray
expect "bench snapshot: a stray argument refused" 2 'unexpected argument "stray"' -- "$bin" bench snapshot stray
expect "run: two prompts refused" 2 "more than one prompt" -- "$bin" run one two

echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
