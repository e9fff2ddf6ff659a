#!/usr/bin/env python3
"""New-user acceptance check of `duoclip eval --maps`: generate an unseen MVTec-layout set with
maps (tools/gen_eval_fixtures.py, another seed), evaluate it with the duoclip binary and compare
every metric with scikit-learn and the MVTec AD reference AUPRO (tools/mvtec_aupro.py).

    python tools/check_eval.py [--seed 11] [--duoclip BIN] [--tol 1e-6]

Prints a table; exits 1 when a metric is off by more than --tol, 2 when duoclip fails.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from check_parity import find_binary
from gen_eval_fixtures import generate

KEYS = ["image_auroc", "image_ap", "image_f1max", "pixel_auroc", "pixel_ap", "pixel_f1max", "aupro", "aupro_fast"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--duoclip", help="binary; default target/{release,debug}/duoclip, then PATH")
    p.add_argument("--tol", type=float, default=1e-6)
    a = p.parse_args(argv)
    binary = find_binary(a.duoclip)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "set"
        generate(root, a.seed)
        out = Path(tmp) / "out"
        cmd = [binary, "eval", "--maps", str(root / "maps/mvtec"), "--data", str(root / "datasets/mvtec"),
               "--layout", "mvtec", "--out", str(out)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 2
        got = json.loads((out / "results.json").read_text())
        want = json.loads((root / "maps/mvtec/expected.json").read_text())
    worst = 0.0
    print(f"{'class':8} {'metric':12} {'duoclip':>12} {'reference':>12} {'|diff|':>9}")
    for cls, ref in want.items():
        ours = got["mean"] if cls == "mean" else got["categories"][cls]
        for k in KEYS:
            diff = abs(ours[k] - ref[k])
            worst = max(worst, diff)
            print(f"{cls:8} {k:12} {ours[k]:12.8f} {ref[k]:12.8f} {diff:9.1e}")
    print(f"largest difference {worst:.1e} (tolerance {a.tol:.0e})")
    return 0 if worst <= a.tol else 1


if __name__ == "__main__":
    sys.exit(main())
