#!/usr/bin/env bash
# Regenerates our numbers in BENCHMARKS.md: zero-shot duoclip, faithful and product, with and
# without test-time adaptation, on MVTec AD, VisA and the six BMAD sets.
#
#   MVTEC=/data/mvtec VISA=/data/visa BMAD=/data/bmad scripts/benchmarks.sh [--device gpu]
#
# A set whose variable is unset is left out (its cells stay "not run"). Extra arguments go to
# every `duoclip eval`; MODEL and DUOCLIP (a built binary) override the defaults. Every run resumes where it stopped (maps already scored are kept), so
# the script can be interrupted and started again. Results: $OUT (default
# results/benchmarks)/<set>/<config>/results.{md,json}, plots/, and SUMMARY.md with the mean
# row of every run.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${OUT:-$root/results/benchmarks}"
model="${MODEL:-vit-b-16-plus-240-laion400m-e32}"
duoclip="${DUOCLIP:-$root/scripts/duoclip}"

# name | options (faithful = AnoVL's computation with its 22 views; TTA as AnoVL runs it,
# optimizer kept across a class; product = visual references + synthesized-anomaly TTA)
configs=(
  "faithful|--preset anovl --views 22"
  "faithful-tta|--preset anovl --views 22 --tta anovl --tta-keep-optimizer"
  "product|--preset product"
  "product-tta|--preset product --tta synth"
)

run_set() { # set-name data-dir layout adapter
  local set=$1 data=$2 layout=$3 adapter=$4
  shift 4
  for config in "${configs[@]}"; do
    local name=${config%%|*} options=${config#*|}
    # shellcheck disable=SC2086 # options are words on purpose
    "$duoclip" eval --model "$model" --data "$data" --layout "$layout" \
      $options --adapter "$adapter" --out "$out/$set/$name" "$@" > /dev/null
    echo "duoclip: $set $name done: $out/$set/$name/results.md"
  done
}

mkdir -p "$out"
if [ -n "${MVTEC:-}" ]; then run_set mvtec "$MVTEC" mvtec tanh "$@"; fi
# AnoVL adapts with the linear adapter on VisA.
if [ -n "${VISA:-}" ]; then run_set visa "$VISA" visa linear "$@"; fi
if [ -n "${BMAD:-}" ]; then run_set bmad "$BMAD" bmad tanh "$@"; fi

{
  echo "# duoclip benchmark summary (means over classes; see each results.md)"
  for md in "$out"/*/*/results.md; do
    [ -e "$md" ] || continue
    echo
    echo "## ${md#"$out"/}"
    grep -E '^\| class|^\|---|^\| \*\*mean' "$md"
  done
} > "$out/SUMMARY.md"
echo "duoclip: summary in $out/SUMMARY.md"
