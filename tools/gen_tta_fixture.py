#!/usr/bin/env python3
"""Reference for AnoVL's test-time adaptation (METHOD.md §6, faithful) used by tests/tta.rs.

Written from METHOD.md §6 with torch.optim.AdamW; writes tests/fixtures/tta/reference.json.

Inputs: the openclip_tiny V-V patch tokens X (tests/fixtures/openclip_tiny/reference.json,
`vv_patch_tokens`, [16, 32]), random unit text anchors t_n, t_a and a random unit prompt matrix
E [2P, 32] (P = 6). Per case it stores the initial adapter W, b (U(±1/√D), torch.nn.Linear's
default) and the Gaussian noise N(0, σ²) added to X, so the Rust side replays the same numbers
instead of drawing its own.

Per image and flavour (tanh: a(x) = tanh(W·x̂ + b)·E, W [2P, D]; linear: a(x) = W·x̂ + b,
W [D, D]):  x' = ½x + ½a(x);  p = softmax(normalize(x')·[t_n, t_a]ᵀ);
loss = mean H(p⁰) + ½·mean(−log p¹_abn) + ½·mean(−log p⁰_nor)  (p⁰ on X, p¹ on X + noise);
AdamW(lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.01), 5 full-batch steps.

`strong`: the plain cases again with lr 0.05 and weight decay 0.5, where AdamW's decoupled
decay and epsilon change the outputs by more than float32 noise.

Stored per case: `losses` (the loss each step back-propagates, i.e. before that step's update)
and `p_abn` (the final adapter on clean X). `keep_optimizer`: two consecutive images (the second
is X with its rows reversed, fresh W, b and noise) with the AdamW state (moments and step
count) carried from the first to the second, as AnoVL does across the images of a class.

`synth`: the training half of the synthesized-anomaly TTA (METHOD.md §6, product; the choices
where it is silent are src/detect/tta/synth.rs's): a linear adapter learns per-patch labels of a
synthesized image's tokens under loss = focal(γ = 2, no α) + soft dice (smoothing 1) on p_abn,
  focal = mean(−(1 − p_t)^γ · log p_t), p_t = p_abn where the label is 1, else p_nor,
  dice  = 1 − (2·Σ p_abn·y + 1) / (Σ p_abn + Σ y + 1),
then is applied to the clean tokens. The synthesized tokens are X with a random direction added
to the labelled rows; its own generator, so the other cases keep their numbers.

Every output must be able to see a list of plausible porting bugs (MUTATIONS, SYNTH_MUTATIONS):
each has to move some stored number by more than 10x the Rust tolerance, or the script fails.

CPU only; run with the pinned versions in tools/requirements.txt. Never run by CI.
"""

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/tta/reference.json"
TOKENS = ROOT / "tests/fixtures/openclip_tiny/reference.json"

SEED = 20240815
PROMPTS_PER_SIDE = 6
STEPS = 5
LR = 1e-3
BETAS = (0.9, 0.999)
EPS = 1e-8
WEIGHT_DECAY = 0.01
NOISE_STD = 0.055
# The same adaptation with a large step and decay, where AdamW's weight decay and epsilon move
# the outputs visibly (at lr 1e-3 their effect is below float32 noise).
STRONG = {"lr": 0.05, "wd": 0.5}
# tests/tta.rs compares with this max abs error; every mutation must exceed 10x it.
RUST_TOL = 1e-5


def unit(t):
    return t / t.norm(dim=-1, keepdim=True)


class Adapter(torch.nn.Module):
    """x' = ½x + ½a(x) with a(x) = tanh(W·x̂ + b)·E (tanh) or W·x̂ + b (linear)."""

    def __init__(self, kind, w, b, prompts, bugs=()):
        super().__init__()
        self.kind, self.prompts, self.bugs = kind, prompts, bugs
        self.weight = torch.nn.Parameter(w.clone())
        self.bias = torch.nn.Parameter(b.clone())

    def forward(self, x):
        x_unit = x if "unnormalized_input" in self.bugs else F.normalize(x, dim=-1)
        h = F.linear(x_unit, self.weight, self.bias)
        a = torch.tanh(h) @ self.prompts if self.kind == "tanh" else h
        return a if "no_residual" in self.bugs else 0.5 * x + 0.5 * a


def probabilities(adapter, x, states):
    return F.softmax(F.normalize(adapter(x), dim=-1) @ states.T, dim=-1)


def loss_fn(adapter, x, noisy, states, bugs):
    p0 = probabilities(adapter, x, states)
    p1 = probabilities(adapter, noisy, states)
    entropy = -(p0 * p0.log()).sum(-1).mean()
    if "swapped_targets" in bugs:
        return entropy + 0.5 * (-p1[:, 0].log()).mean() + 0.5 * (-p0[:, 1].log()).mean()
    return entropy + 0.5 * (-p1[:, 1].log()).mean() + 0.5 * (-p0[:, 0].log()).mean()


def descend(opt, objective, bugs):
    """STEPS full-batch steps of `opt` on `objective()`; the loss each step back-propagates."""
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = objective()
        loss.backward()
        if "no_steps" not in bugs:
            opt.step()
        losses.append(loss.item())
    return losses


def run_image(kind, x, case, states, prompts, optim_state=None, bugs=(), lr=LR, wd=WEIGHT_DECAY):
    """One image's TTA; returns (losses, p_abn, optimizer state dict)."""
    adapter = Adapter(kind, case["w"], case["b"], prompts, bugs)
    opt = torch.optim.AdamW(
        adapter.parameters(),
        lr=lr,
        betas=BETAS,
        eps=1e-5 if "burn_default_eps" in bugs else EPS,
        weight_decay=0.0 if "no_weight_decay" in bugs else wd,
    )
    if optim_state is not None and "reset_optimizer" not in bugs:
        opt.load_state_dict(optim_state)
    noisy = x if "no_noise" in bugs else x + case["noise"]
    losses = descend(opt, lambda: loss_fn(adapter, x, noisy, states, bugs), bugs)
    with torch.no_grad():
        p_abn = probabilities(adapter, x, states)[:, 1]
    return losses, p_abn, opt.state_dict()


def init_case(gen, rows, dim, n):
    """W, b ~ U(±1/√D) like torch.nn.Linear; noise ~ N(0, σ²)."""
    bound = 1.0 / math.sqrt(dim)
    w = (torch.rand(rows, dim, generator=gen) * 2 - 1) * bound
    b = (torch.rand(rows, generator=gen) * 2 - 1) * bound
    noise = torch.randn(n, dim, generator=gen) * NOISE_STD
    return {"w": w, "b": b, "noise": noise}


def all_outputs(x, cases, states, prompts, bugs=()):
    """Every stored number, flattened, for the mutation check."""
    out = []
    for kind in ("tanh", "linear"):
        losses, p_abn, _ = run_image(kind, x, cases[kind], states, prompts, bugs=bugs)
        out += losses + p_abn.tolist()
    first, second = cases["keep"]
    losses1, p1, st = run_image("tanh", x, first, states, prompts, bugs=bugs)
    losses2, p2, _ = run_image("tanh", x.flip(0), second, states, prompts, st, bugs=bugs)
    out += losses1 + p1.tolist() + losses2 + p2.tolist()
    for kind in ("tanh", "linear"):
        losses, p_abn, _ = run_image(kind, x, cases[kind], states, prompts, bugs=bugs, **STRONG)
        out += losses + p_abn.tolist()
    return np.array(out, dtype=np.float64)


def focal_dice(adapter, x, labels, states, bugs):
    log_p = torch.log_softmax(F.normalize(adapter(x), dim=-1) @ states.T, dim=-1)
    if "swapped_labels" in bugs:
        labels = 1 - labels
    p_abn = log_p[:, 1].exp()
    log_pt = torch.where(labels > 0.5, log_p[:, 1], log_p[:, 0])
    gamma = 1.0 if "focal_gamma_1" in bugs else 2.0
    focal = -((1 - log_pt.exp()) ** gamma * log_pt).mean()
    smooth = 0.0 if "dice_no_smoothing" in bugs else 1.0
    dice = 1 - (2 * (p_abn * labels).sum() + smooth) / (p_abn.sum() + labels.sum() + smooth)
    return focal if "no_dice" in bugs else focal + dice


def run_synth(x, case, states, bugs=(), lr=LR, wd=WEIGHT_DECAY):
    """The synthesized-anomaly adapter's training on case's tokens and labels; applied to x."""
    adapter = Adapter("linear", case["w"], case["b"], None, bugs)
    opt = torch.optim.AdamW(adapter.parameters(), lr=lr, betas=BETAS, eps=EPS, weight_decay=wd)
    losses = descend(opt, lambda: focal_dice(adapter, case["synth"], case["labels"], states, bugs), bugs)
    with torch.no_grad():
        p_abn = probabilities(adapter, x, states)[:, 1]
    return losses, p_abn


def synth_case(x, gen):
    """Labels of a 2×2 block of the 4×4 grid; those rows of X pushed along one direction."""
    n, dim = x.shape
    labels = torch.zeros(n)
    labels[[5, 6, 9, 10]] = 1.0
    push = unit(torch.randn(dim, generator=gen)) * x.norm(dim=-1).mean()
    case = init_case(gen, dim, dim, n)
    del case["noise"]
    case["synth"] = x + labels[:, None] * push
    case["labels"] = labels
    return case


def synth_outputs(x, case, states, bugs=()):
    out = []
    for kw in ({}, STRONG):
        losses, p_abn = run_synth(x, case, states, bugs, **kw)
        out += losses + p_abn.tolist()
    return np.array(out, dtype=np.float64)


SYNTH_MUTATIONS = ["no_steps", "focal_gamma_1", "no_dice", "dice_no_smoothing", "swapped_labels"]

MUTATIONS = [
    "no_steps",
    "no_weight_decay",
    "burn_default_eps",
    "no_noise",
    "swapped_targets",
    "no_residual",
    "unnormalized_input",
    "reset_optimizer",
]


def jfloats(t):
    """Nested lists of float32 values written with their shortest round-trip repr."""
    arr = np.asarray(t.detach().cpu().float() if torch.is_tensor(t) else t, dtype=np.float32)
    if arr.ndim == 1:
        return [float(str(v)) for v in arr]
    return [jfloats(r) for r in arr]


def case_json(case, losses=None, p_abn=None):
    out = {"w": jfloats(case["w"]), "b": jfloats(case["b"]), "noise": jfloats(case["noise"])}
    if losses is not None:
        out["losses"] = jfloats(losses)
        out["p_abn"] = jfloats(p_abn)
    return out


def main():
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    x = torch.tensor(json.loads(TOKENS.read_text())["vv_patch_tokens"], dtype=torch.float32)
    n, dim = x.shape
    states = unit(torch.randn(2, dim, generator=gen))
    prompts = unit(torch.randn(2 * PROMPTS_PER_SIDE, dim, generator=gen))
    cases = {
        "tanh": init_case(gen, 2 * PROMPTS_PER_SIDE, dim, n),
        "linear": init_case(gen, dim, dim, n),
        "keep": [init_case(gen, 2 * PROMPTS_PER_SIDE, dim, n) for _ in range(2)],
    }
    # Round the stored inputs to what JSON will hold, so the reference is computed on them.
    for case in [cases["tanh"], cases["linear"], *cases["keep"]]:
        for k in case:
            case[k] = torch.tensor(np.array(jfloats(case[k]), dtype=np.float32))
    states = torch.tensor(np.array(jfloats(states), dtype=np.float32))
    prompts = torch.tensor(np.array(jfloats(prompts), dtype=np.float32))

    synth = synth_case(x, torch.Generator().manual_seed(SEED + 1))
    for k in synth:
        synth[k] = torch.tensor(np.array(jfloats(synth[k]), dtype=np.float32))
    good_synth = synth_outputs(x, synth, states)
    for bug in SYNTH_MUTATIONS:
        moved = np.abs(synth_outputs(x, synth, states, (bug,)) - good_synth).max()
        print(f"synth mutation {bug:20s} moves an output by {moved:.3e}")
        assert moved > 10 * RUST_TOL, f"the synth case cannot see `{bug}`"

    good = all_outputs(x, cases, states, prompts)
    for bug in MUTATIONS:
        moved = np.abs(all_outputs(x, cases, states, prompts, (bug,)) - good).max()
        print(f"mutation {bug:20s} moves an output by {moved:.3e}")
        assert moved > 10 * RUST_TOL, f"the fixture cannot see `{bug}`"

    ref = {
        "about": "tools/gen_tta_fixture.py: AnoVL TTA (METHOD.md §6) in torch, torch.optim.AdamW",
        "config": {
            "steps": STEPS,
            "lr": LR,
            "betas": list(BETAS),
            "eps": EPS,
            "weight_decay": WEIGHT_DECAY,
            "noise_std": NOISE_STD,
            "prompts_per_side": PROMPTS_PER_SIDE,
            "seed": SEED,
            "torch": torch.__version__,
        },
        "tokens_from": "openclip_tiny/reference.json vv_patch_tokens",
        "tokens": jfloats(x),
        "states": jfloats(states),
        "prompts": jfloats(prompts),
    }
    for kind in ("tanh", "linear"):
        losses, p_abn, _ = run_image(kind, x, cases[kind], states, prompts)
        ref[kind] = case_json(cases[kind], losses, p_abn)
        print(f"{kind}: losses {np.round(losses, 6)}")
    ref["strong"] = {"lr": STRONG["lr"], "weight_decay": STRONG["wd"], "init": "as the plain cases"}
    for kind in ("tanh", "linear"):
        losses, p_abn, _ = run_image(kind, x, cases[kind], states, prompts, **STRONG)
        ref["strong"][kind] = {"losses": jfloats(losses), "p_abn": jfloats(p_abn)}
        print(f"strong {kind}: losses {np.round(losses, 6)}")
    first, second = cases["keep"]
    losses1, p1, st = run_image("tanh", x, first, states, prompts)
    losses2, p2, _ = run_image("tanh", x.flip(0), second, states, prompts, st)
    ref["keep_optimizer"] = {
        "adapter": "tanh",
        "second_tokens": "first tokens, rows reversed",
        "images": [case_json(first, losses1, p1), case_json(second, losses2, p2)],
    }
    losses, p_abn = run_synth(x, synth, states)
    strong_losses, strong_p = run_synth(x, synth, states, **STRONG)
    ref["synth"] = {
        "adapter": "linear",
        "loss": "focal (gamma 2) + soft dice (smoothing 1) on p_abn",
        "labels": jfloats(synth["labels"]),
        "synth_tokens": jfloats(synth["synth"]),
        "w": jfloats(synth["w"]),
        "b": jfloats(synth["b"]),
        "losses": jfloats(losses),
        "p_abn": jfloats(p_abn),
        "strong": {"losses": jfloats(strong_losses), "p_abn": jfloats(strong_p)},
    }
    print(f"synth: losses {np.round(losses, 6)}; strong {np.round(strong_losses, 6)}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(ref, separators=(",", ":"), ensure_ascii=False) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
