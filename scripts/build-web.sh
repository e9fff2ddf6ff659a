#!/usr/bin/env bash
# Builds the browser module into www/pkg/, www/pkg-relaxed/, www/pkg-threads/ and
# www/pkg-threads-relaxed/ (duoclip.js + duoclip_bg.wasm each: SIMD128 or relaxed SIMD, one
# thread with WebGPU or a thread pool on the CPU; www/worker.js picks), then www/build-id.js
# (scripts/build-id.sh), so that www/ is the whole static site.
#
#   scripts/build-web.sh [--profile web|wasm-check]
#
# web (default): the shipped build (opt-level 3, fat LTO) then wasm-opt -Oz;
# wasm-check: a fast unoptimized build for development and tests (no wasm-opt).
# CARGO_TARGET_DIR is respected (the threaded builds use its threads/ subfolder). Needs: rustup
# target wasm32-unknown-unknown; the nightly toolchain $NIGHTLY with rust-src for the threaded
# builds (installed if missing); wasm-bindgen-cli
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
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
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

# Four builds. www/pkg (SIMD128, every browser with WebGPU) and www/pkg-relaxed (Cargo feature
# relaxed-simd: our GEMM kernel with relaxed SIMD's fused multiply-add, Chrome/Edge 114+) differ
# in our crate only, so the second reuses every dependency of the first. www/pkg-threads and
# www/pkg-threads-relaxed (feature threads: the CPU path on a pool of Web Workers, for
# cross-origin isolated pages) need std rebuilt with wasm atomics — nightly `-Z build-std`
# on a pinned toolchain — and so every dependency once more, in a target folder of their own.
NIGHTLY=nightly-2026-05-20
THREADS_RUSTFLAGS="-C target-feature=+simd128,+atomics,+bulk-memory,+mutable-globals"
build_variant() { # OUT-DIR FEATURES one-thread|threads [WASM-OPT FLAGS]
  local out=$1 start dir=$target_dir
  local cargo=(cargo build)
  if [ "$3" = threads ]; then
    dir=$target_dir/threads
    cargo=(env RUSTFLAGS="$THREADS_RUSTFLAGS" CARGO_TARGET_DIR="$dir"
      cargo "+$NIGHTLY" build -Z build-std=panic_abort,std)
  fi
  start=$(date +%s)
  "${cargo[@]}" --target wasm32-unknown-unknown --no-default-features --features "$2" --profile "$profile"
  local raw="$dir/wasm32-unknown-unknown/$profile/duoclip.wasm"
  echo "build-web.sh: $out: cargo build ($profile) took $(( $(date +%s) - start )) s; raw module $(stat -c %s "$raw") bytes"
  rm -rf "$out" && mkdir -p "$out"
  # A copy: the next variant's build rewrites $raw while this one is still being finished.
  cp "$raw" "$out/raw.wasm"
  # wasm-bindgen and wasm-opt run while the next variant compiles: a fat-LTO link keeps one
  # core busy, wasm-opt the other.
  finish_variant "$out" "${4:-}" &
  finishing+=("$!:$out")
}

# wasm-bindgen-rayon 1.3.0's no-bundler worker helper starts each pool thread with the
# deprecated two-argument init, and every thread then logs "using deprecated parameters for the
# initialization function" (its bundler helper was fixed upstream, this one not). The call is
# rewritten to the object form wasm-bindgen documents; a helper without that call is left
# alone (a fixed release), one whose call has another shape stops the build.
pool_init_without_warning() { # OUT-DIR
  local helper
  for helper in "$1"/snippets/wasm-bindgen-rayon-*/src/workerHelpers.no-bundler.js; do
    [ -e "$helper" ] || continue
    grep -q 'pkg.default({' "$helper" && continue
    grep -q 'await pkg.default(data.module, data.memory);' "$helper" || {
      echo "build-web.sh: $helper: the pool's init call is not the one this script rewrites" >&2
      return 1
    }
    sed -i 's/await pkg.default(data.module, data.memory);/await pkg.default({ module_or_path: data.module, memory: data.memory });/' "$helper"
  done
}

finish_variant() { # OUT-DIR [WASM-OPT FLAGS]: the JS bindings, then (web profile) wasm-opt
  local out=$1 start
  start=$(date +%s)
  wasm-bindgen --target web --out-dir "$out" --out-name duoclip "$out/raw.wasm"
  rm "$out/raw.wasm"
  pool_init_without_warning "$out"
  local wasm="$out/duoclip_bg.wasm"
  echo "build-web.sh: $out: after wasm-bindgen $(stat -c %s "$wasm") bytes"
  if [ "$profile" = web ]; then
    node "$wasm_opt" -Oz ${2:-} "$wasm" -o "$wasm.opt"
    mv "$wasm.opt" "$wasm"
    echo "build-web.sh: $out: after wasm-opt -Oz $(stat -c %s "$wasm") bytes ($(gzip -9 -c "$wasm" | wc -c) gzipped), $(( $(date +%s) - start )) s"
  fi
}

# Waits for every variant being finished; fails naming those that failed.
finishing=()
wait_finished() {
  local job failed=()
  for job in "${finishing[@]}"; do
    wait "${job%%:*}" || failed+=("${job#*:}")
  done
  if [ ${#failed[@]} -gt 0 ]; then
    echo "build-web.sh: wasm-bindgen or wasm-opt failed for ${failed[*]} (see above)" >&2
    exit 1
  fi
}

if ! rustup run "$NIGHTLY" rustc --print sysroot >/dev/null 2>&1 \
  || ! [ -d "$(rustup run "$NIGHTLY" rustc --print sysroot)/lib/rustlib/src/rust/library" ]; then
  echo "build-web.sh: installing the $NIGHTLY toolchain with rust-src (threaded builds)" >&2
  rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src
fi

wasm_opt=node_modules/binaryen/bin/wasm-opt
if [ "$profile" = web ] && ! [ -e "$wasm_opt" ]; then
  echo "build-web.sh: installing the npm devDependencies (binaryen's wasm-opt) with npm ci" >&2
  npm ci >&2
fi
target_dir="${CARGO_TARGET_DIR:-target}"
threads_opt="--enable-threads --enable-bulk-memory"
build_variant www/pkg web one-thread
build_variant www/pkg-relaxed web,relaxed-simd one-thread --enable-relaxed-simd
build_variant www/pkg-threads threads threads "$threads_opt"
build_variant www/pkg-threads-relaxed threads,relaxed-simd threads "$threads_opt --enable-relaxed-simd"
wait_finished
# The shipped tiny test bundle's weights are the test fixture's file byte for byte (its
# manifest records that file's sha256; tests/convert.rs checks both): one committed copy.
cp tests/fixtures/openclip_tiny/model.safetensors www/models/tiny/model.safetensors
scripts/build-id.sh
echo "build-web.sh: www/pkg, www/pkg-relaxed, www/pkg-threads, www/pkg-threads-relaxed, www/models/tiny and www/build-id.js ready ($profile)"
