"""AUPRO references written from the definitions in METHOD.md §7 (not copied from any code).

- `aupro`: the MVTec AD reference evaluation. Label every ground-truth map into connected
  regions; sort all pixel scores of the class once, descending; at each distinct score,
  FPR = anomaly-free pixels at or above it / all anomaly-free pixels, PRO = mean over all
  regions of the fraction of the region at or above it. The curve is framed by (0,0) and
  (1,1); the trapezoid area up to the FPR limit (PRO interpolated linearly at exactly the
  limit) is divided by the limit.
- `aupro_fast`: AnoVL / cflow. 200 thresholds min + i·(max−min)/200 (i = 0..199) over all
  maps of the class; a pixel is positive when strictly above the threshold; keep the points
  with FPR < limit, min–max rescale their FPRs to [0, 1], trapezoid area (sklearn `auc`).

Connectivity is explicit: 8 (a 3×3 structure of ones) as the references use; 4 only to show
that it changes the result.
"""

import numpy as np
from scipy import ndimage
from sklearn.metrics import auc

STRUCTURES = {8: np.ones((3, 3), dtype=int), 4: ndimage.generate_binary_structure(2, 1)}


def regions(masks, connectivity):
    """Per-pixel region id (0 = anomaly-free, ids unique over all images) and region sizes."""
    ids = np.zeros(np.shape(masks), dtype=np.int64)
    sizes = []
    for i, mask in enumerate(masks):
        labeled, n = ndimage.label(np.asarray(mask) > 0, STRUCTURES[connectivity])
        for k in range(1, n + 1):
            region = labeled == k
            sizes.append(region.sum())
            ids[i][region] = len(sizes)
    return ids, np.array(sizes, dtype=np.float64)


def pro_curve(maps, masks, connectivity=8):
    maps = np.asarray(maps, dtype=np.float64)
    ids, sizes = regions(masks, connectivity)
    scores = maps.ravel()
    ids = ids.ravel()
    fp_change = (ids == 0).astype(np.float64)
    pro_change = np.zeros_like(scores)
    pro_change[ids > 0] = 1.0 / sizes[ids[ids > 0] - 1]
    order = np.argsort(-scores, kind="stable")
    scores, fp_change, pro_change = scores[order], fp_change[order], pro_change[order]
    fpr = np.cumsum(fp_change) / fp_change.sum()
    pro = np.cumsum(pro_change) / len(sizes)
    last_of_tie = np.append(np.diff(scores) != 0, True)
    fpr = np.concatenate(([0.0], fpr[last_of_tie], [1.0]))
    pro = np.concatenate(([0.0], np.clip(pro[last_of_tie], 0, 1), [1.0]))
    return fpr, pro


def area_up_to(x, y, limit):
    """Trapezoid area of (x, y) (x non-decreasing) over [0, limit], y interpolated at limit."""
    total = 0.0
    for i in range(1, len(x)):
        if x[i] <= limit:
            total += (x[i] - x[i - 1]) * (y[i] + y[i - 1]) / 2
        else:
            if x[i - 1] < limit:
                y_limit = y[i - 1] + (y[i] - y[i - 1]) * (limit - x[i - 1]) / (x[i] - x[i - 1])
                total += (limit - x[i - 1]) * (y[i - 1] + y_limit) / 2
            break
    return total


def aupro(maps, masks, limit=0.3, connectivity=8):
    fpr, pro = pro_curve(maps, masks, connectivity)
    return area_up_to(fpr, pro, limit) / limit


def aupro_fast(maps, masks, limit=0.3, connectivity=8, steps=200):
    maps = np.asarray(maps, dtype=np.float64)
    ids, sizes = regions(masks, connectivity)
    lo, hi = maps.min(), maps.max()
    fprs, pros = [], []
    normal = ids == 0
    for i in range(steps):
        t = lo + i * (hi - lo) / steps
        positive = maps > t
        fpr = np.logical_and(positive, normal).sum() / normal.sum()
        covered = [positive[ids == k + 1].sum() / sizes[k] for k in range(len(sizes))]
        fprs.append(fpr)
        pros.append(np.mean(covered))
    fprs, pros = np.array(fprs), np.array(pros)
    keep = fprs < limit
    kept = fprs[keep]
    kept = (kept - kept.min()) / (kept.max() - kept.min())
    return auc(kept, pros[keep])
