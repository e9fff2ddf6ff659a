#!/usr/bin/env python3
"""Parity fixtures for the medical readers (src/source/): small NIfTI volumes and DICOM files
written by the PyPI references, with the values those references decode.

Writes, under tests/fixtures/medical/:
  ct_oblique.nii.gz  NIfTI-1 int16 16x12x10, scl_slope 2 / scl_inter -1024, an affine rotated
                     20 degrees about x (oblique), two background slices at each end.
  mr_nifti2.nii      NIfTI-2 float32 10x9x8 whose voxel axis j points superior (axial = j).
  reference.json     per file: slicing axis, kept slices, window, and per kept slice the
                     scaled values (nibabel get_fdata) and the windowed values in [0, 1].

The rules reproduced here are duoclip's (README "Medical images"): the axial axis by
nibabel's io_orientation, the 0.5th-99.5th percentile window (numpy.percentile), slices with
< 1 % of voxels above 5 % of the window skipped, slice rows along the higher remaining voxel
axis with its highest index at the top.

Run from the repository root:  python tools/gen_medical_fixtures.py
Needs numpy, nibabel, pydicom, pillow at the versions pinned in tools/requirements.txt.
"""
import json
import pathlib

import nibabel as nib
import numpy as np

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "medical"


def window_from(data):
    lo, hi = np.percentile(data, [0.5, 99.5])
    return float(lo), float(hi)


def windowed(values, lo, hi):
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0)


def slices(data, axis, lo, hi):
    """Kept slices: (index, scaled plane, windowed plane), planes as duoclip shows them."""
    kept = []
    for k in range(data.shape[axis]):
        plane = np.take(data, k, axis=axis)  # remaining axes (u, v) in order
        image = plane.T[::-1, :]  # rows along v, highest v at the top; columns along u
        w = windowed(image, lo, hi)
        if np.count_nonzero(w > 0.05) < 0.01 * w.size:
            continue
        kept.append((k, image, w))
    return kept


def volume_reference(img, name):
    data = img.get_fdata(dtype=np.float64)
    ornt = nib.orientations.io_orientation(img.affine)
    axis = int(np.nonzero(ornt[:, 0] == 2)[0][0])  # the voxel axis along world z
    lo, hi = window_from(data)
    kept = slices(data, axis, lo, hi)
    return {
        "axis": axis,
        "window": {"low": lo, "high": hi},
        "slices": [k for k, _, _ in kept],
        "labels": [f"{'ijk'[axis]}={k}" for k, _, _ in kept],
        "stored": [img_.ravel().tolist() for _, img_, _ in kept],
        "windowed": [w.ravel().tolist() for _, _, w in kept],
    }


def blob(shape, rng):
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    r = np.sqrt((grid**2).sum(0))
    return np.clip(1.2 - r, 0, None) + 0.05 * rng.random(shape)


def nifti_fixtures(reference):
    rng = np.random.default_rng(22)
    # CT: stored int16, HU = 2 * stored - 1024; air (-1024) in the two first and last slices.
    hu = -1024 + 1400 * blob((16, 12, 10), rng)
    hu[:, :, :2] = -1024
    hu[:, :, -2:] = -1024
    stored = np.round((hu + 1024) / 2).astype(np.int16)
    angle = np.deg2rad(20)
    affine = np.array(
        [
            [0.8, 0, 0, -6],
            [0, 0.9 * np.cos(angle), -2.5 * np.sin(angle), -5],
            [0, 0.9 * np.sin(angle), 2.5 * np.cos(angle), -12],
            [0, 0, 0, 1],
        ]
    )
    img = nib.Nifti1Image(stored, affine)
    img.header.set_data_dtype(np.int16)
    img.header.set_slope_inter(2.0, -1024.0)
    img.header.set_sform(affine, code=1)
    nib.save(img, OUT / "ct_oblique.nii.gz")
    reference["ct_oblique.nii.gz"] = volume_reference(nib.load(OUT / "ct_oblique.nii.gz"), "ct")

    # MR as NIfTI-2: float32, voxel axis j along world z (axial slices are along j).
    mr = (300 * blob((10, 9, 8), rng)).astype(np.float32)
    affine = np.array([[1.0, 0, 0, 0], [0, 0, 1.2, 0], [0, 1.5, 0, 0], [0, 0, 0, 1]])
    img = nib.Nifti2Image(mr, affine)
    img.header.set_sform(affine, code=2)
    nib.save(img, OUT / "mr_nifti2.nii")
    reference["mr_nifti2.nii"] = volume_reference(nib.load(OUT / "mr_nifti2.nii"), "mr")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    reference = {}
    nifti_fixtures(reference)
    (OUT / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")


if __name__ == "__main__":
    main()
