#!/usr/bin/env bash
# test_hostile_special_files.sh SAMEPAGE SYNTH_GGUF WORKDIR: special files
# named on the command line (issue 13, item 7). A FIFO, a directory, a
# character device and an empty /proc file given to every CLI entry that
# reads a user-named file (run -m, exec, run --resume, kv export, kv
# import) are refused at once, naming the kind; none may hang (each run is
# under `timeout 5`, so a hang fails as exit 124 instead of blocking).
set -u
bin="$1" synth="$2" work="$3"
rm -rf "$work" && mkdir -p "$work" || exit 1
failures=0 total=0

"$synth" --out "$work/model.gguf" --vocab 300 --embd 32 --layers 2 --heads 2 --ff 64 --type q4_1 > /dev/null || exit 1
model="$work/model.gguf"
"$bin" run --backend cpu --model "$model" --ctx 64 --temp 0 -n 2 --raw --save "$work/good.snap" hi \
  > /dev/null 2> "$work/err" || { cat "$work/err"; exit 1; }
"$bin" kv export "$work/good.snap" "$work/good.safetensors" 2> "$work/err" || { cat "$work/err"; exit 1; }

mkfifo "$work/fifo" && mkdir "$work/dir" || exit 1
# The special file, then the words its refusal must contain.
kinds=("$work/fifo|is a FIFO" "$work/dir|is a directory" "/dev/null|is a character device"
       "/proc/self/status|file is empty")

# expect NAME WORDS -- command...: exit 125 within 5 s, and WORDS on stderr.
expect() {
  local name="$1" words="$2"
  shift 3
  total=$((total + 1))
  local start=$SECONDS
  timeout 5 "$@" < /dev/null > /dev/null 2> "$work/err"
  local rc=$? took=$((SECONDS - start))
  if [[ $rc -eq 125 ]] && grep -qF "$words" "$work/err"; then
    echo "ok   $name (${took}s): $(tr '\n' ' ' < "$work/err")"
  else
    failures=$((failures + 1))
    echo "FAIL $name: exit $rc$([[ $rc -eq 124 ]] && echo ' (hung: killed after 5 s)'), stderr: $(tr '\n' ' ' < "$work/err")"
  fi
}

for entry in "${kinds[@]}"; do
  path="${entry%%|*}" words="${entry#*|}"
  expect "run -m $path" "$words" -- "$bin" run --backend cpu -m "$path" -n 1 hi
  expect "exec $path" "$words" -- "$bin" exec --backend cpu "$path"
  expect "run --resume $path" "$words" -- "$bin" run --backend cpu -m "$model" --resume "$path" -n 1 hi
  expect "kv export $path OUT" "$words" -- "$bin" kv export "$path" "$work/out.safetensors"
  expect "kv import $path IN OUT" "$words" -- "$bin" kv import "$path" "$work/good.safetensors" "$work/out.snap" --model "$model"
  expect "kv import S $path OUT" "$words" -- "$bin" kv import "$work/good.snap" "$path" "$work/out.snap" --model "$model"
  expect "kv import S IN OUT --model $path" "$words" -- "$bin" kv import "$work/good.snap" "$work/good.safetensors" "$work/out.snap" --model "$path"
  # An output: never written into a FIFO (it would block) or a device.
  [[ "$path" == /proc/* ]] || expect "kv export S $path" "$words" -- "$bin" kv export "$work/good.snap" "$path"
done
echo "$((total - failures))/$total special-file cases refused cleanly"
[[ $failures -eq 0 ]]
