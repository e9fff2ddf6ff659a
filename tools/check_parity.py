#!/usr/bin/env python3
"""New-user acceptance check: run the duoclip binary on a checkpoint made by gen_fixtures.py and
compare with its reference.json.

    python tools/check_parity.py --model DIR --layout openclip|hf [--duoclip BIN]
                                 [--weights FILE] [--big-size-flag FLAG] [--tol 1e-4]
                                 [extra args passed to every duoclip call]

Runs `duoclip embed` on DIR/image.png and `duoclip text` on the reference prompts, then checks
image_embedding, vv_patch_tokens, grid, tokens and text_embedding. Prints a table; exits 1 when
any check fails, 2 when duoclip itself fails. Needs only the standard library.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="fixture directory written by gen_fixtures.py")
    p.add_argument("--layout", choices=["openclip", "hf"], required=True)
    p.add_argument("--duoclip", help="binary; default target/{release,debug}/duoclip, then PATH")
    p.add_argument("--weights", help="file/dir given to --model instead of the default "
                   "(DIR/model.safetensors for openclip, DIR for hf), e.g. DIR/vision.pt")
    p.add_argument("--big-size-flag", help="duoclip flag that sets the input size (e.g. --image-size); "
                   "when given, the big-image reference is checked too")
    p.add_argument("--tol", type=float, default=1e-4)
    a, extra = p.parse_known_args(argv)
    a.extra = extra  # anything we do not know goes to duoclip unchanged
    return a


def find_binary(given):
    if given:
        return given
    for sub in ("release", "debug"):
        cand = REPO / "target" / sub / "duoclip"
        if cand.is_file():
            return str(cand)
    found = shutil.which("duoclip")
    if not found:
        sys.exit("no duoclip binary: build it (cargo build --release) or pass --duoclip")
    return found


def head_overrides(cfg, layout):
    """open_clip checkpoints carry no head count; duoclip assumes width/64 unless told.
    Both towers are built at load, so every command gets both overrides."""
    if layout != "openclip":
        return []
    heads = []
    if cfg["vision_heads"] != cfg["vision_width"] // 64:
        heads += ["--vision-heads", str(cfg["vision_heads"])]
    if cfg.get("has_text", True) and cfg["text_heads"] != cfg["text_width"] // 64:
        heads += ["--text-heads", str(cfg["text_heads"])]
    return heads


def warn_unrecorded_act(cfg, layout):
    """open_clip files do not record QuickGELU either; only the caller can say it."""
    if layout == "openclip" and cfg["act"] != "gelu":
        print(f"note: this checkpoint uses {cfg['act']}, which an open_clip file does not record; "
              "pass duoclip's activation option as an extra argument if it does not detect it", flush=True)


def run(cmd):
    print("$ " + " ".join(_quote(c) for c in cmd), flush=True)
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stdout + res.stderr)
        sys.exit(f"duoclip exited with {res.returncode}")


def _quote(s):
    return repr(s) if (not s or any(c.isspace() for c in s)) else s


def max_abs_err(ours, ref):
    """Max |a-b| over equally shaped nested lists; None when the shapes differ."""
    if isinstance(ref, list):
        if not isinstance(ours, list) or len(ours) != len(ref):
            return None
        errs = [max_abs_err(o, r) for o, r in zip(ours, ref)]
        return None if any(e is None for e in errs) else max(errs, default=0.0)
    if isinstance(ours, list):
        return None
    return abs(float(ours) - float(ref))


class Table:
    def __init__(self, tol):
        self.tol, self.rows = tol, []

    def close(self, name, ours, ref):
        err = max_abs_err(ours, ref)
        ok = err is not None and err <= self.tol
        shown = "shape mismatch" if err is None else f"{err:.3e}"
        self.rows.append((name, shown, f"<= {self.tol:g}", ok))

    def equal(self, name, ours, ref, what=""):
        self.rows.append((name, what or ("equal" if ours == ref else f"{ours} != {ref}"), "identical", ours == ref))

    def print(self):
        w = max(len(r[0]) for r in self.rows)
        print(f"\n{'check':<{w}}  {'max abs err':<16} {'limit':<10} result")
        for name, err, limit, ok in self.rows:
            print(f"{name:<{w}}  {err:<16} {limit:<10} {'PASS' if ok else 'FAIL'}")
        return all(r[3] for r in self.rows)


def check_image(t, prefix, got, ref):
    t.close(prefix + "image_embedding", got.get("image_embedding"), ref["image_embedding"])
    t.close(prefix + "vv_patch_tokens", got.get("vv_patch_tokens"), ref["vv_patch_tokens"])
    t.equal(prefix + "grid", got.get("grid"), ref["grid"])


def check_text(t, got, ref):
    toks = got.get("tokens") or []
    bad = [i for i, r in enumerate(ref["tokens"]) if i >= len(toks) or toks[i] != r]
    t.equal("tokens", not bad, True, "all equal" if not bad else f"texts {bad} differ")
    t.close("text_embedding", got.get("text_embedding"), ref["text_embedding"])


def main(argv=None):
    a = parse_args(argv)
    d = Path(a.model)
    ref = json.loads((d / "reference.json").read_text())
    if ref["layout"] != a.layout:
        sys.exit(f"{d} holds a {ref['layout']} fixture, not {a.layout}")
    binary = find_binary(a.duoclip)
    model = a.weights or str(d / "model.safetensors" if a.layout == "openclip" else d)
    heads = head_overrides(ref["config"], a.layout)
    warn_unrecorded_act(ref["config"], a.layout)
    t = Table(a.tol)
    with tempfile.TemporaryDirectory() as tmp:
        x, tx, bx = (str(Path(tmp) / n) for n in ("x.json", "t.json", "big.json"))
        run([binary, "embed", "--model", model, "--image", str(d / ref["image"]), "--out", x, *heads, *a.extra])
        check_image(t, "", json.loads(Path(x).read_text()), ref)
        if "texts" in ref:
            run([binary, "text", "--model", model, "--out", tx, *heads, *a.extra, *ref["texts"]])
            check_text(t, json.loads(Path(tx).read_text()), ref)
        if a.big_size_flag:
            big = ref["big"]
            run([binary, "embed", "--model", model, "--image", str(d / big["image"]), "--out", bx,
                 a.big_size_flag, str(big["image_size"]), *heads, *a.extra])
            check_image(t, "big.", json.loads(Path(bx).read_text()), big)
    ok = t.print()
    print("\nPARITY OK" if ok else "\nPARITY FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
