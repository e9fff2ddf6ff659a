#!/usr/bin/env python3
"""Reference fixture for duoclip's decisions (src/decide/, tests/decide.rs).

Writes tests/fixtures/decide/reference.json, computed independently with numpy and scipy:

  calibrations  lists of float32 good-image scores and map maxima (some with ties), a
                false-alarm rate alpha each, and the split conformal thresholds of README
                "Decisions": k = ceil((N+1)(1-alpha)) in float64, the min(k, N)-th smallest
                score / maximum (np.sort), the bound 1 - min(k, N)/(N+1), the median and MAD
                (np.median, float64) and the band max(1.4826 MAD, 1e-6); plus test scores with
                the verdict those thresholds give
  maps          random smooth float32 maps with a threshold, labelled with
                scipy.ndimage.label(map > t, structure=np.ones((3, 3))) (8-connected), each
                region's box (find_objects), pixel count, maximum and float64 mean, ordered by
                maximum descending (ties: label order)

Inputs are float32 values written in their shortest round-trip form, so Rust reads back the
exact float32 the reference used; the float64 results are written in full. Run from the repository root with the pinned versions of
tools/requirements.txt:
    python tools/gen_decide_fixture.py
Never run by CI.
"""

import json
import math
from pathlib import Path

import numpy as np
from scipy import ndimage

OUT = Path("tests/fixtures/decide/reference.json")


def f32_list(values):
    """float32 values in their shortest round-trip form ("0.3", not 0.30000001192092896)."""
    return [f32(v) for v in np.asarray(values, dtype=np.float32)]


def f32(value):
    return float(str(np.float32(value)))


def conformal(values, alpha):
    n = len(values)
    k = min(math.ceil((n + 1) * (1.0 - alpha)), n)
    return f32(np.sort(np.asarray(values, dtype=np.float32))[k - 1]), 1.0 - k / (n + 1)


def calibration(rng, n, alpha, ties=False):
    scores = rng.beta(2, 5, n).astype(np.float32)
    peaks = (scores + rng.uniform(0.0, 0.4, n)).astype(np.float32)
    if ties:
        scores = np.round(scores, 1).astype(np.float32)
    image, bound = conformal(scores, alpha)
    pixel, _ = conformal(peaks, alpha)
    s = scores.astype(np.float64)
    median = float(np.median(s))
    mad = float(np.median(np.abs(s - median)))
    band = max(1.4826 * mad, 1e-6)
    tests = f32_list(np.concatenate([rng.uniform(0, 1, 6), [image, image + band * 0.5]]))
    verdicts = [
        "anomalous" if t - image > band else "ok" if t - image < -band else "uncertain"
        for t in np.asarray(tests, dtype=np.float32).astype(np.float64)
    ]
    return {
        "scores": f32_list(scores),
        "peaks": f32_list(peaks),
        "false_alarm": alpha,
        "image": image,
        "pixel": pixel,
        "bound": bound,
        "band": band,
        "good": {
            "count": n,
            "min": f32(scores.min()),
            "median": median,
            "max": f32(scores.max()),
            "mad": mad,
        },
        "tests": tests,
        "verdicts": verdicts,
    }


def map_case(rng, height, width, sigma, quantile):
    noise = rng.normal(0, 1, (height, width))
    values = ndimage.gaussian_filter(noise, sigma).astype(np.float32)
    threshold = np.float32(np.quantile(values, quantile))
    labels, count = ndimage.label(values > threshold, structure=np.ones((3, 3)))
    regions = []
    for i, box in enumerate(ndimage.find_objects(labels), start=1):
        inside = values[labels == i]
        regions.append(
            {
                "x": box[1].start,
                "y": box[0].start,
                "width": box[1].stop - box[1].start,
                "height": box[0].stop - box[0].start,
                "area": int(inside.size),
                "share": inside.size / values.size,
                "peak": f32(inside.max()),
                "mean": float(inside.astype(np.float64).mean()),
            }
        )
    order = np.argsort([-r["peak"] for r in regions], kind="stable")
    assert count == len(regions)
    return {
        "width": width,
        "height": height,
        "threshold": f32(threshold),
        "map": f32_list(values.ravel()),
        "regions": [regions[i] for i in order],
    }


def main():
    rng = np.random.default_rng(26)
    calibrations = [
        calibration(rng, 1, 0.05),
        calibration(rng, 3, 0.05),
        calibration(rng, 8, 0.2),
        calibration(rng, 19, 0.05),
        calibration(rng, 20, 0.1),
        calibration(rng, 50, 0.05, ties=True),
        calibration(rng, 137, 0.01),
        calibration(rng, 200, 0.05),
    ]
    maps = [
        map_case(rng, 16, 16, 1.0, 0.8),
        map_case(rng, 16, 24, 1.5, 0.9),
        map_case(rng, 20, 20, 0.7, 0.7),
    ]
    # A labelling with scipy's default 4-connectivity must miscount some map, else the
    # fixture could not tell it from the 8-connected one.
    assert any(
        ndimage.label(np.array(m["map"], np.float32).reshape(m["height"], m["width"]) > m["threshold"])[1]
        != len(m["regions"])
        for m in maps
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"calibrations": calibrations, "maps": maps}) + "\n")
    print(f"wrote {OUT}: {len(calibrations)} calibrations, {len(maps)} maps")


if __name__ == "__main__":
    main()
