#!/usr/bin/env python3
"""Reference fixture for duoclip's maps, views and text scores (tests/maps.rs).

Writes tests/fixtures/maps/reference.json from torch / open_clip / numpy computations
(METHOD.md §1, §3, §4):

  smoothing   3x3 box filter with replicate padding (F.pad 'replicate' + avg_pool2d) and
              bilinear upsampling with align_corners=True (F.interpolate), of a random 4x4 grid
              to 32x32 and a random 3x5 grid to 20x30
  anchors     two fixed random unit vectors [2, D] standing in for (t_n, t_a)
  patch_map   p_abn = softmax([f.t_n, f.t_a])[1] of the unit V-V tokens of openclip_tiny
              (its reference.json) with those anchors, no logit scale -> its 32x32 map
  views       AnoVL's 22 test-time views of openclip_tiny/image.png (normalized): per view a
              subsample of the CHW values (every 47th), their mean and a weighted mean; plus the
              tiny model's image embedding of every view (open_clip encode_image), p_abn of each
              and the mean over views
  tiles       the short-side resize + tiling of a small wide RGB image, tile offsets of some
              image sizes, and merge_tiles on a toy case

The views are our own torch code following the semantics of AnoVL's test code (rotations and
translations: F.affine_grid + F.grid_sample(bilinear, reflection, align_corners=True); flip;
grayscale 0.299/0.587/0.114 on the normalized tensor; exact quarter turns, torch.rot90).
The script checks that a list of plausible porting bugs moves the stored numbers by more than
10x the Rust tolerance (else the fixture could not see them).

CPU only; run with the pinned versions of tools/requirements.txt from the repository root:
    python tools/gen_map_fixture.py
Never run by CI.
"""

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_fixtures import args_from_config, build_openclip, jfloats, to_pixels, MEAN, STD  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests/fixtures/openclip_tiny"
OUT = ROOT / "tests/fixtures/maps"

MAP_TOL = 1e-5     # pure map / view operations in the Rust tests
MODEL_TOL = 1e-4   # values through the model
SAMPLE_STRIDE = 47  # every 47th CHW value of a view is stored
PI = np.pi
ANGLES = [-PI / 4, -3 * PI / 16, -PI / 8, -PI / 16, PI / 16, PI / 8, 3 * PI / 16, PI / 4]
SHIFTS = [(0.2, 0.2), (-0.2, 0.2), (-0.2, -0.2), (0.2, -0.2),
          (0.1, 0.1), (-0.1, 0.1), (-0.1, -0.1), (0.1, -0.1)]
LUMA = (0.299, 0.587, 0.114)


# ----------------------------------------------------------------------------- maps

def box_filter3(grid):
    """[h, w] -> [h, w]: replicate pad by 1, 3x3 mean (AnoVL's smoothing of the patch grid)."""
    x = F.pad(grid[None, None], (1, 1, 1, 1), mode="replicate")
    return F.avg_pool2d(x, 3, stride=1, padding=0, count_include_pad=False)[0, 0]


def upsample(grid, size, align_corners=True):
    return F.interpolate(grid[None, None], size=size, mode="bilinear",
                         align_corners=align_corners)[0, 0]


def language_map(p, grid, size):
    return upsample(box_filter3(p.reshape(grid)), (size, size))


def p_abn(features, anchors, scale=1.0):
    unit = features / features.norm(dim=-1, keepdim=True)
    return (scale * unit @ anchors.T).softmax(dim=-1)[:, 1]


# ----------------------------------------------------------------------------- views

def warp(x, theta, align_corners=True, padding="reflection"):
    """x [B, C, H, W]; theta [2, 3] float32 -> the view sampled at theta . (x, y, 1)."""
    t = theta[None].repeat(x.shape[0], 1, 1)
    grid = F.affine_grid(t, list(x.shape), align_corners=align_corners)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=align_corners)


def rotation(angle, sign=1.0):
    a = torch.tensor(angle, dtype=torch.float64)  # cos/sin in f64, then rounded to f32
    c, s = torch.cos(a), sign * torch.sin(a)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0]], dtype=torch.float64).float()


def translation(a, b):
    return torch.tensor([[1.0, 0.0, a], [0.0, 1.0, b]], dtype=torch.float32)


def gray(x, weights=LUMA):
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return (r * weights[0] + g * weights[1] + b * weights[2]).repeat(1, 3, 1, 1)


def views(x, bugs=()):
    """The 22 views of x [1, 3, S, S] in ANOVL_VIEWS order; `bugs` switches on deliberate
    mistakes for the sensitivity check."""
    ac = "align_corners_false" not in bugs
    pad = "zeros" if "zeros_padding" in bugs else ("border" if "border_padding" in bugs else "reflection")
    out = [x]
    for angle in ANGLES:
        out.append(warp(x, rotation(angle, -1.0 if "rotation_sign" in bugs else 1.0), ac, pad))
    for a, b in SHIFTS:
        if "shift_sign" in bugs:
            a, b = -a, -b
        if "shift_xy_swap" in bugs:
            a, b = b, -a
        out.append(warp(x, translation(a, b), ac, pad))
    out.append(x.flip(-2) if "vflip" in bugs else x.flip(-1))
    out.append(gray(x, (0.2126, 0.7152, 0.0722) if "bt709_gray" in bugs else LUMA))
    for k in (1, 2, 3):
        out.append(torch.rot90(x, -k if "rot90_clockwise" in bugs else k, dims=(-2, -1)))
    return torch.cat(out)


def check_quarter_turns_match_kornia_style_warp(x):
    """AnoVL turns by 90 k degrees with kornia's rotate(reflection): for a square image that is
    the affine warp with theta = [[cos, -sin, 0], [sin, cos, 0]] in f32 (the inverse of kornia's
    matrix [[cos, sin], [-sin, cos]] in normalized coordinates). It equals the exact rot90 up to
    float rounding, which is why the exact turn stands in for it."""
    for k in (1, 2, 3):
        a = torch.tensor(math.radians(90.0 * k), dtype=torch.float32)
        theta = torch.tensor([[torch.cos(a), -torch.sin(a), 0.0], [torch.sin(a), torch.cos(a), 0.0]])
        d = (warp(x, theta) - torch.rot90(x, k, dims=(-2, -1))).abs().max().item()
        assert d < MODEL_TOL, f"quarter turn {k}: warp vs rot90 {d:.2e}"
        print(f"  ok  quarter turn {k}: f32 warp == rot90           max abs {d:.2e}")


def weights(n):
    """Deterministic weights in [-1, 1] for the weighted mean (integers / 8: exact everywhere)."""
    return np.array([((i * 31) % 17 - 8) / 8.0 for i in range(n)], dtype=np.float64)


def view_summary(v):
    """Per view: every SAMPLE_STRIDE-th CHW value, the mean and the weighted mean (in f64)."""
    flat = v.reshape(-1).double().numpy()
    return {"samples": jfloats(v.reshape(-1)[::SAMPLE_STRIDE]),
            "mean": float(flat.mean()), "weighted_mean": float((flat * weights(flat.size)).mean())}


def summary_vector(vs):
    parts = []
    for v in vs:
        s = view_summary(v)
        parts += [np.array(s["samples"]), np.array([s["mean"], s["weighted_mean"]])]
    return np.concatenate(parts)


# ----------------------------------------------------------------------------- tiles

def resized_width(width, height, size):
    """torchvision Resize(size) on a wide image: long side int(size * long / short)."""
    return size if width <= height else int(size * width / height)


def tile_offsets(width, height, size):
    w = resized_width(width, height, size)
    return [0] if w == size else [0, w - size]  # the two tiles of METHOD §1 (W' <= 2S here)


def clip_tiles(img, size):
    """img uint8 [H, W, 3] -> normalized CHW tiles after the short-side resize."""
    h, w, _ = img.shape
    wide = resized_width(w, h, size)
    unit = torch.from_numpy(img).float().div(255).permute(2, 0, 1)[None]
    full = F.interpolate(unit, size=(size, wide), mode="bilinear", align_corners=False,
                         antialias=False)[0]
    norm = (full - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    return [norm[:, :, o:o + size] for o in tile_offsets(w, h, size)]


def merge_tiles(maps, offsets, size, width):
    acc = np.zeros((size, width), np.float32)
    count = np.zeros(width, np.float32)
    for m, o in zip(maps, offsets):
        acc[:, o:o + size] += m
        count[o:o + size] += 1
    return acc / count


# ----------------------------------------------------------------------------- checks

def assert_sees(name, ref, mutated, tol):
    d = float(np.max(np.abs(np.asarray(ref, np.float64) - np.asarray(mutated, np.float64))))
    assert d > 10 * tol, f"fixture blind to {name} (max change {d:.2e})"
    print(f"  ok  sees bug {name:<28} max change {d:.2e}")


def tiny_model():
    ref = json.loads((TINY / "reference.json").read_text())
    c = ref["config"]
    a = args_from_config("openclip", TINY, c)
    model = build_openclip(a)
    sd = {k: v.float() for k, v in load_file(str(TINY / "model.safetensors")).items()}
    model.load_state_dict(sd)
    model.eval()
    # The rebuilt model must be the one the tiny reference came from.
    img = np.array(Image.open(TINY / ref["image"]).convert("RGB"))  # writable copy
    with torch.no_grad():
        emb = model.encode_image(to_pixels(img))[0]
    d = (emb - torch.tensor(ref["image_embedding"])).abs().max().item()
    assert d < 1e-5, f"rebuilt tiny model differs from its reference ({d:.2e})"
    print(f"  ok  rebuilt openclip_tiny == its reference         max abs {d:.2e}")
    return model, ref, img


# ----------------------------------------------------------------------------- main

@torch.no_grad()
def main():
    torch.manual_seed(0)
    rng = np.random.default_rng(7)
    out = {}

    # (a) smoothing + upsampling
    cases = []
    for (h, w), (oh, ow) in [((4, 4), (32, 32)), ((3, 5), (20, 30))]:
        g = torch.from_numpy(rng.random((h, w), dtype=np.float32))
        box = box_filter3(g)
        up = upsample(box, (oh, ow))
        zero_pad = F.avg_pool2d(g[None, None], 3, stride=1, padding=1, count_include_pad=True)[0, 0]
        assert_sees(f"{h}x{w} zero padding", box.numpy(), zero_pad.numpy(), MAP_TOL)
        assert_sees(f"{h}x{w} align_corners=False", up.numpy(),
                    upsample(box, (oh, ow), align_corners=False).numpy(), MAP_TOL)
        cases.append({"h": h, "w": w, "out_h": oh, "out_w": ow, "grid": jfloats(g.reshape(-1)),
                      "box": jfloats(box.reshape(-1)), "upsampled": jfloats(up.reshape(-1))})
    out["smoothing"] = cases

    # (b) anchors and the language map of the tiny V-V tokens
    model, tiny, img = tiny_model()
    dim = tiny["config"]["embed_dim"]
    anchors = torch.from_numpy(rng.standard_normal((2, dim)).astype(np.float32))
    anchors = anchors / anchors.norm(dim=-1, keepdim=True)
    out["anchors"] = jfloats(anchors)
    tokens = torch.tensor(tiny["vv_patch_tokens"])
    grid, size = tiny["grid"], tiny["config"]["image_size"]
    p = p_abn(tokens, anchors)
    m = language_map(p, grid, size)
    assert_sees("logit scale 100", p.numpy(), p_abn(tokens, anchors, 100.0).numpy(), MAP_TOL)
    assert_sees("unnormalized tokens", p.numpy(),
                (tokens @ anchors.T).softmax(-1)[:, 1].numpy(), MAP_TOL)
    assert_sees("anchors swapped", p.numpy(), p_abn(tokens, anchors.flip(0)).numpy(), MAP_TOL)
    out["patch_map"] = {"grid": grid, "size": size, "p_abn": jfloats(p), "map": jfloats(m.reshape(-1))}

    # (c) views and the image score
    x = to_pixels(img)
    check_quarter_turns_match_kornia_style_warp(x)
    vs = views(x)
    assert vs.shape[0] == 22
    ref_summary = summary_vector(vs)
    for bug in ["rotation_sign", "align_corners_false", "zeros_padding", "border_padding",
                "shift_sign", "shift_xy_swap", "vflip", "bt709_gray", "rot90_clockwise"]:
        assert_sees(f"view {bug}", ref_summary, summary_vector(views(x, {bug})), MAP_TOL)
    emb = model.encode_image(vs)
    per_view = p_abn(emb, anchors)
    out["views"] = {
        "image": "openclip_tiny/image.png", "size": size, "sample_stride": SAMPLE_STRIDE,
        "weights": "((i * 31) % 17 - 8) / 8 for CHW index i",
        "views": [view_summary(v) for v in vs],
        "image_embedding": jfloats(emb),
        "image_abnormality": jfloats(per_view),
        "image_score": float(per_view.double().mean()),
    }
    print(f"  ok  image score over 22 views {out['views']['image_score']:.6f}")

    # (d) tiles: geometry, the resize + cut, and the merge
    geometry = []
    for w, h, s in [(1500, 1000, 240), (1001, 1000, 240), (512, 496, 240), (700, 700, 240),
                    (500, 1000, 240), (1024, 512, 240), (20, 12, 8)]:
        geometry.append({"width": w, "height": h, "size": s,
                         "resized_width": resized_width(w, h, s), "offsets": tile_offsets(w, h, s)})
    wide = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    tiles = clip_tiles(wide, 8)
    offsets, width, tsize = [0, 3], 7, 4
    maps = [rng.random((tsize, tsize), dtype=np.float32) for _ in offsets]
    out["tiles"] = {
        "geometry": geometry,
        "image": {"width": 20, "height": 12, "size": 8, "rgb": wide.reshape(-1).tolist(),
                  "tiles": [jfloats(t.reshape(-1)) for t in tiles]},
        "merge": {"size": tsize, "width": width, "offsets": offsets,
                  "maps": [jfloats(mm.reshape(-1)) for mm in maps],
                  "merged": jfloats(merge_tiles(maps, offsets, tsize, width).reshape(-1))},
    }

    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "reference.json"
    path.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"{path.relative_to(ROOT)}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
