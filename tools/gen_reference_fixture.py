#!/usr/bin/env python3
"""Reference fixture for duoclip's visual references (src/detect/reference.rs, METHOD.md §5).

A torch implementation of METHOD.md §5, written from that text alone, run in float64 on fixed
random float32 features, writes tests/fixtures/reference/reference.json:

  grid            [4, 4] patch grid (row-major token order)
  features        per layer [B][N][C_l] raw float32 tokens; layer 0 plays the V-V tokens
                  (C = 8), layer 1 an ordinary-stream tap (C = 12)
  r1, r3          for neighbourhood r = 1 and r = 3, each with
    normalized    per layer [B][N][C_l]: (r×r mean over the grid, replicate padding, r = 3)
                  then L2 normalization per token
    distance      [B][B][N]: d_B(i) = ½·(1 − max_j cos(f_A(i), f_B(j))) averaged over layers,
                  for image A (first index) against B (second), self included
    pairs         [B][N]: visual scores with consecutive pairs 0↔1, 2↔3, 4↔5 (k = 1)
    set           [B][N]: visual scores against all other images (k = B − 1 = 5): mean of the
                  ⌈0.3·k⌉ = 2 smallest distances per patch

Features: B = 6 images of N = 16 tokens, each a shared per-position base plus per-image noise
(so nearest neighbours are not arbitrary); image 5 is an exact copy of image 0, so exact zeros
and ties occur. ASSUMPTIONS mirrored from reference.rs: averaging happens on raw tokens before
normalization; the grid border is replicate-padded.

Every plausible bug in MUTATIONS must move some output by more than 10x the Rust tolerance
(1e-6), or the script fails. CPU only; pinned versions in tools/requirements.txt. Never run by CI.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_fixtures import jfloats  # noqa: E402  (our own helper: float32 shortest repr)

IMAGES, GRID, CHANNELS = 6, (4, 4), (8, 12)
RUST_TOL = 1e-6
MUTATION_MIN = 10 * RUST_TOL
MUTATIONS = ["normalize_first", "zero_pad", "shrink_border", "mean_all_refs", "largest_refs",
             "layer0_only", "sum_layers", "min_cos", "no_half", "floor_cut"]


def make_features(seed):
    g = torch.Generator().manual_seed(seed)
    n = GRID[0] * GRID[1]
    layers = []
    for c in CHANNELS:
        base = torch.randn(n, c, generator=g)
        noise = torch.randn(IMAGES, n, c, generator=g)
        scale = 1.0 + torch.rand(IMAGES, n, 1, generator=g)  # raw tokens are not unit length
        x = ((base + 0.6 * noise) * scale).float()
        x[5] = x[0]
        layers.append(x)
    return layers


def neighbourhood(x, r, bugs):
    """x [B, N, C] raw → r×r mean over the grid, [B, N, C]."""
    if r == 1:
        return x
    b, n, c = x.shape
    grid = x.transpose(1, 2).reshape(b, c, *GRID)
    if "zero_pad" in bugs:
        out = F.avg_pool2d(F.pad(grid, (1, 1, 1, 1)), 3, stride=1)
    elif "shrink_border" in bugs:
        out = F.avg_pool2d(grid, 3, stride=1, padding=1, count_include_pad=False)
    else:
        out = F.avg_pool2d(F.pad(grid, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return out.reshape(b, c, n).transpose(1, 2)


def features(raw, r, bugs=()):
    """Per layer [B, N, C]: optional neighbourhood mean, then unit tokens (METHOD.md §5)."""
    out = []
    for x in raw:
        x = x.double()
        if "normalize_first" in bugs:
            x = F.normalize(x, dim=-1)
        out.append(F.normalize(neighbourhood(x, r, bugs), dim=-1))
    return out


def distance(feats, a, b, bugs=()):
    """d_B(i) = ½·(1 − max_j cos(f_A(i), f_B(j))), averaged over layers: [N]."""
    per_layer = []
    for f in feats:
        cos = f[a] @ f[b].T
        best = cos.min(dim=1).values if "min_cos" in bugs else cos.max(dim=1).values
        per_layer.append((1 - best) if "no_half" in bugs else 0.5 * (1 - best))
    if "layer0_only" in bugs:
        return per_layer[0]
    stacked = torch.stack(per_layer)
    return stacked.sum(0) if "sum_layers" in bugs else stacked.mean(0)


def kept(k, bugs):
    """⌈0.3·k⌉ in integers (0.3 * 10 is 3.0000000000000004 in floats)."""
    if "floor_cut" in bugs:
        return max(1, int(0.3 * k))
    return -(-3 * k // 10)


def visual_score(feats, a, refs, bugs=()):
    """k = 1: d_B; k ≥ 2: mean of the ⌈0.3·k⌉ smallest d_B(i) over the references."""
    d = torch.stack([distance(feats, a, b, bugs) for b in refs])
    if len(refs) == 1:
        return d[0]
    if "mean_all_refs" in bugs:
        return d.mean(0)
    ordered = torch.sort(d, dim=0, descending="largest_refs" in bugs).values
    return ordered[: kept(len(refs), bugs)].mean(0)


def outputs(raw, r, bugs=()):
    feats = features(raw, r, bugs)
    ids = range(IMAGES)
    return {
        "normalized": feats,
        "distance": torch.stack([torch.stack([distance(feats, a, b, bugs) for b in ids]) for a in ids]),
        "pairs": torch.stack([visual_score(feats, a, [a ^ 1], bugs) for a in ids]),
        "set": torch.stack([visual_score(feats, a, [b for b in ids if b != a], bugs) for a in ids]),
    }


def flat(out):
    return torch.cat([t.flatten() for t in out["normalized"]]
                     + [out[k].flatten() for k in ("distance", "pairs", "set")])


def check_mutations(raw):
    ref = torch.cat([flat(outputs(raw, r)) for r in (1, 3)])
    for bug in MUTATIONS:
        got = torch.cat([flat(outputs(raw, r, (bug,))) for r in (1, 3)])
        d = (got - ref).abs().max().item()
        assert d > MUTATION_MIN, f"fixture blind to bug {bug} (max change {d:.2e})"
        print(f"  ok  sees bug {bug:<16} max change {d:.2e}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="tests/fixtures/reference")
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args(argv)
    torch.set_grad_enabled(False)
    raw = make_features(a.seed)
    check_mutations(raw)
    ref = {"grid": list(GRID), "seed": a.seed, "features": [jfloats(x) for x in raw]}
    for r in (1, 3):
        o = outputs(raw, r)
        ref[f"r{r}"] = {
            "normalized": [jfloats(x) for x in o["normalized"]],
            **{k: jfloats(o[k]) for k in ("distance", "pairs", "set")},
        }
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "reference.json").write_text(json.dumps(ref, separators=(",", ":")) + "\n")
    print(f"{out / 'reference.json'} written")


if __name__ == "__main__":
    main()
