#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine with Rust. Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

# A software Vulkan adapter (lavapipe) so the wgpu parity tests run on machines without a GPU.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! [ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers >/dev/null
fi
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/duoclip-xdg-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"

rustup component add rustfmt >/dev/null 2>&1 || true
rustup target add wasm32-unknown-unknown >/dev/null

cargo fmt --all -- --check
cargo test --features gpu
cargo build --profile wasm-check --target wasm32-unknown-unknown --no-default-features --features web
echo "duoclip: all tests passed"
