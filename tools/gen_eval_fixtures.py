"""Fixtures of the evaluation harness (tests/fixtures/eval/), all from a fixed seed.

1. metrics.json + metrics/<case>/*.npy: generated maps, masks, image scores and labels with ties, an all-normal
   class, single-pixel regions and diagonal-touching regions, plus the expected values from
   scikit-learn (roc_auc_score, average_precision_score, max F1 over precision_recall_curve)
   and from tools/mvtec_aupro.py (MVTec AD reference AUPRO and the fast variant).
2. datasets/: tiny synthetic sets in every layout duoclip eval reads (mvtec, visa folders,
   visa split_csv, bmad with `label/` and `anomaly_mask/` mask folders and an image-label-only
   set, folder with and without masks).
3. maps/: precomputed maps for `eval --maps` on datasets/mvtec, with expected.json from the
   same references (one folder has a scores.json; the others score by the map's maximum;
   one class's maps are at twice the mask resolution, so masks are upsampled nearest).

Run: python tools/gen_eval_fixtures.py [--out DIR] [--seed N]   (defaults: the committed set)
"""

import argparse
import csv
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from mvtec_aupro import aupro, aupro_fast

OUT = Path(__file__).resolve().parent.parent / "tests/fixtures/eval"
SIZE = 24
rng = np.random.default_rng(5)   # reseeded by main()


def f1max(labels, scores):
    p, r, _ = precision_recall_curve(labels, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    return float(f1.max())


def binary(labels, scores):
    labels = np.asarray(labels).ravel().astype(bool)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.all() or not labels.any():
        return {"auroc": None, "ap": None if not labels.any() else 1.0,
                "f1max": None if not labels.any() else f1max(labels, scores)}
    return {"auroc": float(roc_auc_score(labels, scores)),
            "ap": float(average_precision_score(labels, scores)),
            "f1max": f1max(labels, scores)}


def all_metrics(maps, masks, scores, labels, limits=(0.3,)):
    img = binary(labels, scores)
    pix = binary(np.asarray(masks) > 0, maps)
    out = {"image_auroc": img["auroc"], "image_ap": img["ap"], "image_f1max": img["f1max"],
           "pixel_auroc": pix["auroc"], "pixel_ap": pix["ap"], "pixel_f1max": pix["f1max"]}
    anomalous = (np.asarray(masks) > 0).any()
    for limit in limits:
        suffix = "" if limit == 0.3 else f"@{limit}"
        out["aupro" + suffix] = float(aupro(maps, masks, limit)) if anomalous else None
        out["aupro_fast" + suffix] = float(aupro_fast(maps, masks, limit)) if anomalous else None
    return out


def f32(a):
    return np.asarray(a, dtype=np.float32)


def regions_mask(kind):
    """Masks with single pixels and regions that touch only at corners."""
    m = np.zeros((SIZE, SIZE), dtype=np.uint8)
    if kind == "diagonal":
        for i in range(6):
            m[4 + i, 4 + i] = 1          # a diagonal line: one region 8-connected, six 4-connected
        m[15:18, 15:18] = 1
        m[18, 18] = 1                    # touches the block only at its corner
    elif kind == "single":
        m[2, 20] = 1
        m[20, 3] = 1
        m[10:13, 10:14] = 1
    elif kind == "blob":
        yy, xx = np.mgrid[:SIZE, :SIZE]
        m[(yy - 12) ** 2 + (xx - 9) ** 2 <= 16] = 1
        m[3, 3] = 1
    return m


def anomaly_map(mask, ties):
    """A map that finds the regions imperfectly; `ties` quantizes it to 1/8 steps."""
    base = rng.random((SIZE, SIZE)) * 0.6
    blur = base.copy()
    blur[1:-1, 1:-1] = sum(base[1 + dy:SIZE - 1 + dy, 1 + dx:SIZE - 1 + dx]
                           for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9
    m = blur + 0.35 * mask * rng.random((SIZE, SIZE)) + 0.1 * mask
    if ties:
        m = np.round(m * 8) / 8
    return f32(m)


def metric_cases():
    cases = []
    for name, ties in (("ties", True), ("continuous", False)):
        kinds = ["diagonal", "single", "blob", None, None, "diagonal", None, "single"]
        masks = [regions_mask(k) if k else np.zeros((SIZE, SIZE), np.uint8) for k in kinds]
        maps = [anomaly_map(m, ties) for m in masks]
        labels = [bool(m.any()) for m in masks]
        # Image scores that rank imperfectly; `ties` puts several on one value across classes.
        scores = [float(mp.mean()) + 0.3 * rng.random() for mp in maps]
        if ties:
            scores = [round(s * 4) / 4 for s in scores]
        expected = all_metrics(maps, masks, scores, labels, limits=(0.3, 0.1, 1.0))
        expected["aupro_4connected"] = float(aupro(maps, masks, 0.3, connectivity=4))
        expected["aupro_fast_4connected"] = float(aupro_fast(maps, masks, 0.3, connectivity=4))
        assert abs(expected["aupro"] - expected["aupro_4connected"]) > 1e-3, "8 vs 4 must differ"
        cases.append(case(name, maps, masks, scores, labels, expected))
    masks = [np.zeros((SIZE, SIZE), np.uint8)] * 3
    maps = [anomaly_map(m, True) for m in masks]
    labels = [False] * 3
    scores = [float(mp.max()) for mp in maps]
    cases.append(case("all_normal", maps, masks, scores, labels, all_metrics(maps, masks, scores, labels)))
    return cases


def case(name, maps, masks, scores, labels, expected):
    """Arrays go to metrics/<name>/*.npy (compact); the expectations to metrics.json."""
    folder = OUT / "metrics" / name
    folder.mkdir(parents=True)
    np.save(folder / "maps.npy", f32(maps))
    np.save(folder / "masks.npy", (np.asarray(masks) > 0).astype(np.uint8))
    np.save(folder / "scores.npy", f32(scores))
    np.save(folder / "labels.npy", np.asarray(labels, dtype=np.uint8))
    return {"name": name, "expected": expected}


def picture(seed, anomalous_mask=None):
    """A smooth 24×24 RGB picture (compresses small); defects darken the masked pixels."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    img = np.stack([(xx * r.integers(3, 9) + yy * r.integers(1, 5)) % 256,
                    (yy * r.integers(4, 10)) % 256,
                    np.full((SIZE, SIZE), r.integers(60, 200))], -1).astype(np.uint8)
    if anomalous_mask is not None:
        img[anomalous_mask > 0] = [20, 20, 20]
    return Image.fromarray(img)


def save_mask(mask, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((mask > 0).astype(np.uint8) * 255).save(path)


def save_image(img, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


KINDS = ["diagonal", "single", "blob"]


def mvtec(root):
    """Two classes; returns {class: [(defect, stem, mask or None)]} for the maps."""
    listing = {}
    for c, (cls, defects) in enumerate((("widget", {"crack": 2, "hole": 1}), ("tile", {"cut": 2}))):
        items = []
        for i in range(3):
            save_image(picture(100 * c + i), root / cls / "test/good" / f"{i:03d}.png")
            items.append(("good", f"{i:03d}", None))
        for d, (defect, n) in enumerate(defects.items()):
            for i in range(n):
                mask = regions_mask(KINDS[(i + d) % 3])
                save_image(picture(100 * c + 10 * d + i + 50, mask), root / cls / "test" / defect / f"{i:03d}.png")
                save_mask(mask, root / cls / "ground_truth" / defect / f"{i:03d}_mask.png")
                items.append((defect, f"{i:03d}", mask))
        save_image(picture(100 * c + 90), root / cls / "train/good/000.png")
        listing[cls] = items
    return listing


def visa(root, csv_root):
    for i in range(2):
        save_image(picture(300 + i), root / "candle/test/good" / f"{i:03d}.JPG")
        mask = regions_mask(KINDS[i])
        save_image(picture(310 + i, mask), root / "candle/test/bad" / f"{i:03d}.JPG")
        save_mask(mask, root / "candle/ground_truth/bad" / f"{i:03d}.png")
    rows = [("object", "split", "label", "image", "mask")]
    for cls in ("candle", "macaroni1"):
        for i in range(3):
            rel = f"{cls}/Data/Images/Normal/{i:04d}.JPG"
            save_image(picture(400 + i), csv_root / rel)
            rows.append((cls, "train" if i == 0 else "test", "normal", rel, ""))
        for i in range(2):
            mask = regions_mask(KINDS[i + 1])
            rel = f"{cls}/Data/Images/Anomaly/{i:03d}.JPG"
            mrel = f"{cls}/Data/Masks/Anomaly/{i:03d}.png"
            save_image(picture(410 + i, mask), csv_root / rel)
            m = mask.astype(np.uint8) * (i + 1)                 # VisA masks hold class indices
            (csv_root / mrel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(m).save(csv_root / mrel)
            rows.append((cls, "test", "anomaly", rel, mrel))
    (csv_root / "split_csv").mkdir(parents=True, exist_ok=True)
    with open(csv_root / "split_csv/1cls.csv", "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


def bmad(root):
    for s, (name, mask_dir) in enumerate((("Brain", "label"), ("Liver", "anomaly_mask"))):
        for split in ("test", "valid"):
            for i in range(2):
                save_image(picture(500 + 10 * s + i), root / name / split / "good/img" / f"{i}.png")
                mask = regions_mask(KINDS[(i + s) % 3])
                save_image(picture(505 + 10 * s + i, mask), root / name / split / "Ungood/img" / f"{i}.png")
                save_mask(mask, root / name / split / "Ungood" / mask_dir / f"{i}.png")
    for i in range(2):
        save_image(picture(600 + i), root / "Chest/test/good" / f"{i}.png")
        save_image(picture(610 + i, regions_mask("blob")), root / "Chest/test/Ungood" / f"{i}.png")


def folder(root):
    for i in range(2):
        save_image(picture(700 + i), root / "parts/good" / f"g{i}.png")
        mask = regions_mask(KINDS[i])
        save_image(picture(710 + i, mask), root / "parts/scratch" / f"s{i}.png")
        save_mask(mask, root / "parts/masks/scratch" / f"s{i}.png")
        save_image(picture(720 + i), root / "plain/good" / f"g{i}.png")
        save_image(picture(730 + i, regions_mask("blob")), root / "plain/bad" / f"b{i}.png")


def write_npy(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, f32(array))


def maps_for_mvtec(listing, root):
    """widget: maps at mask resolution, scores.json in test/crack; tile: maps at 2× size."""
    expected = {}
    for cls, items in listing.items():
        upscale = 2 if cls == "tile" else 1
        maps, masks, scores, labels = [], [], [], []
        for defect, stem, mask in items:
            mask = np.zeros((SIZE, SIZE), np.uint8) if mask is None else mask
            amap = anomaly_map(mask, ties=True)
            big = np.kron(amap, np.ones((upscale, upscale), np.float32))
            if upscale == 2:     # break the 2×2 blocks so the upsampled mask really matters
                big = f32(big + 0.01 * rng.integers(0, 3, big.shape))
            write_npy(root / cls / "test" / defect / f"{stem}.npy", big)
            maps.append(big)
            masks.append(np.kron(mask, np.ones((upscale, upscale), np.uint8)))
            scores.append(float(big.max()))
            labels.append(defect != "good")
        if cls == "widget":
            crack = [k for k, it in enumerate(items) if it[0] == "crack"]
            given = {items[k][1]: 0.5 for k in crack}        # ties with each other
            doc = {"images": [{"file": f"/elsewhere/{s}.png", "score": v, "map": f"{s}.npy"}
                              for s, v in given.items()]}
            (root / cls / "test/crack/scores.json").write_text(json.dumps(doc))
            for k in crack:
                scores[k] = 0.5
        expected[cls] = all_metrics(maps, masks, scores, labels)
    keys = next(iter(expected.values())).keys()
    expected["mean"] = {k: float(np.mean([expected[c][k] for c in listing])) for k in keys}
    (root / "expected.json").write_text(json.dumps(expected, indent=1))


def generate(out=OUT, seed=5):
    global OUT, rng
    OUT, rng = Path(out), np.random.default_rng(seed)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    (OUT / "metrics.json").write_text(json.dumps(metric_cases()))
    listing = mvtec(OUT / "datasets/mvtec")
    visa(OUT / "datasets/visa", OUT / "datasets/visa_csv")
    bmad(OUT / "datasets/bmad")
    folder(OUT / "datasets/folder")
    maps_for_mvtec(listing, OUT / "maps/mvtec")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({total / 1024:.0f} KB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=OUT, help="folder to write (replaced); default: the committed fixtures")
    parser.add_argument("--seed", type=int, default=5, help="5 makes the committed fixtures")
    args = parser.parse_args()
    generate(args.out, args.seed)
