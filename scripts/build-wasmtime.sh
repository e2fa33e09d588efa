#!/usr/bin/env bash
# Builds Wasmtime's C API (crates.io wasmtime-c-api-impl, pinned in
# third_party/wasmtime-c-api/Cargo.toml + Cargo.lock) once, and caches the
# static library and headers outside the build tree, keyed by the crate
# manifest and lock file (hence by version and features).
#
# Prints the cache directory on stdout (lib/ and include/ inside it).
# Usage: scripts/build-wasmtime.sh
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
crate="$here/third_party/wasmtime-c-api"
cache_root="${SAMEPAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/samepage}"
key="$(cat "$crate/Cargo.toml" "$crate/Cargo.lock" 2>/dev/null | sha256sum | cut -c1-16)"
out="$cache_root/wasmtime-48.0.8-$key"

if [[ -f "$out/lib/libsamepage_wasmtime.a" && -f "$out/include/wasmtime.h" ]]; then
  echo "$out"; exit 0
fi

if ! command -v cargo >/dev/null; then
  echo "samepage: cargo not found; installing Rust with rustup is required (https://rustup.rs)" >&2
  exit 1
fi

echo "samepage: building Wasmtime C API 48.0.8 with cargo (first build only, several minutes on 2 cores) ..." >&2
target="$cache_root/cargo-target"
mkdir -p "$target"
locked=()
[[ -f "$crate/Cargo.lock" ]] && locked=(--locked)
CARGO_TARGET_DIR="$target" cargo build --release "${locked[@]}" \
  --manifest-path "$crate/Cargo.toml" >&2

# The impl crate's build script installs headers (with a generated conf.h
# listing the enabled features) into its OUT_DIR/include.
inc="$(ls -td "$target"/release/build/wasmtime-c-api-impl-*/out/include 2>/dev/null | head -1)"
[[ -n "$inc" && -f "$inc/wasmtime.h" ]] || { echo "samepage: Wasmtime headers not found under $target" >&2; exit 1; }

tmp="$out.tmp.$$"
rm -rf "$tmp"; mkdir -p "$tmp/lib"
cp "$target/release/libsamepage_wasmtime.a" "$tmp/lib/"
cp -r "$inc" "$tmp/include"
rm -rf "$out"; mv "$tmp" "$out"
echo "samepage: Wasmtime C API cached in $out" >&2
echo "$out"
