#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine with Rust. Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

# A software Vulkan adapter (lavapipe) so the wgpu parity tests run on machines without a GPU.
# Debian's chromium (headless) and Node for the browser tests. OpenBLAS for the CPU path's
# matrix products (Cargo feature `blas`, on by default).
need=()
compgen -G "/usr/lib/*/libopenblas.so" >/dev/null || need+=(libopenblas-dev)
[ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] || need+=(mesa-vulkan-drivers)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v npm >/dev/null || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "duoclip: please install ${need[*]} (Debian packages), then rerun" >&2
    exit 1
  fi
fi
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/duoclip-xdg-$(id -u)}"
# lavapipe (above) and Chromium's SwiftShader give every GPU test an adapter: here a missing
# one is a broken machine, and the GPU tests fail rather than skip.
export DUOCLIP_REQUIRE_GPU=1
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"

rustup component add rustfmt >/dev/null 2>&1 || true
rustup target add wasm32-unknown-unknown >/dev/null

cargo fmt --all -- --check
cargo test --features gpu
# The browser module (fast unoptimized profile) and the page's tests in headless Chromium:
# maps equal the native CLI's (target/debug/duoclip, built by cargo test) on CPU and WebGPU.
npm ci --no-audit --no-fund
scripts/build-web.sh --profile wasm-check
node --test tests/browser/
echo "duoclip: all tests passed"
