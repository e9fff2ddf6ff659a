#!/usr/bin/env python3
"""End-to-end torch reference of duoclip's detector (tests/detector_parity.rs).

Composes the component references that already exist as our own Python, without repeating
them:

  tools/gen_fixtures.py            checkpoint weights (vision_weights), the dual-stream forward
                                   (dual_stream: image token c, V-V patch tokens P, ordinary
                                   taps), the package text towers (package_text), to_pixels
  tools/gen_prompt_fixture.py      the METHOD §3 prompt lists (block, NORMAL, ABNORMAL)
  tools/gen_map_fixture.py         p_abn, the language map (box filter + align-corners
                                   upsampling), AnoVL's 22 views, wide-image tiles and merge
  tools/gen_reference_fixture.py   matching features (features) and visual scores (visual_score)

into the detector of src/detect/detector.rs (METHOD.md §3–§5):

  text map     language_map(p_abn(V-V tokens)) per tile, tiles merged (overlaps averaged)
  image score  mean over views of p_abn(c) per tile, then mean over tiles
  anovl        map = text map, score = image score
  product      visual map = language_map(visual scores against the other images' tiles) with
               features = V-V tokens + ordinary taps at ref_layers; fused (1−λ)·text + λ·vis;
               score = ½·image score + ½·max(fused)

and writes tests/fixtures/detector/reference.json (plus wide.png) for tests/fixtures/openclip_tiny
(text_heads 2, gelu; anchors of domain "object", object "metal_nut"):

  anovl_v1, anovl_v22   preset anovl on image.png, views 1 and 22: 32×32 map, score
  product               preset product (ref_layers [0, 1], λ 0.5, neighbourhood 1, views 1) on
                        the pair [image.png, image.png with an 8×8 RGB (255,255,40) block over
                        patch cell row 1, col 2 (y 8..16, x 16..24)]: both maps and scores
  wide                  preset anovl (views 1) on wide.png = image_big.png[y 0..32, x 0..48]:
                        32×48 map from the tiles at x 0 and 16, score = mean over the tiles

tools/check_detector_parity.py imports this module to run the same computation on any
checkpoint made by tools/gen_fixtures.py, and tools/gen_signal_fixture.py runs it (--model,
--out, --tolerance, --paste-cells) on the shaped model of tests/fixtures/openclip_signal.

Before writing, the script checks that the rebuilt checkpoint reproduces its own reference.json
(image embedding, V-V tokens) and that the fixture can see plausible composition bugs (each must
move some stored number by more than 10x the Rust tolerance, 1e-4 unless --tolerance).

CPU only; pinned packages of tools/requirements.txt; a few seconds; byte-for-byte reproducible.
From the repository root:

    python tools/gen_detector_fixture.py
"""

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_fixtures  # noqa: E402
import gen_map_fixture  # noqa: E402
import gen_prompt_fixture  # noqa: E402
import gen_reference_fixture  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests/fixtures/openclip_tiny"
OUT = ROOT / "tests/fixtures/detector"

RUST_TOL = gen_fixtures.RUST_TOL
MUTATION_MIN = gen_fixtures.MUTATION_MIN
DOMAIN, OBJECT = "object", "metal_nut"
PASTE_RGB = (255, 255, 40)
PASTE_CELL = (1, 2)  # patch cell (row, col)
PRODUCT = dict(ref_layers=[0, 1], lambda_=0.5, neighbourhood=1)
MAX_BYTES = 120_000


# ----------------------------------------------------------------------------- checkpoint

@dataclass
class Model:
    """A checkpoint made by tools/gen_fixtures.py, read back for the torch reference."""
    dir: Path
    layout: str
    config: dict
    args: argparse.Namespace  # gen_fixtures' arguments (layout, heads, act, ...)
    vis: dict                 # gen_fixtures.vision_weights
    package: torch.nn.Module  # the package model, for the text tower

    @property
    def size(self):
        return self.config["image_size"]

    @property
    def patch(self):
        return self.config["patch_size"]


def load_model(directory):
    """Weights from model.safetensors (fp32 values of the stored dtype), architecture from the
    directory's reference.json; checked against that reference before use."""
    directory = Path(directory)
    ref = json.loads((directory / "reference.json").read_text())
    layout, c = ref["layout"], ref["config"]
    if not c.get("has_text", True):
        raise SystemExit(f"{directory}: the checkpoint has no text tower (the detector needs one)")
    a = gen_fixtures.args_from_config(layout, directory, c)
    sd = {k: v.float() for k, v in load_file(str(directory / "model.safetensors")).items()}
    if layout == "openclip":
        package = gen_fixtures.build_openclip(a)
        package.load_state_dict(sd, strict=True)
    else:
        from transformers import CLIPModel
        gen_fixtures.quiet_transformers()
        package = CLIPModel.from_pretrained(directory, dtype=torch.float32,
                                            attn_implementation="eager")
    package.eval()
    m = Model(directory, layout, c, a, gen_fixtures.vision_weights(sd, layout, c["vision_layers"]), package)
    img = load_rgb(directory / ref["image"])
    cls, tokens, _ = encode(m, gen_fixtures.to_pixels(img))
    d = max((cls - torch.tensor(ref["image_embedding"])).abs().max().item(),
            (tokens - torch.tensor(ref["vv_patch_tokens"])).abs().max().item())
    assert d < gen_fixtures.PACKAGE_TOL, f"{directory}: rebuilt model differs from its reference.json ({d:.2e})"
    print(f"  ok  {directory.name}: rebuilt model == its reference.json      max abs {d:.2e}")
    return m


def load_rgb(path):
    return np.array(Image.open(path).convert("RGB"))  # writable uint8 [H, W, 3]


# ----------------------------------------------------------------------------- text anchors

@torch.no_grad()
def text_anchors(m, domain=DOMAIN, obj=OBJECT):
    """[2, D]: t_n, t_a = normalize(mean of the UNnormalized prompt embeddings) per side, the
    prompts of METHOD §3 (gen_prompt_fixture.block) through the package's own text tower."""
    import open_clip
    rows = []
    for states in (gen_prompt_fixture.NORMAL, gen_prompt_fixture.ABNORMAL):
        ids = open_clip.tokenize(gen_prompt_fixture.block(domain, obj, states))
        assert (ids[:, -1] == 0).all(), "a prompt fills the whole context"
        emb = torch.cat([gen_fixtures.package_text(m.package, m.args, ids[i:i + 64])
                         for i in range(0, len(ids), 64)])
        rows.append(torch.nn.functional.normalize(emb.mean(0), dim=0))
    return torch.stack(rows)


# ----------------------------------------------------------------------------- detector

@torch.no_grad()
def encode(m, pixels):
    """One tile [1, 3, S, S] → (image embedding c [D], V-V tokens [N, D], taps per block)."""
    return gen_fixtures.dual_stream(m.vis, pixels, m.config["vision_heads"], m.config["act"])


@torch.no_grad()
def view_scores(m, pixels, anchors, views):
    """p_abn(c) of each view of one tile (AnoVL's views, gen_map_fixture.views)."""
    vs = pixels if views == 1 else gen_map_fixture.views(pixels)
    assert vs.shape[0] == views
    cls = torch.stack([encode(m, v[None])[0] for v in vs])
    return gen_map_fixture.p_abn(cls, anchors)


def tiles_of(m, img):
    """uint8 [H, W, 3] → (normalized [1, 3, S, S] tiles, offsets, resized width)."""
    h, w, _ = img.shape
    tiles = [t[None] for t in gen_map_fixture.clip_tiles(img, m.size)]
    return tiles, gen_map_fixture.tile_offsets(w, h, m.size), gen_map_fixture.resized_width(w, h, m.size)


@torch.no_grad()
def detect(m, anchors, images, preset="anovl", views=1, ref_layers=(), lambda_=0.5,
           neighbourhood=1, bugs=()):
    """Maps [S, W'] (numpy f32) and scores of a group of images (uint8 [H, W, 3]) that reference
    each other (every other image of the group), as Detector::score does without known-good
    references. `bugs` switches on deliberate composition mistakes (the sensitivity check)."""
    size, grid = m.size, m.config["grid"]
    product = preset == "product"
    enc = []
    for img in images:
        tiles, offsets, width = tiles_of(m, img)
        per_tile = []
        for px in tiles:
            cls, tokens, taps = encode(m, px)
            layers = [tokens] + [taps[l] for l in ([] if "no_taps" in bugs else ref_layers)]
            per_tile.append(dict(px=px, tokens=tokens, layers=layers))
        enc.append(dict(tiles=per_tile, offsets=offsets, width=width))

    out = []
    for i, e in enumerate(enc):
        others = [o for j, o in enumerate(enc) if j != i]
        if "self_reference" in bugs:
            others = [e]
        text_maps, vis_maps, scores = [], [], []
        for t in e["tiles"]:
            p = gen_map_fixture.p_abn(t["tokens"], anchors)
            text_maps.append(gen_map_fixture.language_map(p, grid, size).numpy())
            scores.append(view_scores(m, t["px"], anchors, 1 if "one_view" in bugs else views).double().mean().item())
            if product and others:
                refs = [r for o in others for r in o["tiles"]]
                stacked = [torch.stack([x["layers"][l] for x in [t] + refs]) for l in range(len(t["layers"]))]
                gen_reference_fixture.GRID = tuple(grid)  # its r = 3 averaging reads the grid
                feats = gen_reference_fixture.features(stacked, neighbourhood)
                s_vis = gen_reference_fixture.visual_score(feats, 0, list(range(1, len(refs) + 1))).float()
                vis_maps.append(gen_map_fixture.language_map(s_vis, grid, size).numpy())
        merge = (lambda ms: sum_tiles(ms, e["offsets"], size, e["width"])) if "sum_overlap" in bugs else \
            (lambda ms: gen_map_fixture.merge_tiles(ms, e["offsets"], size, e["width"]))
        text = merge(text_maps)
        p_image = scores[0] if "first_tile_score" in bugs else float(np.mean(scores))
        if not product:
            out.append((text, p_image))
            continue
        lam = 1.0 - lambda_ if "lambda_swapped" in bugs else lambda_
        fused = text if not vis_maps else ((1 - lam) * text + lam * merge(vis_maps)).astype(np.float32)
        peak = float(fused.mean()) if "mean_not_max" in bugs else float(fused.max())
        score = p_image + peak if "no_half" in bugs else 0.5 * p_image + 0.5 * peak
        out.append((fused, score))
    return out


def sum_tiles(maps, offsets, size, width):
    acc = np.zeros((size, width), np.float32)
    for mm, o in zip(maps, offsets):
        acc[:, o:o + size] += mm
    return acc


# ----------------------------------------------------------------------------- cases

def pasted(m, img, cells=1):
    """The image with an RGB (255,255,40) block of cells×cells patches whose top-left is patch
    cell PASTE_CELL (the column clamped to the grid: cell (1, 2) is pixels y 8..16, x 16..24
    at patch 8, one cell)."""
    p, g = m.patch, m.config["grid"]
    row, col = min(PASTE_CELL[0], g[0] - 1), min(PASTE_CELL[1], g[1] - 1)
    out = img.copy()
    out[row * p:(row + cells) * p, col * p:(col + cells) * p] = PASTE_RGB
    return out


def cases(m, anchors, img, wide=None, bugs=(), paste_cells=1):
    """(a) anovl views 1 / 22, (b) product pair, (c) wide anovl: name → [(map, score), ...]."""
    pair = [img, pasted(m, img, paste_cells)]
    r = {
        "anovl_v1": detect(m, anchors, [img], "anovl", 1, bugs=bugs),
        "anovl_v22": detect(m, anchors, [img], "anovl", 22, bugs=bugs),
        "product": detect(m, anchors, pair, "product", 1, bugs=bugs, **PRODUCT),
    }
    if wide is not None:
        r["wide"] = detect(m, anchors, [wide], "anovl", 1, bugs=bugs)
    return r


def flat(results):
    return np.concatenate([np.concatenate([mm.reshape(-1), [s]]) for k in sorted(results)
                           for mm, s in results[k]]).astype(np.float64)


MUTATIONS = ["one_view", "no_taps", "self_reference", "sum_overlap", "first_tile_score",
             "mean_not_max", "no_half"]
# Not checkable at λ = 0.5: "lambda_swapped" ((1−λ) and λ trade places).
# The tiny random text tower gives anchors with cos(t_n, t_a) ≈ 0.996, so every p_abn is
# 0.5 ± 0.01: the 22 views move the image score by only ~1.6e-4 and the two tiles of wide.png
# differ by ~8.5e-4 in score. Both are above the Rust tolerance, not 10x above it, so these two
# are held to the tolerance itself.
MARGIN = {"one_view": 1, "first_tile_score": 1}  # × the tolerance; others 10× (MUTATION_MIN)


def check_mutations(m, anchors, img, wide, ref, tol=RUST_TOL, paste_cells=1):
    want = flat(ref)
    for bug in MUTATIONS:
        d = np.abs(flat(cases(m, anchors, img, wide, bugs={bug}, paste_cells=paste_cells)) - want).max()
        need = MARGIN.get(bug, MUTATION_MIN / RUST_TOL) * tol
        assert d > need, f"fixture blind to bug {bug} (max change {d:.2e} <= {need:.0e})"
        print(f"  ok  sees bug {bug:<18} max change {d:.2e} (> {need:.0e})")


def entry(pairs, files):
    return [{"file": f, "height": int(mm.shape[0]), "width": int(mm.shape[1]),
             "map": gen_fixtures.jfloats(mm.reshape(-1)), "score": float(np.float32(s))}
            for f, (mm, s) in zip(files, pairs)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(TINY))
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--tolerance", type=float, default=RUST_TOL,
                   help="the Rust test's tolerance: every checked bug must move a number by 10x it")
    p.add_argument("--paste-cells", type=int, default=1,
                   help="side of the pasted block of the product pair, in patches")
    a = p.parse_args(argv)
    torch.set_num_threads(1)  # one summation order: reproducible floats
    torch.set_grad_enabled(False)
    m = load_model(a.model)
    anchors = text_anchors(m)
    img = load_rgb(m.dir / "image.png")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    big = load_rgb(m.dir / "image_big.png")
    wide = np.ascontiguousarray(big[0:m.size, 0:big.shape[1]])  # 48×32 (W×H) for openclip_tiny
    Image.fromarray(wide).save(out / "wide.png")
    wide = load_rgb(out / "wide.png")  # exactly what the test decodes
    assert wide.shape[1] > wide.shape[0], "wide.png must be wider than tall"

    ref = cases(m, anchors, img, wide, paste_cells=a.paste_cells)
    check_mutations(m, anchors, img, wide, ref, a.tolerance, a.paste_cells)
    views_moved = abs(ref["anovl_v1"][0][1] - ref["anovl_v22"][0][1])
    assert views_moved > a.tolerance, f"22 views do not move the score ({views_moved:.2e})"
    assert np.array_equal(ref["anovl_v1"][0][0], ref["anovl_v22"][0][0]), "the map must not depend on views"
    fixtures = ROOT / "tests/fixtures"  # paths in the document are relative to it
    doc = {
        "model": (m.dir.resolve() / "model.safetensors").relative_to(fixtures).as_posix(),
        "text_heads": m.config["text_heads"], "act": m.config["act"],
        "domain": DOMAIN, "object": OBJECT, "tolerance": a.tolerance,
        "anchors": gen_fixtures.jfloats(anchors),
        "paste": {"rgb": list(PASTE_RGB), "cell": list(PASTE_CELL), "patch": m.patch,
                  **({"cells": a.paste_cells} if a.paste_cells != 1 else {})},
        "product_config": {"ref_layers": PRODUCT["ref_layers"], "lambda": PRODUCT["lambda_"],
                           "neighbourhood": PRODUCT["neighbourhood"], "views": 1},
        "anovl_v1": entry(ref["anovl_v1"], ["image.png"]),
        "anovl_v22": entry(ref["anovl_v22"], ["image.png"]),
        "product": entry(ref["product"], ["image.png", "pasted"]),
        "wide": {"offsets": gen_map_fixture.tile_offsets(wide.shape[1], wide.shape[0], m.size),
                 **entry(ref["wide"], [(out.resolve() / "wide.png").relative_to(fixtures).as_posix()])[0]},
    }
    path = out / "reference.json"
    path.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    total = path.stat().st_size + (out / "wide.png").stat().st_size
    assert total <= MAX_BYTES, f"fixture too large: {total} bytes"
    for k in ("anovl_v1", "anovl_v22", "product", "wide"):
        print(f"  {k:<10} scores {[round(s, 6) for _, s in ref[k]]}")
    print(f"{path}: {path.stat().st_size} bytes (+ wide.png {(out / 'wide.png').stat().st_size})")
    return ref


if __name__ == "__main__":
    main()
