#!/usr/bin/env python3
"""Reference fixtures for duoclip's Rust parity tests.

Builds a tiny *random* CLIP with the real package (open_clip or transformers), perturbs every
parameter, rounds it to the storage dtype, saves the checkpoint in that package's own layout and
writes reference.json with the numbers the Rust port must reproduce (METHOD.md §1-§2):

  image_embedding   package encode_image / get_image_features (unnormalized)
  vv_patch_tokens   our own torch implementation of the V-V stream (METHOD.md §2)
  taps              ordinary-stream residual after blocks 0 and L-1, patch tokens, raw
  big               the same at ~1.5x input size with a bicubically resized position grid
  tokens / text_embedding   open_clip.tokenize ids and package encode_text / get_text_features

Every reference from our own code is first checked against the package (ordinary stream ==
encode_image, own text tower == encode_text, taps == package intermediates, within 1e-5), and
every fixture must be able to *see* a list of plausible porting bugs (VISION_MUTATIONS,
TEXT_MUTATIONS): each has to move some output by more than 10x the Rust tolerance, or the script
fails.

CPU only; run with the pinned versions in tools/requirements.txt. Never run by CI.
"""

import argparse
import copy
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

VOCAB, CONTEXT = 49408, 77
SOT, EOT, PAD = 49406, 49407, 0
EPS = 1e-5
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

PACKAGE_TOL = 1e-5   # our own torch code vs the package, both fp32 on the same weights
RUST_TOL = 1e-4      # what the Rust tests allow (documented in tests/fixtures/README.md)
MUTATION_MIN = 10 * RUST_TOL  # a bug the fixture cannot see by this margin makes it useless

# Six prompts: the real use, tokenizer edge cases (case, runs of whitespace, tab/newline,
# punctuation incl. '!' whose id is 0 = the pad id, a contraction, digits, non-ASCII bytes) and
# one past 77 tokens (truncation must keep EOT as the last of 77).
TEXTS = [
    "a photo of a damaged metal_nut",
    "A  Close-Up   PHOTO of the Screw, with flaw!!",
    "it's a jpeg corrupted industrial image of a pcb4 for anomaly detection",
    "naïve café résumé: 3×3 crème brûlée",
    "a\tcropped\nsurface picture of the   grid ",
    " ".join(["a close-up industrial photo of a metal_nut with defect for anomaly detection,"] * 8),
]


# ----------------------------------------------------------------------------- CLI / arch

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layout", choices=["openclip", "hf"], required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--vision-width", type=int, default=128)
    p.add_argument("--vision-layers", type=int, default=2)
    p.add_argument("--vision-heads", type=int, default=None, help="default width/64")
    p.add_argument("--vision-mlp-ratio", type=float, default=4.0)
    p.add_argument("--patch", type=int, default=8)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--embed-dim", type=int, default=32)
    p.add_argument("--text-width", type=int, default=8)
    p.add_argument("--text-layers", type=int, default=2)
    p.add_argument("--text-heads", type=int, default=2)
    p.add_argument("--text-mlp-ratio", type=float, default=4.0)
    p.add_argument("--act", choices=["gelu", "quick_gelu"], default="gelu")
    p.add_argument("--dtype", choices=list(DTYPES), default="fp32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-text", action="store_true", help="checkpoint holds the vision tower only")
    p.add_argument("--pt", action="store_true", help="also model.pt = torch.save(state_dict), same keys/dtype")
    p.add_argument("--pt-vision-fp32", action="store_true",
                   help="also vision.pt = torch.save of the visual.* keys in fp32 (openclip layout)")
    a = p.parse_args(argv)
    if a.vision_heads is None:
        a.vision_heads = max(1, a.vision_width // 64)
    _validate(p, a)
    return a


def _validate(p, a):
    if a.vision_width % a.vision_heads or a.text_width % a.text_heads:
        p.error("widths must be divisible by their head counts")
    if a.image_size % a.patch:
        p.error("image size must be a multiple of the patch")
    if a.pt_vision_fp32 and a.layout != "openclip":
        p.error("--pt-vision-fp32 is for the openclip layout")


def mlp_width(width, ratio):
    return int(width * ratio)  # open_clip's own rule (ResidualAttentionBlock)


def big_size(a):
    """1.5x the input size, rounded half-up to a whole number of patches."""
    return int(math.floor(1.5 * a.image_size / a.patch + 0.5)) * a.patch


def args_from_config(layout, out, c):
    """gen_fixtures' command-line arguments that rebuild the architecture of `c`."""
    return parse_args([
        "--layout", layout, "--out", str(out),
        "--vision-width", str(c["vision_width"]), "--vision-layers", str(c["vision_layers"]),
        "--vision-heads", str(c["vision_heads"]),
        "--vision-mlp-ratio", str(c["vision_mlp"] / c["vision_width"]),
        "--patch", str(c["patch_size"]), "--image-size", str(c["image_size"]),
        "--embed-dim", str(c["embed_dim"]), "--text-width", str(c["text_width"]),
        "--text-layers", str(c["text_layers"]), "--text-heads", str(c["text_heads"]),
        "--text-mlp-ratio", str(c["text_mlp"] / c["text_width"]), "--act", c["act"],
        "--dtype", c["dtype"], "--seed", str(c["seed"])])


def config_json(a):
    g = a.image_size // a.patch
    return {
        "vision_width": a.vision_width, "vision_layers": a.vision_layers,
        "vision_heads": a.vision_heads, "vision_head_dim": a.vision_width // a.vision_heads,
        "vision_mlp": mlp_width(a.vision_width, a.vision_mlp_ratio),
        "patch_size": a.patch, "image_size": a.image_size, "grid": [g, g],
        "embed_dim": a.embed_dim,
        "text_width": a.text_width, "text_layers": a.text_layers, "text_heads": a.text_heads,
        "text_head_dim": a.text_width // a.text_heads,
        "text_mlp": mlp_width(a.text_width, a.text_mlp_ratio),
        "context_length": CONTEXT, "vocab_size": VOCAB, "sot": SOT, "eot": EOT, "pad": PAD,
        "act": a.act, "layer_norm_eps": EPS, "dtype": a.dtype, "seed": a.seed,
        "has_text": not a.no_text, "image_mean": list(MEAN), "image_std": list(STD),
        "big_image_size": big_size(a),
    }


# ----------------------------------------------------------------------------- model building

def build_openclip(a, image_size=None):
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    vision = CLIPVisionCfg(
        layers=a.vision_layers, width=a.vision_width,
        head_width=a.vision_width // a.vision_heads,  # open_clip derives heads = width / head_width
        mlp_ratio=a.vision_mlp_ratio, patch_size=a.patch,
        image_size=image_size or a.image_size)
    text = CLIPTextCfg(
        context_length=CONTEXT, vocab_size=VOCAB, width=a.text_width,
        heads=a.text_heads, layers=a.text_layers, mlp_ratio=a.text_mlp_ratio)
    return CLIP(a.embed_dim, vision, text, quick_gelu=a.act == "quick_gelu").eval()


def quiet_transformers():
    """Progress bars and load reports would bury our own check lines."""
    from transformers.utils import logging
    logging.set_verbosity_error()
    logging.disable_progress_bar()


def build_hf(a):
    from transformers import CLIPConfig, CLIPModel
    quiet_transformers()
    vision = dict(
        hidden_size=a.vision_width, intermediate_size=mlp_width(a.vision_width, a.vision_mlp_ratio),
        num_hidden_layers=a.vision_layers, num_attention_heads=a.vision_heads,
        image_size=a.image_size, patch_size=a.patch, hidden_act=a.act, layer_norm_eps=EPS,
        projection_dim=a.embed_dim)
    text = dict(
        vocab_size=VOCAB, hidden_size=a.text_width,
        intermediate_size=mlp_width(a.text_width, a.text_mlp_ratio),
        num_hidden_layers=a.text_layers, num_attention_heads=a.text_heads,
        max_position_embeddings=CONTEXT, hidden_act=a.act, layer_norm_eps=EPS,
        projection_dim=a.embed_dim,
        # pool at the first EOT (not the legacy argmax path taken when eos_token_id == 2)
        bos_token_id=SOT, eos_token_id=EOT, pad_token_id=PAD)
    cfg = CLIPConfig(text_config=text, vision_config=vision, projection_dim=a.embed_dim)
    cfg._attn_implementation = "eager"  # plain softmax attention: no fused-kernel rounding
    return CLIPModel(cfg).eval()


def build(a):
    torch.manual_seed(a.seed)  # the packages' own init draws from the global RNG
    return build_openclip(a) if a.layout == "openclip" else build_hf(a)


@torch.no_grad()
def perturb_(model, seed):
    """Add N(0, s*(1+|p|)) to every parameter so no 0/1 init can hide a swapped or dropped
    tensor. 1-D tensors (LayerNorm affine, biases, class embedding) get the larger s, because
    their init is exactly 0 or 1 and a small nudge would let ln_1/ln_2 swaps pass at 1e-4."""
    g = torch.Generator().manual_seed(seed)
    for _, p in sorted(model.named_parameters()):
        s = 0.02 if p.dim() >= 2 else 0.1
        p.add_(torch.randn(p.shape, generator=g) * s * (1 + p.abs()))


@torch.no_grad()
def round_to_dtype_(model, dtype):
    """Keep fp32 storage but only values representable in the checkpoint dtype, so the fp32
    references are exact for what the file holds."""
    for p in model.parameters():
        p.copy_(p.to(dtype).to(torch.float32))


# ----------------------------------------------------------------------------- saving

def is_vision_key(key, layout):
    if layout == "openclip":
        return key.startswith("visual.")
    return key.startswith("vision_model.") or key.startswith("visual_projection.")


def state_dict_in(model, dtype, keep=lambda k: True):
    return {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()
            if keep(k) and v.is_floating_point()}


def save_openclip(model, a, out):
    keep = (lambda k: is_vision_key(k, "openclip")) if a.no_text else (lambda k: True)
    sd = state_dict_in(model, DTYPES[a.dtype], keep)
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    if a.pt:
        torch.save(sd, out / "model.pt")  # zip format is torch.save's default
    if a.pt_vision_fp32:
        torch.save(state_dict_in(model, torch.float32, lambda k: is_vision_key(k, "openclip")),
                   out / "vision.pt")


def save_hf(model, a, out):
    m = copy.deepcopy(model).to(DTYPES[a.dtype])
    m.save_pretrained(out)  # transformers 5 always writes safetensors (no safe_serialization arg)
    path = out / "model.safetensors"
    sd = load_file(str(path))
    bad = {k: v.dtype for k, v in sd.items() if v.dtype != DTYPES[a.dtype]}
    assert not bad, f"save_pretrained wrote other dtypes: {bad}"
    if a.no_text:
        sd = {k: v for k, v in sd.items() if is_vision_key(k, "hf")}
        save_file(sd, str(path), metadata={"format": "pt"})
    if a.pt:
        torch.save(sd, out / "model.pt")


def save_checkpoint(model, a, out):
    (save_openclip if a.layout == "openclip" else save_hf)(model, a, out)


@torch.no_grad()
def reload_matches(model, a, out, pixels):
    """The file on disk, loaded by the package itself, gives the same embedding."""
    if a.layout == "openclip":
        fresh = build_openclip(a)
        sd = {k: v.float() for k, v in load_file(str(out / "model.safetensors")).items()}
        missing, unexpected = fresh.load_state_dict(sd, strict=not a.no_text)
        assert not unexpected, unexpected
        if a.pt_vision_fp32:
            vis = torch.load(out / "vision.pt", weights_only=True)
            assert all(v.dtype == torch.float32 for v in vis.values())
            assert all(torch.equal(vis[k], sd[k]) for k in vis), "vision.pt != safetensors values"
            assert set(vis) == {k for k in sd if k.startswith("visual.")}
    else:
        from transformers import CLIPModel
        fresh = CLIPModel.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
    assert_close("reloaded checkpoint", package_image(fresh, a, pixels), package_image(model, a, pixels))


# ----------------------------------------------------------------------------- canonical weights

def _block(sd, p, layout):
    """One pre-LN block as plain tensors, Linear convention y = x @ W.T + b."""
    if layout == "openclip":
        wq, wk, wv = sd[p + "attn.in_proj_weight"].chunk(3)
        bq, bk, bv = sd[p + "attn.in_proj_bias"].chunk(3)
        names = dict(ln1="ln_1", ln2="ln_2", wo="attn.out_proj", fc1="mlp.c_fc", fc2="mlp.c_proj")
    else:
        wq, wk, wv = (sd[p + f"self_attn.{n}_proj.weight"] for n in "qkv")
        bq, bk, bv = (sd[p + f"self_attn.{n}_proj.bias"] for n in "qkv")
        names = dict(ln1="layer_norm1", ln2="layer_norm2", wo="self_attn.out_proj",
                     fc1="mlp.fc1", fc2="mlp.fc2")
    blk = dict(wq=wq, wk=wk, wv=wv, bq=bq, bk=bk, bv=bv)
    for short, long in names.items():
        blk[short + "_w"] = sd[p + long + ".weight"]
        blk[short + "_b"] = sd[p + long + ".bias"]
    return blk


def vision_weights(sd, layout, layers):
    if layout == "openclip":
        return dict(
            conv=sd["visual.conv1.weight"], cls=sd["visual.class_embedding"],
            pos=sd["visual.positional_embedding"],
            ln_pre=(sd["visual.ln_pre.weight"], sd["visual.ln_pre.bias"]),
            ln_post=(sd["visual.ln_post.weight"], sd["visual.ln_post.bias"]),
            proj=sd["visual.proj"],  # [W, D], used as x @ proj
            blocks=[_block(sd, f"visual.transformer.resblocks.{i}.", layout) for i in range(layers)])
    e = "vision_model.embeddings."
    return dict(
        conv=sd[e + "patch_embedding.weight"], cls=sd[e + "class_embedding"],
        pos=sd[e + "position_embedding.weight"],
        ln_pre=(sd["vision_model.pre_layrnorm.weight"], sd["vision_model.pre_layrnorm.bias"]),
        ln_post=(sd["vision_model.post_layernorm.weight"], sd["vision_model.post_layernorm.bias"]),
        proj=sd["visual_projection.weight"].T,  # Linear [D, W] -> [W, D]
        blocks=[_block(sd, f"vision_model.encoder.layers.{i}.", layout) for i in range(layers)])


def text_weights(sd, layout, layers):
    if layout == "openclip":
        return dict(
            tok=sd["token_embedding.weight"], pos=sd["positional_embedding"],
            ln_final=(sd["ln_final.weight"], sd["ln_final.bias"]), proj=sd["text_projection"],
            blocks=[_block(sd, f"transformer.resblocks.{i}.", layout) for i in range(layers)])
    t = "text_model."
    return dict(
        tok=sd[t + "embeddings.token_embedding.weight"], pos=sd[t + "embeddings.position_embedding.weight"],
        ln_final=(sd[t + "final_layer_norm.weight"], sd[t + "final_layer_norm.bias"]),
        proj=sd["text_projection.weight"].T,
        blocks=[_block(sd, f"{t}encoder.layers.{i}.", layout) for i in range(layers)])


# ----------------------------------------------------------------------------- own forward (METHOD §2)

def act_fn(name):
    if name == "quick_gelu":
        return lambda x: x * torch.sigmoid(1.702 * x)
    return lambda x: F.gelu(x)  # exact erf GELU, as nn.GELU() and HF "gelu"


def layer_norm(x, wb):
    return F.layer_norm(x, (x.shape[-1],), wb[0], wb[1], EPS)


def attention(q, k, v, heads, mask=None, scale_dim=None):
    """softmax(q kᵀ / √d) v per head; inputs and output [N, W]."""
    n, w = q.shape
    hd = w // heads
    q, k, v = (t.reshape(n, heads, hd).transpose(0, 1) for t in (q, k, v))
    logits = q @ k.transpose(-1, -2) / math.sqrt(scale_dim or hd)
    if mask is not None:
        logits = logits + mask
    return (logits.softmax(-1) @ v).transpose(0, 1).reshape(n, w)


def qkv(blk, y):
    return (y @ blk["wq"].T + blk["bq"], y @ blk["wk"].T + blk["bk"], y @ blk["wv"].T + blk["bv"])


def out_proj(blk, o):
    return o @ blk["wo_w"].T + blk["wo_b"]


def mlp(blk, x, act):
    h = act(layer_norm(x, (blk["ln2_w"], blk["ln2_b"])) @ blk["fc1_w"].T + blk["fc1_b"])
    return h @ blk["fc2_w"].T + blk["fc2_b"]


def ln1(blk, x):
    return layer_norm(x, (blk["ln1_w"], blk["ln1_b"]))


def ordinary_block(blk, x, heads, act, mask=None):
    q, k, v = qkv(blk, ln1(blk, x))
    x = x + out_proj(blk, attention(q, k, v, heads, mask))
    return x + mlp(blk, x, act)


def embed(vis, pixels, pos, bugs=()):
    x = F.conv2d(pixels, vis["conv"], stride=vis["conv"].shape[-1])[0]  # [W, gh, gw]
    x = x.flatten(1).T                                                  # row-major grid order
    x = torch.cat([vis["cls"][None], x]) + pos
    return x if "no_ln_pre" in bugs else layer_norm(x, vis["ln_pre"])


def vv_attention(blk, x, z, heads, bugs):
    """O_vv of METHOD §2, or one of the deliberate bugs in MUTATIONS."""
    q, k, v = qkv(blk, ln1(blk, z if "vv_reads_z" in bugs else x))
    if "vv_qk" in bugs:
        return out_proj(blk, attention(q, k, v, heads))
    a = k if "vv_kk" in bugs else v
    h = 1 if "vv_one_head" in bugs else heads
    scale_dim = v.shape[-1] if "vv_scale_width" in bugs else None
    if "vv_no_cls" in bugs:  # CLS neither attends nor is attended to
        o = attention(a[1:], a[1:], v[1:], h, scale_dim=scale_dim)
        return torch.cat([torch.zeros_like(o[:1]), out_proj(blk, o)])
    return out_proj(blk, attention(a, a, v, h, scale_dim=scale_dim))


def dual_stream(vis, pixels, heads, act_name, pos=None, bugs=()):
    """Returns (image token c, V-V patch tokens P [N, D], {block: ordinary patch residual})."""
    act = act_fn(_swap(act_name) if "act_swap" in bugs else act_name)
    x = z = embed(vis, pixels, vis["pos"] if pos is None else pos, bugs)
    taps = []
    for blk in vis["blocks"]:
        o_vv = vv_attention(blk, x, z, heads, bugs)
        x = ordinary_block(blk, x, heads, act)
        z = z + o_vv
        if "vv_mlp" in bugs:
            z = z + mlp(blk, z, act)
        taps.append(x[1:])
    post = (lambda t: t) if "no_ln_post" in bugs else (lambda t: layer_norm(t, vis["ln_post"]))
    patches = post(z[1:]) @ vis["proj"]
    if "grid_transpose" in bugs:
        g = round(math.sqrt(patches.shape[0]))
        patches = patches.reshape(g, g, -1).transpose(0, 1).reshape(g * g, -1)
    return post(x[0]) @ vis["proj"], patches, taps


def _swap(act_name):
    return "gelu" if act_name == "quick_gelu" else "quick_gelu"


def causal_mask(n):
    return torch.full((n, n), float("-inf")).triu(1)


def text_forward(txt, ids, heads, act_name, bugs=()):
    """Own text tower: causal pre-LN transformer, ln_final, pooled at the first EOT."""
    act = act_fn(_swap(act_name) if "act_swap" in bugs else act_name)
    h = 1 if "text_one_head" in bugs else heads
    mask = None if "no_causal" in bugs else causal_mask(CONTEXT)
    rows = []
    for row in ids:
        x = txt["tok"][row] + txt["pos"]
        for blk in txt["blocks"]:
            x = ordinary_block(blk, x, h, act, mask)
        x = layer_norm(x, txt["ln_final"])
        at = CONTEXT - 1 if "pool_last" in bugs else int((row == EOT).nonzero()[0])
        rows.append(x[at] @ txt["proj"])
    return torch.stack(rows)


def resize_pos(pos, g_old, g_new, align_corners=False):
    """Bicubic resize of the patch grid of a [1+g², W] position table; CLS row kept."""
    w = pos.shape[1]
    grid = pos[1:].reshape(1, g_old, g_old, w).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(g_new, g_new), mode="bicubic",
                         align_corners=align_corners, antialias=False)
    return torch.cat([pos[:1], grid.permute(0, 2, 3, 1).reshape(g_new * g_new, w)])


# ----------------------------------------------------------------------------- package forward

@torch.no_grad()
def package_image(model, a, pixels, big=False):
    if a.layout == "openclip":
        return model.encode_image(pixels)[0]
    # transformers 5: get_image_features returns a ModelOutput; pooler_output is projected
    return model.get_image_features(pixel_values=pixels, interpolate_pos_encoding=big).pooler_output[0]


@torch.no_grad()
def package_taps(model, a, pixels, blocks):
    if a.layout == "openclip":
        out = model.visual.forward_intermediates(
            pixels, indices=blocks, output_fmt="NLC", intermediates_only=True)
        return [t[0] for t in out["image_intermediates"]]  # CLS already split off
    hs = model.vision_model(pixel_values=pixels, output_hidden_states=True).hidden_states
    return [hs[i + 1][0, 1:] for i in blocks]  # hs[0] is the (pre-LN'd) encoder input


@torch.no_grad()
def package_text(model, a, ids):
    if a.layout == "openclip":
        return model.encode_text(ids)
    return model.get_text_features(input_ids=ids).pooler_output


@torch.no_grad()
def package_big_image(model, a, pixels, g, g2):
    """open_clip: a model built for the big size with the resized table loaded (what a user of
    open_clip does); HF: its own interpolate_pos_encoding (bicubic, align_corners=False)."""
    if a.layout == "hf":
        return package_image(model, a, pixels, big=True)
    big = build_openclip(a, image_size=g2 * a.patch)
    sd = model.state_dict()
    sd["visual.positional_embedding"] = resize_pos(sd["visual.positional_embedding"], g, g2)
    big.load_state_dict(sd)
    return package_image(big, a, pixels)


# ----------------------------------------------------------------------------- image

def make_image(size, seed):
    """Smooth gradients + coloured blobs + one stripe pattern + mild noise: every patch differs
    and has structure (pure noise would make all patches statistically alike)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    img = np.empty((size, size, 3))
    for c in range(3):  # a gradient in a different direction per channel
        ang = rng.uniform(0, 2 * np.pi)
        img[..., c] = 0.5 + 0.7 * (np.cos(ang) * (xx - 0.5) + np.sin(ang) * (yy - 0.5))
    for _ in range(6):
        cy, cx = rng.uniform(0, 1, 2)
        sigma = rng.uniform(0.05, 0.2)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma ** 2))
        img += blob[..., None] * rng.uniform(-0.6, 0.6, 3)
    fx, fy = rng.uniform(2, 6, 2)
    img += 0.1 * np.sin(2 * np.pi * (fx * xx + fy * yy))[..., None] * rng.uniform(-1, 1, 3)
    img += rng.normal(0, 0.03, img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def to_pixels(img):
    """png/255, then (x - mean) / std per channel; [1, 3, H, W] fp32. No resampling."""
    t = torch.from_numpy(img).float().div(255).permute(2, 0, 1)
    return ((t - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None])[None]


# ----------------------------------------------------------------------------- checks

def max_abs(a, b):
    return (a - b).abs().max().item()


def assert_close(name, ours, theirs, tol=PACKAGE_TOL):
    d = max_abs(ours, theirs)
    assert d <= tol, f"{name}: ours vs package max abs {d:.3e} > {tol:.0e}"
    print(f"  ok  {name:<44} max abs {d:.2e}")


VISION_MUTATIONS = ["vv_scale_width", "vv_one_head", "vv_reads_z", "vv_qk", "vv_kk", "vv_mlp",
                    "vv_no_cls", "no_ln_post", "no_ln_pre", "act_swap", "grid_transpose"]
TEXT_MUTATIONS = ["pool_last", "no_causal", "text_one_head", "act_swap"]


def check_mutations(name, run, ref_outputs, mutations, heads):
    """Each deliberate bug must move at least one output by > MUTATION_MIN."""
    for bug in mutations:
        if heads == 1 and bug in ("vv_one_head", "text_one_head", "vv_scale_width"):
            continue  # with one head these are not bugs: head_dim == width
        d = max(max_abs(o, r) for o, r in zip(run(bug), ref_outputs))
        assert d > MUTATION_MIN, f"{name}: fixture blind to bug {bug} (max change {d:.2e})"
        print(f"  ok  {name} sees bug {bug:<22} max change {d:.2e}")


# ----------------------------------------------------------------------------- references

def jfloats(t):
    """Nested lists of float32 values written with their shortest round-trip repr."""
    arr = np.asarray(t.detach().cpu().float() if torch.is_tensor(t) else t, dtype=np.float32)
    if arr.ndim == 1:
        return [float(str(v)) for v in arr]
    return [jfloats(r) for r in arr]


@torch.no_grad()
def image_reference(model, a, vis, img):
    pixels = to_pixels(img)
    c, patches, taps = dual_stream(vis, pixels, a.vision_heads, a.act)
    pkg = package_image(model, a, pixels)
    assert_close("ordinary stream CLS == package image embedding", c, pkg)
    last = a.vision_layers - 1
    for blk, theirs in zip(sorted({0, last}), package_taps(model, a, pixels, sorted({0, last}))):
        assert_close(f"tap after block {blk} == package intermediate", taps[blk], theirs)
    check_mutations("vision", lambda b: dual_stream(vis, pixels, a.vision_heads, a.act, bugs={b})[:2],
                    (c, patches), VISION_MUTATIONS, a.vision_heads)
    g = a.image_size // a.patch
    return {"image": "image.png", "image_embedding": jfloats(pkg), "vv_patch_tokens": jfloats(patches),
            "grid": [g, g], "taps": {str(b): jfloats(taps[b]) for b in sorted({0, last})}}


@torch.no_grad()
def big_reference(model, a, vis, img):
    g, g2 = a.image_size // a.patch, big_size(a) // a.patch
    pixels = to_pixels(img)
    pos = resize_pos(vis["pos"], g, g2)
    c, patches, _ = dual_stream(vis, pixels, a.vision_heads, a.act, pos=pos)
    pkg = package_big_image(model, a, pixels, g, g2)
    assert_close("big: ordinary CLS == package (resized pos)", c, pkg)
    wrong = resize_pos(vis["pos"], g, g2, align_corners=True)
    d = max_abs(dual_stream(vis, pixels, a.vision_heads, a.act, pos=wrong)[1], patches)
    assert d > MUTATION_MIN, f"big: blind to align_corners=True ({d:.2e})"
    print(f"  ok  big sees bug pos_align_corners         max change {d:.2e}")
    return {"image": "image_big.png", "image_size": g2 * a.patch, "image_embedding": jfloats(pkg),
            "vv_patch_tokens": jfloats(patches), "grid": [g2, g2]}


def tokenize(texts):
    import open_clip
    ids = open_clip.tokenize(texts)  # [n, 77], zero-padded, truncated with EOT kept last
    unpadded = [row[: int((row == EOT).nonzero()[0]) + 1].tolist() for row in ids]
    return ids, unpadded


@torch.no_grad()
def text_reference(model, a):
    ids, unpadded = tokenize(TEXTS)
    assert len(unpadded[-1]) == CONTEXT and max(map(len, unpadded[:-1])) < CONTEXT
    txt = text_weights(model.state_dict(), a.layout, a.text_layers)
    ours = text_forward(txt, ids, a.text_heads, a.act)
    pkg = package_text(model, a, ids)
    assert_close("own text tower == package text embedding", ours, pkg)
    check_mutations("text", lambda b: (text_forward(txt, ids, a.text_heads, a.act, bugs={b}),),
                    (pkg,), TEXT_MUTATIONS, a.text_heads)
    return {"texts": TEXTS, "tokens": unpadded, "text_embedding": jfloats(pkg)}


# ----------------------------------------------------------------------------- main

def main(argv=None):
    a = parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    model = build(a)
    perturb_(model, a.seed + 1)
    round_to_dtype_(model, DTYPES[a.dtype])
    save_checkpoint(model, a, out)
    print(f"[{a.layout}] {out}: checkpoint written ({a.dtype})")

    img, img_big = make_image(a.image_size, a.seed), make_image(big_size(a), a.seed + 1)
    Image.fromarray(img).save(out / "image.png")
    Image.fromarray(img_big).save(out / "image_big.png")
    reload_matches(model, a, out, to_pixels(img))

    vis = vision_weights(model.state_dict(), a.layout, a.vision_layers)
    ref = {"layout": a.layout, "config": config_json(a)}
    ref.update(image_reference(model, a, vis, img))
    ref["big"] = big_reference(model, a, vis, img_big)
    if not a.no_text:
        ref.update(text_reference(model, a))
    (out / "reference.json").write_text(json.dumps(ref, separators=(",", ":"), ensure_ascii=False) + "\n")
    print(f"[{a.layout}] {out}: reference.json written")


if __name__ == "__main__":
    main()
