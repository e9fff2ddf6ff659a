#!/usr/bin/env bash
# Builds the browser module into www/pkg/ and www/pkg-relaxed/ (duoclip.js + duoclip_bg.wasm
# each: plain SIMD128 and relaxed SIMD), so that www/ is the whole static site.
#
#   scripts/build-web.sh [--profile web|wasm-check]
#
# web (default): the shipped build (size-optimized, fat LTO) then wasm-opt -Oz;
# wasm-check: a fast unoptimized build for development and tests (no wasm-opt).
# CARGO_TARGET_DIR is respected. Needs: rustup target wasm32-unknown-unknown; wasm-bindgen-cli
# at exactly the wasm-bindgen version of Cargo.lock (installed if missing); for the web
# profile, node + npm: wasm-opt from npm binaryen@132, a devDependency of package.json
# (`npm ci` runs if it is missing; Debian's binaryen 108 writes modules that fail to load).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=web
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="${2:?--profile needs web or wasm-check}"; shift 2 ;;
    --profile=*) profile="${1#--profile=}"; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "build-web.sh: unknown argument '$1'; usage: build-web.sh [--profile web|wasm-check]" >&2; exit 2 ;;
  esac
done
case "$profile" in
  web|wasm-check) ;;
  *) echo "build-web.sh: --profile '$profile' is not accepted; use web or wasm-check" >&2; exit 2 ;;
esac

# A fresh Debian machine: the wasm32 target, and Node + npm for wasm-opt (web profile).
rustup target add wasm32-unknown-unknown >/dev/null
if [ "$profile" = web ] && ! command -v npm >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "build-web.sh: needs Node.js and npm (Debian: apt-get install nodejs npm)" >&2
    exit 1
  fi
fi

wbg_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
[ -n "$wbg_version" ] || { echo "build-web.sh: no wasm-bindgen in Cargo.lock" >&2; exit 1; }
if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $wbg_version"; then
  echo "build-web.sh: installing wasm-bindgen-cli $wbg_version (the version in Cargo.lock)" >&2
  # Without --locked: with it, a locked dependency is missing from the registry (BROWSER.md).
  cargo install wasm-bindgen-cli --version "=$wbg_version"
fi

# Two builds: www/pkg (SIMD128, every browser with WebGPU) and www/pkg-relaxed (Cargo feature
# relaxed-simd: our GEMM kernel with relaxed SIMD's fused multiply-add, Chrome/Edge 114+),
# which worker.js prefers where the browser validates it. They differ in our crate only, so
# the second build reuses every dependency of the first.
build_variant() { # OUT-DIR FEATURES [WASM-OPT FLAGS]
  local out=$1 start
  start=$(date +%s)
  cargo build --target wasm32-unknown-unknown --no-default-features --features "$2" --profile "$profile"
  local raw="$target_dir/wasm32-unknown-unknown/$profile/duoclip.wasm"
  echo "build-web.sh: $out: cargo build ($profile) took $(( $(date +%s) - start )) s; raw module $(stat -c %s "$raw") bytes"
  mkdir -p "$out"
  wasm-bindgen --target web --out-dir "$out" --out-name duoclip "$raw"
  local wasm="$out/duoclip_bg.wasm"
  echo "build-web.sh: $out: after wasm-bindgen $(stat -c %s "$wasm") bytes"
  if [ "$profile" = web ]; then
    node "$wasm_opt" -Oz ${3:-} "$wasm" -o "$wasm.opt"
    mv "$wasm.opt" "$wasm"
    echo "build-web.sh: $out: after wasm-opt -Oz $(stat -c %s "$wasm") bytes ($(gzip -9 -c "$wasm" | wc -c) gzipped)"
  fi
}

wasm_opt=node_modules/binaryen/bin/wasm-opt
if [ "$profile" = web ] && ! [ -e "$wasm_opt" ]; then
  echo "build-web.sh: installing the npm devDependencies (binaryen's wasm-opt) with npm ci" >&2
  npm ci >&2
fi
target_dir="${CARGO_TARGET_DIR:-target}"
build_variant www/pkg web
build_variant www/pkg-relaxed relaxed-simd --enable-relaxed-simd
# The shipped tiny test bundle's weights are the test fixture's file byte for byte (its
# manifest records that file's sha256; tests/convert.rs checks both): one committed copy.
cp tests/fixtures/openclip_tiny/model.safetensors www/models/tiny/model.safetensors
echo "build-web.sh: www/pkg, www/pkg-relaxed and www/models/tiny ready ($profile)"
