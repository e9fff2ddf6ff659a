#!/usr/bin/env bash
# Memory soak of batch scoring: N images (default 1000) through `duoclip score --pairing set`
# in sets of SET_SIZE (default 8), sampling the process's resident memory and open file
# handles every INTERVAL seconds (default 0.5). Not a timed test: run it by hand and read the curve.
#
#   scripts/soak.sh [extra score options...]
#   N=1000 SET_SIZE=8 MODEL=tests/fixtures/openclip_tiny/model.safetensors scripts/soak.sh
#
# DUOCLIP: a built binary (default: ${CARGO_TARGET_DIR:-target}/debug/duoclip, built here).
# MODEL: default the tiny test model (then --text-heads 2 is added); OBJECT: the prompts'
# object (default bottle). OUT: the work folder
# (default a new temporary one). Writes $OUT/rss.csv (ms, rss_kib, fds, images_scored)
# and prints the first, peak and last samples and the memory once scoring began and ended.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
n="${N:-1000}"
set_size="${SET_SIZE:-8}"
interval="${INTERVAL:-0.5}"
object="${OBJECT:-bottle}"
out="${OUT:-$(mktemp -d /tmp/duoclip-soak.XXXXXX)}"
tiny="$root/tests/fixtures/openclip_tiny/model.safetensors"
model="${MODEL:-$tiny}"
model_args=(--model "$model")
[ "$model" = "$tiny" ] && model_args+=(--text-heads 2)
duoclip="${DUOCLIP:-}"
if [ -z "$duoclip" ]; then
  cargo build --quiet --manifest-path "$root/Cargo.toml" --features gpu --bin duoclip
  duoclip="${CARGO_TARGET_DIR:-$root/target}/debug/duoclip"
fi

# The fixture images, cycled under distinct names: memory, not accuracy, is measured.
mkdir -p "$out/images"
sources=("$root"/tests/fixtures/openclip_tiny/image*.png "$root"/tests/fixtures/hf_tiny/image*.png)
images=()
for ((i = 0; i < n; i++)); do
  image="$out/images/img$(printf %05d "$i").png"
  cp "${sources[i % ${#sources[@]}]}" "$image"
  images+=("$image")
done

rm -rf "$out/scores"
"$duoclip" score "${model_args[@]}" --object "$object" --pairing set --set-size "$set_size" \
  --out "$out/scores" "$@" "${images[@]}" >/dev/null &
pid=$!
csv="$out/rss.csv"
echo "ms,rss_kib,fds,images_scored" >"$csv"
start=$(date +%s%N)
# Sampling must not stop the script when the process exits between two reads.
while [ -r "/proc/$pid/status" ]; do
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  fds=$( (ls "/proc/$pid/fd" 2>/dev/null || true) | wc -l)
  scored=0
  [ -f "$out/scores/progress.jsonl" ] && scored=$(wc -l <"$out/scores/progress.jsonl")
  ms=$((($(date +%s%N) - start) / 1000000))
  [ -n "$rss" ] && echo "$ms,$rss,$fds,$scored" >>"$csv"
  sleep "$interval"
done
wait "$pid"

awk -F, -v n="$n" 'NR == 2 { first = $2; ff = $3 }
  NR > 1 { last = $2; lf = $3; t = $1 / 1000; if ($2 > peak) { peak = $2; pt = $1 / 1000 }
           if ($4 > 0 && began == "") began = $2
           if ($4 < n) ended = $2 }
  END { printf "samples %d over %.1f s\n", NR - 1, t
        printf "rss KiB: first %d, once scoring began %d, last while scoring %d, end %d, peak %d (at %.1f s)\n", first, began, ended, last, peak, pt
        printf "open files: first %d, end %d\n", ff, lf }' "$csv"
echo "curve: $csv"
