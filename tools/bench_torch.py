"""PyTorch/open_clip CPU timings for the same work `duoclip bench` times, on this machine.

Full-size OpenCLIP ViT-B-16-plus-240 with random weights (same cost as real ones). Writes JSON
that `duoclip bench --torch FILE` prints next to its own numbers, as ratios.

    python tools/bench_torch.py --out bench_torch.json [--repeats 5] [--text]
"""
import argparse
import json
import statistics
import time

import open_clip
import torch


def timed(fn, repeats, batch=1):
    fn()  # warm-up: allocations, oneDNN kernel selection
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    # `batch`: how many images one call scores, so that duoclip divides to per image.
    return {"median_s": statistics.median(runs), "min_s": min(runs), "max_s": max(runs), "batch": batch}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--text", action="store_true", help="also time the 924-prompt ensemble (slow)")
    a = p.parse_args()
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16-plus-240", pretrained=None).eval()
    image = torch.randn(1, 3, 240, 240)
    pair = torch.randn(2, 3, 240, 240)
    eight = torch.randn(8, 3, 240, 240)
    views = torch.randn(22, 3, 240, 240)
    result = {"threads": torch.get_num_threads(), "torch": torch.__version__, "open_clip": open_clip.__version__}
    with torch.no_grad():
        result["encode_image"] = timed(lambda: model.encode_image(image), a.repeats)
        result["encode_image_pair"] = timed(lambda: model.encode_image(pair), a.repeats, batch=2)
        result["encode_image_8"] = timed(lambda: model.encode_image(eight), max(1, a.repeats // 2), batch=8)
        result["encode_image_22_views"] = timed(lambda: model.encode_image(views), max(1, a.repeats // 2))
        if a.text:
            tokens = open_clip.tokenize(["a photo of a damaged object"] * 924)
            result["encode_text_924"] = timed(lambda: model.encode_text(tokens), 1)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
