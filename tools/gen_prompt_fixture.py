#!/usr/bin/env python3
"""Reference for duoclip's prompt ensemble (METHOD.md §3): tests/fixtures/prompts/reference.json.

The prompt lists are written out here again from METHOD.md, independently of src/prompts.rs
(articles by hand, per phrase; f-strings instead of placeholder words), and embedded with the
real package: open_clip.tokenize ids into open_clip's CLIP.encode_text, on the tiny model of
tests/fixtures/openclip_tiny rebuilt with tools/gen_fixtures.py's own builder and loaded with
the exact (fp16-rounded) weights of its model.safetensors.

Per case (domain, object) the file holds:
  prompts        count per side, sha256 of the "\\n"-joined normal / abnormal lists, the first
                 3 and last 3 prompts of each block
  t_n, t_a       normalize(mean of the UNnormalized embeddings) of each side
  rows           a few rows of E (unit embeddings, normal block first), by index

The script refuses to write a reference that cannot tell the faithful ensemble from the
plausible bug "mean of the normalized embeddings" (it must move t_n or t_a by more than 10x
the Rust tolerance), and checks first that the rebuilt model reproduces
tests/fixtures/openclip_tiny/reference.json's text embeddings.

CPU only; pinned packages of tools/requirements.txt; about 5 s. Output is byte-for-byte
reproducible. Run from the repository root:

  python tools/gen_prompt_fixture.py
"""

import hashlib
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_fixtures  # noqa: E402  (our own helpers: the model builder, float formatting)

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests/fixtures/openclip_tiny"
OUT = ROOT / "tests/fixtures/prompts/reference.json"

# The arguments tests/fixtures/README.md gives for openclip_tiny.
TINY_ARGS = [
    "--layout", "openclip", "--out", str(TINY),
    "--vision-width", "128", "--vision-layers", "2", "--vision-heads", "2",
    "--vision-mlp-ratio", "2", "--patch", "8", "--image-size", "32", "--embed-dim", "32",
    "--text-width", "8", "--text-layers", "2", "--text-heads", "2",
    "--act", "gelu", "--dtype", "fp16", "--seed", "0", "--pt-vision-fp32",
]

NORMAL = ["normal {x}", "flawless {x}", "perfect {x}", "unblemished {x}",
          "{x} without flaw", "{x} without defect", "{x} without damage"]
ABNORMAL = ["damaged {x}", "abnormal {x}", "imperfect {x}", "blemished {x}",
            "{x} with flaw", "{x} with defect", "{x} with damage"]

# METHOD.md §3, in its order; {art} = "a"/"an", {d} = domain phrase, {s} = state-filled object.
FORMS = [
    "a cropped {d} of the {s}", "a cropped {d} of a {s}",
    "a close-up {d} of a {s}", "a close-up {d} of the {s}",
    "a bright {d} of a {s}", "a bright {d} of the {s}",
    "a dark {d} of the {s}", "a dark {d} of a {s}",
    "a jpeg corrupted {d} of a {s}", "a jpeg corrupted {d} of the {s}",
    "a blurry {d} of the {s}", "a blurry {d} of a {s}",
    "{art} {d} of a {s}", "{art} {d} of the {s}",
    "{art} {d} of a small {s}", "{art} {d} of the small {s}",
    "{art} {d} of a large {s}", "{art} {d} of the large {s}",
    "{art} {d} of the {s} for visual inspection", "{art} {d} of a {s} for visual inspection",
    "{art} {d} of the {s} for anomaly detection", "{art} {d} of a {s} for anomaly detection",
]
assert len(FORMS) == 22 and len(NORMAL) == len(ABNORMAL) == 7

# (phrase, article) by hand, as each phrase is spoken.
PHRASES = {
    "object": [("industrial photo", "an"), ("industrial image", "an"),
               ("manufacturing image", "a")],
    "texture": [("industrial photo", "an"), ("textural photo", "a"), ("surface picture", "a")],
    "brain-mri": [("brain MRI scan", "a"), ("MRI image", "an"), ("medical image", "a")],
    "liver-ct": [("liver CT scan", "a"), ("CT image", "a"), ("medical image", "a")],
    # "OCT" is read letter by letter, "oh-see-tee": an OCT image.
    "retinal-oct": [("retinal OCT scan", "a"), ("OCT image", "an"), ("medical image", "a")],
    "chest-xray": [("chest X-ray", "a"), ("radiograph", "a"), ("medical image", "a")],
    "histopathology": [("histopathology slide", "a"), ("microscopy image", "a"),
                       ("medical image", "a")],
    # A custom domain of two phrases: an initial read as a letter ("an X-ray") and an
    # initialism whose first letter sounds like "you" ("a USB").
    "custom:X-ray image,USB camera photo": [("X-ray image", "an"), ("USB camera photo", "a")],
}
# Every built-in domain with the object the site's tiny bundle holds for it (so that its
# shipped anchors are checked too), and a custom one.
CASES = [("object", "metal_nut"), ("texture", "carpet"), ("brain-mri", "brain"),
         ("liver-ct", "liver"), ("retinal-oct", "retina"), ("chest-xray", "chest"),
         ("histopathology", "tissue"), ("custom:X-ray image,USB camera photo", "circuit_board")]


def block(domain, obj, states):
    return [form.format(art=art, d=phrase, s=state.format(x=obj))
            for phrase, art in PHRASES[domain] for form in FORMS for state in states]


def load_tiny():
    a = gen_fixtures.parse_args(TINY_ARGS)
    model = gen_fixtures.build_openclip(a)
    sd = {k: v.float() for k, v in load_file(str(TINY / "model.safetensors")).items()}
    model.load_state_dict(sd, strict=True)
    model.eval()
    ref = json.loads((TINY / "reference.json").read_text())
    ids, _ = gen_fixtures.tokenize(ref["texts"])
    with torch.no_grad():
        got = model.encode_text(ids)
    want = torch.tensor(ref["text_embedding"])
    err = (got - want).abs().max().item()
    assert err < 1e-5, f"rebuilt openclip_tiny differs from its reference.json by {err:.2e}"
    return model


@torch.no_grad()
def case(model, domain, obj):
    import open_clip
    normal, abnormal = block(domain, obj, NORMAL), block(domain, obj, ABNORMAL)
    per_side = len(normal)
    prompts = normal + abnormal
    ids = open_clip.tokenize(prompts)
    assert (ids[:, -1] == 0).all(), "a prompt fills the whole context (truncated?)"
    emb = torch.cat([model.encode_text(ids[i:i + 64]) for i in range(0, len(ids), 64)])
    t_n = F.normalize(emb[:per_side].mean(0), dim=0)
    t_a = F.normalize(emb[per_side:].mean(0), dim=0)
    unit = F.normalize(emb, dim=1)
    wrong_n, wrong_a = (F.normalize(unit[s].mean(0), dim=0)
                        for s in (slice(0, per_side), slice(per_side, None)))
    moved = max((wrong_n - t_n).abs().max().item(), (wrong_a - t_a).abs().max().item())
    assert moved > gen_fixtures.MUTATION_MIN, f"{domain}: blind to mean-of-normalized ({moved:.2e})"
    print(f"  ok  {domain}/{obj}: {per_side} per side; mean-of-normalized moves t by {moved:.2e}")
    p = per_side
    rows = sorted({0, 1, 6, 7, 22 * 7, p - 1, p, p + 1, 2 * p - 1})
    sha = lambda xs: hashlib.sha256("\n".join(xs).encode("utf-8")).hexdigest()
    return {
        "domain": domain, "object": obj, "per_side": per_side,
        "sha256": {"normal": sha(normal), "abnormal": sha(abnormal)},
        "first": {"normal": normal[:3], "abnormal": abnormal[:3]},
        "last": {"normal": normal[-3:], "abnormal": abnormal[-3:]},
        "t_n": gen_fixtures.jfloats(t_n), "t_a": gen_fixtures.jfloats(t_a),
        "rows": {str(r): gen_fixtures.jfloats(unit[r]) for r in rows},
    }


def main():
    torch.set_num_threads(1)  # one summation order, so the floats are reproducible
    model = load_tiny()
    ref = {
        "model": "openclip_tiny/model.safetensors", "text_heads": 2,
        "tolerance": gen_fixtures.RUST_TOL,
        "cases": [case(model, d, o) for d, o in CASES],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(ref, separators=(",", ":"), ensure_ascii=False) + "\n")
    print(f"{OUT.relative_to(ROOT)}: {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
