#!/usr/bin/env bash
# The performance benchmarks of BENCHMARKS.md, one command per path. Each prints its table (with
# ratios) and writes JSON under $OUT (default results/bench):
#
#   scripts/bench.sh native-cpu     duoclip bench --device cpu, next to PyTorch CPU; THREADS=1
#                                   times both on one core (PyTorch --threads, RAYON_NUM_THREADS),
#                                   the comparison that holds on a shared machine
#   scripts/bench.sh native-gpu     duoclip bench --device gpu (wgpu), next to PyTorch CUDA when
#                                   torch sees a CUDA GPU, else PyTorch CPU; PRECISION=f32|f16|auto
#   scripts/bench.sh browser [ARGS] the release web build in headless Chromium: wasm CPU and
#                                   WebGPU, next to native CPU (ARGS go to tests/browser/bench.mjs)
#
# All use a full-size ViT-B-16-plus-240 with random weights (same cost as real ones). PyTorch's
# times (tools/bench_torch.py: open_clip, same model, same machine) are taken first, in the same
# run, when $PYTHON (default python3) has open_clip: `pip install -r tools/requirements.txt`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${OUT:-$root/results/bench}"
python="${PYTHON:-python3}"
mkdir -p "$out"
torch_json="$out/bench_torch.json"
threads="${THREADS:-}"
case "$threads" in
  ''|[1-9]|[1-9][0-9]) ;;
  *) echo "bench.sh: THREADS='$threads' is not accepted; use a thread count from 1 to 99, or unset it" >&2; exit 2 ;;
esac

torch_times() { # [bench_torch.py options]
  if "$python" -c 'import open_clip' 2>/dev/null; then
    echo "bench.sh: timing open_clip/PyTorch (tools/bench_torch.py $*) …" >&2
    local thread_arg=()
    [ -n "$threads" ] && thread_arg=(--threads "$threads")
    "$python" "$root/tools/bench_torch.py" --out "$torch_json" --text "${thread_arg[@]}" "$@" >/dev/null
  else
    rm -f "$torch_json"
    echo "bench.sh: $python has no open_clip, so no PyTorch ratios; install the reference with" \
      "'pip install -r tools/requirements.txt' (or set PYTHON)" >&2
  fi
}

native() { # device
  local precision="${PRECISION:-auto}" torch_device=()
  if [ "$1" = gpu ] && "$python" -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
    torch_device=(--device cuda)
    [ "$precision" = f16 ] && torch_device+=(--half)
  fi
  torch_times "${torch_device[@]}"
  local torch_arg=()
  [ -f "$torch_json" ] && torch_arg=(--torch "$torch_json")
  local suffix="" env=()
  [ -n "$threads" ] && suffix="-${threads}t" && env=(RAYON_NUM_THREADS="$threads")
  env "${env[@]}" "$root/scripts/duoclip" bench --device "$1" --precision "$precision" \
    "${torch_arg[@]}" --out "$out/native-$1-$precision$suffix.json"
}

case "${1:-}" in
  native-cpu) native cpu ;;
  native-gpu) native gpu ;;
  browser)
    shift
    "$root/scripts/build-web.sh"
    [ -d "$root/node_modules/playwright-core" ] || (cd "$root" && npm ci)
    node "$root/tests/browser/bench.mjs" --out "$out/browser.json" "$@"
    ;;
  *)
    echo "usage: scripts/bench.sh native-cpu | native-gpu | browser [bench.mjs options]" >&2
    exit 2
    ;;
esac
