#!/usr/bin/env bash
# The long fuzz run of one target (the test suite's tests/fuzz_smoke.rs is the short one):
#   scripts/fuzz.sh TARGET [MINUTES]      e.g. scripts/fuzz.sh image 10
# Targets: safetensors_checkpoint pytorch_checkpoint hf_config tokenizer image registry
# bundle_manifest dicom nifti tiff (fuzz/fuzz_targets/). Needs a nightly toolchain; installs cargo-fuzz.
# Bounds: 2 GB resident (-rss_limit_mb) and no single allocation of 1 GB or more
# (-malloc_limit_mb); an input running longer than 10 s counts as a hang (-timeout).
# New corpus inputs go to fuzz/corpus/TARGET (not committed); crashes to fuzz/artifacts/TARGET.
# FUZZ_TARGET_DIR=DIR builds in DIR instead of fuzz/target.
# Every crash becomes a regression input: fix it, then copy the file to
# tests/fixtures/fuzz/TARGET/crash-<what> so that the smoke test replays it forever.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:?usage: scripts/fuzz.sh TARGET [MINUTES]}"
minutes="${2:-10}"
rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
mkdir -p "fuzz/corpus/$target"
cargo +nightly fuzz run --fuzz-dir fuzz ${FUZZ_TARGET_DIR:+--target-dir "$FUZZ_TARGET_DIR"} "$target" "fuzz/corpus/$target" "tests/fixtures/fuzz/$target" -- \
  -max_total_time=$((minutes * 60)) -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 \
  -max_len=65536 -print_final_stats=1
