#!/usr/bin/env python3
"""Golden fixtures for src/image.rs.

Writes, under tests/fixtures/images/:
  resize.json  small float inputs and torch F.interpolate(bilinear, antialias=False) outputs
               for align_corners False and True, upsampling and downsampling.
  cmyk.jpg     a 16x8 CMYK JPEG (Pillow writes it; the `image` crate cannot encode CMYK),
               two flat 8x8 blocks so JPEG loss does not blur the colours.

Run from the repository root:  python tools/gen_image_fixtures.py
Needs torch, numpy, pillow at the versions pinned in tools/requirements.txt. CPU only; the
outputs are committed and CI never runs this.
"""
import json
import pathlib

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "images"

# (channels, in_h, in_w, out_h, out_w): up, down, mixed, and degenerate 1-pixel outputs.
CASES = [
    (2, 5, 7, 11, 3),
    (1, 4, 4, 9, 9),
    (3, 9, 6, 4, 2),
    (1, 3, 5, 1, 1),
    (1, 1, 1, 3, 2),
]

# Block colours as (C, M, Y, K) ink amounts; the script prints the RGB Pillow decodes them to.
CMYK_BLOCKS = [(255, 0, 0, 0), (0, 0, 0, 128)]


def resize_cases():
    rng = np.random.default_rng(20240515)
    cases = []
    for c, h, w, oh, ow in CASES:
        x = rng.random((c, h, w), dtype=np.float32)
        t = torch.from_numpy(x)[None]
        case = {"channels": c, "in_h": h, "in_w": w, "out_h": oh, "out_w": ow,
                "input": [float(v) for v in x.ravel()]}
        for align in (False, True):
            y = F.interpolate(t, size=(oh, ow), mode="bilinear",
                              align_corners=align, antialias=False)[0]
            key = "align_corners_true" if align else "align_corners_false"
            case[key] = [float(v) for v in y.numpy().ravel()]
        cases.append(case)
    return cases


def write_cmyk_jpeg(path):
    img = Image.new("CMYK", (16, 8))
    for bx, colour in enumerate(CMYK_BLOCKS):
        img.paste(colour, (8 * bx, 0, 8 * bx + 8, 8))
    img.save(path, quality=100, subsampling=0)
    back = Image.open(path)
    assert back.mode == "CMYK", back.mode
    rgb = np.asarray(back.convert("RGB"))
    for bx in range(len(CMYK_BLOCKS)):
        print(f"cmyk.jpg block {bx}: CMYK {CMYK_BLOCKS[bx]} -> Pillow RGB {rgb[4, 8 * bx + 4].tolist()}")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    doc = {"generator": "tools/gen_image_fixtures.py", "torch": torch.__version__,
           "cases": resize_cases()}
    (OUT / "resize.json").write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    write_cmyk_jpeg(OUT / "cmyk.jpg")


if __name__ == "__main__":
    main()
