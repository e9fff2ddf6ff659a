#!/usr/bin/env python3
"""A tiny OpenCLIP model whose detector maps have signal (tests/fixtures/openclip_signal).

The random tiny models of tools/gen_fixtures.py give anchors with cos(t_n, t_a) ≈ 0.9997, so
every p_abn is 0.5 ± 0.01 and a wrong map can pass a parity test. Faithful p_abn has no logit
scale (METHOD §3: p_abn(f) = σ(f̂·(t_a − t_n))), so the anchors themselves must move apart
before any patch can lean one way. This script builds a random model exactly as gen_fixtures
does, then reshapes two matrices with rank-one terms:

  text_projection' ∝ P + μ·v·wᵀ     v: the unit part of h̄_a − h̄_n orthogonal to h̄_a + h̄_n, where
                                    h̄ = mean over a side's METHOD §3 prompts of the pooled text
                                    feature before the projection (ln_final at EOT); w: a seeded
                                    unit vector orthogonal to (h̄_a + h̄_n)·P. μ is solved so
                                    that cos(t_n, t_a) = ANCHOR_COS (anchors 1.6 apart);
                                    rescaled to P's norm (text embeddings stay ~1 in size).
  visual.proj'     = proj + λ·u·dᵀ  d = (t_a − t_n)/|t_a − t_n| of the reshaped text tower;
                                    u: first principal direction of the pre-projection tokens
                                    (ln_post of the V-V stream's patch tokens and of the
                                    ordinary stream's CLS) of the detector fixture's images,
                                    signed so that the pasted block leans to t_a.

Both are rounded to fp16 with every other weight, and everything downstream is recomputed from
the saved file by the references: gen_fixtures' reference.json (the package's encode_image /
encode_text, the V-V tokens, their porting-bug checks) and gen_detector_fixture's detector
reference (detector/reference.json, wide.png), with the Rust tolerance MAP_TOL = 1e-5. Before
writing, the script asserts the signal: every stored map spans ≥ MIN_RANGE and the product
pair's scores differ by ≥ MIN_GAP.

Architecture (smaller than openclip_tiny, for the fixture budget): vision width 64, 2 layers,
1 head, MLP 128, patch 4, input 32 → 8×8 grid (a 3×3 box filter on a 4×4 grid would flatten the
map); text width 4, 2 layers, 2 heads; embed 32; gelu; fp16; seed 2. The product pair pastes a
3×3-patch block (a one-patch block is diluted to 1/9 by the box filter).

CPU only; pinned packages of tools/requirements.txt; ~7 s; byte-for-byte reproducible.
From the repository root:

    python tools/gen_signal_fixture.py
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_detector_fixture as gd  # noqa: E402
import gen_fixtures  # noqa: E402
import gen_map_fixture  # noqa: E402
import gen_prompt_fixture  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/openclip_signal"
ARGS = ["--layout", "openclip", "--vision-width", "64", "--vision-layers", "2",
        "--vision-mlp-ratio", "2", "--patch", "4", "--image-size", "32", "--embed-dim", "32",
        "--text-width", "4", "--text-layers", "2", "--text-heads", "2", "--act", "gelu",
        "--dtype", "fp16", "--seed", "2"]
ANCHOR_COS = -0.3   # cos(t_n, t_a): |t_a − t_n| ≈ 1.6, so p_abn can reach σ(±1.6) = 0.17..0.83
LAMBDA = 5.0        # visual lean: the pair's score gap grows with it; 5 clears MIN_GAP with margin
PASTE_CELLS = 3
TOLERANCE = 1e-5    # tests/common/mod.rs::MAP_TOL
MIN_RANGE, MIN_GAP = 0.3, 0.05
W_SEED = 7


def unit(x):
    return x / x.norm()


@torch.no_grad()
def side_means(model, a):
    """h̄_n, h̄_a [text width]: mean pooled text feature before text_projection per side."""
    txt = dict(gen_fixtures.text_weights(model.state_dict(), "openclip", a.text_layers),
               proj=torch.eye(a.text_width))
    return [gen_fixtures.text_forward(txt, ids, a.text_heads, a.act).mean(0)
            for ids in prompt_ids()]


def prompt_ids():
    import open_clip
    return [open_clip.tokenize(gen_prompt_fixture.block(gd.DOMAIN, gd.OBJECT, states))
            for states in (gen_prompt_fixture.NORMAL, gen_prompt_fixture.ABNORMAL)]


@torch.no_grad()
def separate_anchors(model, a):
    """text_projection += μ·v·wᵀ with μ such that cos(t_n, t_a) = ANCHOR_COS (bisection)."""
    h_n, h_a = side_means(model, a)
    delta, common = h_a - h_n, unit(h_a + h_n)
    v = unit(delta - (delta @ common) * common)
    p = model.text_projection.detach().clone()
    mid = (h_a + h_n) @ p
    w = torch.randn(a.embed_dim, generator=torch.Generator().manual_seed(W_SEED))
    w = unit(w - (w @ unit(mid)) * unit(mid))

    def cos(mu):
        q = p + mu * torch.outer(v, w)
        return (unit(h_n @ q) @ unit(h_a @ q)).item()

    lo, hi = 0.0, 1e4
    assert cos(hi) < ANCHOR_COS < cos(lo)
    for _ in range(60):
        mu = (lo + hi) / 2
        lo, hi = (mu, hi) if cos(mu) > ANCHOR_COS else (lo, mu)
    q = p + lo * torch.outer(v, w)
    model.text_projection.copy_(q * (p.norm() / q.norm()))  # the scale leaves t_n, t_a as they are
    print(f"  text_projection += μ·v·wᵀ, μ = {lo:.2f}")


def model_view(model, a, out):
    """gen_detector_fixture's Model of the in-memory package model."""
    c = gen_fixtures.config_json(a)
    vis = gen_fixtures.vision_weights(model.state_dict(), "openclip", a.vision_layers)
    return gd.Model(out, "openclip", c, a, vis, model)


def fixture_images(a):
    img = gen_fixtures.make_image(a.image_size, a.seed)
    big = gen_fixtures.make_image(gen_fixtures.big_size(a), a.seed + 1)
    return img, big


@torch.no_grad()
def lean_patches(model, a, out):
    """visual.proj += λ·u·dᵀ (see the module docstring)."""
    m = model_view(model, a, out)
    t_n, t_a = gd.text_anchors(m)
    d = unit(t_a - t_n)
    print(f"  anchors: cos(t_n, t_a) = {(t_n @ t_a).item():.4f}, |t_a − t_n| = {(t_a - t_n).norm().item():.4f}")
    img, big = fixture_images(a)
    pasted = gd.pasted(m, img, PASTE_CELLS)
    wide = np.ascontiguousarray(big[0:a.image_size])
    before_proj = dict(m.vis, proj=torch.eye(a.vision_width))
    rows = []
    for px in [gen_fixtures.to_pixels(img), gen_fixtures.to_pixels(pasted)] + \
            [t[None] for t in gen_map_fixture.clip_tiles(wide, a.image_size)]:
        cls, tokens, _ = gen_fixtures.dual_stream(before_proj, px, a.vision_heads, a.act)
        rows.append(torch.cat([tokens, cls[None]]))
    x = torch.cat(rows)
    centred = x - x.mean(0)
    u = torch.linalg.svd(centred, full_matrices=False).Vh[0]
    g = m.config["grid"][1]
    r0, c0 = gd.PASTE_CELL
    block = [r * g + c for r in range(r0, r0 + PASTE_CELLS) for c in range(c0, c0 + PASTE_CELLS)]
    n = len(rows[0])  # the pasted image's rows follow image.png's
    if (centred[n:][block] @ u).mean() < 0:
        u = -u
    model.visual.proj.add_(LAMBDA * torch.outer(u, d))
    print(f"  visual.proj += λ·u·dᵀ, λ = {LAMBDA}")


def check_signal(ref):
    ranges = {f"{k}[{i}]": float(mm.max() - mm.min()) for k, r in ref.items() for i, (mm, _) in enumerate(r)}
    gap = abs(ref["product"][0][1] - ref["product"][1][1])
    for k, span in ranges.items():
        print(f"  {k:<12} map spans {span:.4f}")
    print(f"  product scores differ by {gap:.4f}")
    assert min(ranges.values()) >= MIN_RANGE, f"a map spans less than {MIN_RANGE}: {ranges}"
    assert gap >= MIN_GAP, f"the product pair's scores differ by {gap:.4f} < {MIN_GAP}"


def main():
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    out = OUT
    out.mkdir(parents=True, exist_ok=True)
    a = gen_fixtures.parse_args(ARGS + ["--out", str(out)])
    model = gen_fixtures.build(a)
    gen_fixtures.perturb_(model, a.seed + 1)
    gen_fixtures.round_to_dtype_(model, gen_fixtures.DTYPES[a.dtype])
    separate_anchors(model, a)
    gen_fixtures.round_to_dtype_(model, gen_fixtures.DTYPES[a.dtype])
    lean_patches(model, a, out)
    gen_fixtures.round_to_dtype_(model, gen_fixtures.DTYPES[a.dtype])
    gen_fixtures.save_checkpoint(model, a, out)

    img, big = fixture_images(a)
    Image.fromarray(img).save(out / "image.png")
    Image.fromarray(big).save(out / "image_big.png")
    gen_fixtures.reload_matches(model, a, out, gen_fixtures.to_pixels(img))
    vis = gen_fixtures.vision_weights(model.state_dict(), a.layout, a.vision_layers)
    ref = {"layout": a.layout, "config": gen_fixtures.config_json(a)}
    ref.update(gen_fixtures.image_reference(model, a, vis, img))
    ref["big"] = gen_fixtures.big_reference(model, a, vis, big)
    ref.update(gen_fixtures.text_reference(model, a))
    (out / "reference.json").write_text(json.dumps(ref, separators=(",", ":"), ensure_ascii=False) + "\n")
    print(f"{out}: checkpoint and reference.json written")

    det = gd.main(["--model", str(out), "--out", str(out / "detector"),
                   "--tolerance", str(TOLERANCE), "--paste-cells", str(PASTE_CELLS)])
    check_signal(det)


if __name__ == "__main__":
    main()
