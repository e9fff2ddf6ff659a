#!/usr/bin/env python3
"""New-user acceptance check of the whole detector: `duoclip score` against the torch reference
of tools/gen_detector_fixture.py, on a checkpoint the tests never saw.

    python tools/check_detector_parity.py --model DIR [--duoclip BIN] [--tol 1e-4]
                                          [extra args passed to every duoclip call]

DIR is a directory written by tools/gen_fixtures.py (either layout; its reference.json gives
the architecture to the torch side). open_clip files record neither head counts nor the
activation, so pass them to duoclip as extra arguments exactly as a user would, e.g.
`--act quick_gelu --text-heads 4 --vision-heads 3`.

On DIR/image.png (anchors: domain "object", object "metal_nut") it computes in torch and runs
as subprocesses:

  anovl, views 1    duoclip score --preset anovl --views 1   image.png wide.png
  anovl, views 22   duoclip score --preset anovl --views 22  image.png
  product, pairs    duoclip score --preset product --pairing pairs --ref-layers 0,1
                    --lambda 0.5 --neighbourhood 1 --views 1  image.png pasted.png

pasted.png = image.png with a patch-sized RGB (255,255,40) block over patch cell (1, 2)
(column clamped to the grid); wide.png = DIR/image_big.png cropped to its top S rows (wider than
tall: left/right tiles). It compares every <stem>.npy map and scores.json score (max abs error
<= --tol), prints a table and exits 1 on a failed check, 2 when duoclip fails. duoclip runs with
DUOCLIP_CACHE set to a fresh temporary directory, so the text anchors are computed, not cached.

CPU only; pinned packages of tools/requirements.txt (torch, open_clip; transformers for HF
checkpoints). Never imports or runs code from outside this repository.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_detector_fixture as gd  # noqa: E402
from check_parity import find_binary  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="fixture directory written by gen_fixtures.py")
    p.add_argument("--duoclip", help="binary; default target/{release,debug}/duoclip, then PATH")
    p.add_argument("--tol", type=float, default=1e-4)
    a, extra = p.parse_known_args(argv)
    a.extra = extra  # anything we do not know goes to duoclip unchanged
    return a


def hint_unrecorded(m, extra):
    """open_clip files record neither head counts nor the activation: say what to pass."""
    if m.layout != "openclip":
        return
    c, need = m.config, []
    if c["act"] != "gelu" and "--act" not in extra:
        need += ["--act", c["act"]]
    for tower in ("vision", "text"):
        flag = f"--{tower}-heads"
        if c[f"{tower}_heads"] != max(1, c[f"{tower}_width"] // 64) and flag not in extra:
            need += [flag, str(c[f"{tower}_heads"])]
    if need:
        print("note: reference.json says this open_clip checkpoint needs " + " ".join(need)
              + " (not given; duoclip cannot know)", flush=True)


def run(cmd, env):
    print("$ " + " ".join(repr(c) if (not c or any(ch.isspace() for ch in c)) else c for c in cmd), flush=True)
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        sys.stderr.write(res.stdout + res.stderr)
        print(f"duoclip exited with {res.returncode}", file=sys.stderr)
        sys.exit(2)


def read_scores(out):
    doc = json.loads((out / "scores.json").read_text())
    return {Path(e["file"]).name: (np.load(out / e["map"]), float(e["score"])) for e in doc["images"]}


class Table:
    def __init__(self, tol):
        self.tol, self.rows = tol, []

    def add(self, case, file, got, want):
        (gm, gs), (wm, ws) = got, want
        if gm.shape != wm.shape or gm.dtype != np.float32:
            self.rows.append((case, file, f"{gm.dtype}{list(gm.shape)} vs {list(wm.shape)}", "-", False))
            return
        em = float(np.abs(gm.astype(np.float64) - wm).max())
        es = abs(gs - ws)
        self.rows.append((case, file, f"{em:.2e}", f"{es:.2e}", em <= self.tol and es <= self.tol,
                          f"{gs:.6f}", f"{ws:.6f}", "x".join(map(str, wm.shape)),
                          f"{float(wm.max() - wm.min()):.2e}"))

    def print(self):
        head = ("case", "image", "map max err", "score err", "ok", "score duoclip", "score torch", "map",
                "map spread")
        rows = [r[:4] + ("PASS" if r[4] else "FAIL",) + tuple(r[5:]) for r in self.rows]
        w = [max(len(str(x[i])) for x in [head] + rows if i < len(x)) for i in range(len(head))]
        for r in [head] + rows:
            print("  ".join(f"{str(x):<{w[i]}}" for i, x in enumerate(r)).rstrip())
        return all(r[4] for r in self.rows)

    @property
    def worst(self):
        ok = [r for r in self.rows if len(r) > 5]
        return (max(float(r[2]) for r in ok), max(float(r[3]) for r in ok)) if ok else (None, None)


def main(argv=None):
    a = parse_args(argv)
    torch.set_grad_enabled(False)
    m = gd.load_model(a.model)
    hint_unrecorded(m, a.extra)
    binary = find_binary(a.duoclip)
    model = str(m.dir / "model.safetensors") if m.layout == "openclip" else str(m.dir)
    common = ["--model", model, "--domain", gd.DOMAIN, "--object", gd.OBJECT]

    anchors = gd.text_anchors(m)
    img = gd.load_rgb(m.dir / "image.png")
    big = gd.load_rgb(m.dir / "image_big.png")
    t = Table(a.tol)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = dict(os.environ, DUOCLIP_CACHE=str(tmp / "cache"))
        files = {"image.png": img, "pasted.png": gd.pasted(m, img),
                 "wide.png": np.ascontiguousarray(big[:m.size])}
        for name, arr in files.items():
            Image.fromarray(arr).save(tmp / name)
        files = {k: gd.load_rgb(tmp / k) for k in files}  # exactly what duoclip decodes
        assert files["wide.png"].shape[1] > files["wide.png"].shape[0]
        p = gd.PRODUCT
        runs = [
            ("anovl v1", ["--preset", "anovl", "--views", "1"], ["image.png", "wide.png"],
             lambda ims: [gd.detect(m, anchors, [x], "anovl", 1)[0] for x in ims]),
            ("anovl v22", ["--preset", "anovl", "--views", "22"], ["image.png"],
             lambda ims: [gd.detect(m, anchors, [x], "anovl", 22)[0] for x in ims]),
            ("product pairs", ["--preset", "product", "--pairing", "pairs",
                               "--ref-layers", ",".join(map(str, p["ref_layers"])),
                               "--lambda", str(p["lambda_"]), "--neighbourhood", str(p["neighbourhood"]),
                               "--views", "1"], ["image.png", "pasted.png"],
             lambda ims: gd.detect(m, anchors, ims, "product", 1, **p)),
        ]
        for k, (case, flags, names, torch_side) in enumerate(runs):
            out = tmp / f"out{k}"
            run([binary, "score", *common, *flags, *a.extra, "--out", str(out),
                 *[str(tmp / n) for n in names]], env)
            got = read_scores(out)
            want = torch_side([files[n] for n in names])
            for n, w in zip(names, want):
                t.add(case, n, got[n], w)
    print()
    ok = t.print()
    em, es = t.worst
    print(f"\nworst: map {em:.2e}, score {es:.2e} (tolerance {a.tol:g})" if em is not None else "")
    # Random tiny text towers give nearly parallel anchors: p_abn stays near 0.5 and a map
    # spans only its "map spread"; judge the tolerance against it (tools/check_parity.py checks
    # the towers themselves more sharply).
    print("DETECTOR PARITY OK" if ok else "DETECTOR PARITY FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
