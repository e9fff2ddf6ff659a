"""PyTorch/open_clip timings for the same work `duoclip bench` times, on this machine (CPU, or a
CUDA GPU with `--device cuda`, in f32 or, with `--half`, f16).

Full-size OpenCLIP ViT-B-16-plus-240 with random weights (same cost as real ones). Writes JSON
that `duoclip bench --torch FILE` prints next to its own numbers, as ratios.

    python tools/bench_torch.py --out bench_torch.json [--repeats 5] [--text] [--device cuda [--half]]
"""
import argparse
import json
import statistics
import time

import open_clip
import torch


def timed(fn, repeats, batch=1):
    fn()  # warm-up: allocations, oneDNN/cuBLAS kernel selection
    runs = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()  # CUDA runs asynchronously: the time is the GPU's work, not its launch
        runs.append(time.perf_counter() - t0)
    # `batch`: how many images one call scores, so that duoclip divides to per image.
    return {"median_s": statistics.median(runs), "min_s": min(runs), "max_s": max(runs), "batch": batch}


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--text", action="store_true", help="also time the 924-prompt ensemble (slow)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's, all cores)")
    p.add_argument("--quick", action="store_true", help="leave out the 22-view batch")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--half", action="store_true", help="f16 weights and inputs (CUDA)")
    a = p.parse_args()
    dtype = torch.float16 if a.half else torch.float32
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16-plus-240", pretrained=None).eval().to(a.device, dtype)
    image, pair, eight, views = (torch.randn(n, 3, 240, 240, device=a.device, dtype=dtype) for n in (1, 2, 8, 22))
    result = {"threads": torch.get_num_threads(), "torch": torch.__version__, "open_clip": open_clip.__version__,
              "device": torch.cuda.get_device_name() if a.device == "cuda" else "cpu", "dtype": str(dtype)}
    with torch.no_grad():
        result["encode_image"] = timed(lambda: model.encode_image(image), a.repeats)
        result["encode_image_pair"] = timed(lambda: model.encode_image(pair), a.repeats, batch=2)
        result["encode_image_8"] = timed(lambda: model.encode_image(eight), max(1, a.repeats // 2), batch=8)
        if not a.quick:
            result["encode_image_22_views"] = timed(lambda: model.encode_image(views), max(1, a.repeats // 2))
        if a.text:
            tokens = open_clip.tokenize(["a photo of a damaged object"] * 924).to(a.device)
            result["encode_text_924"] = timed(lambda: model.encode_text(tokens), 1)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
