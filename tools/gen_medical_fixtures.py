#!/usr/bin/env python3
"""Parity fixtures for the medical readers (src/source/): small NIfTI volumes and DICOM files
written by the PyPI references, with the values those references decode.

Writes, under tests/fixtures/medical/:
  ct_oblique.nii.gz  NIfTI-1 int16 16x12x10, scl_slope 2 / scl_inter -1024, an affine rotated
                     20 degrees about x (oblique), two background slices at each end.
  mr_nifti2.nii      NIfTI-2 float32 10x9x8 whose voxel axis j points superior (axial = j).
  *.dcm              DICOM (pydicom): CT int16 explicit VR LE with rescale and two windows
                     and unique patient strings (the PHI test), MR uint16 implicit VR LE
                     without a window, CR MONOCHROME1 deflated, 3-frame RLE lossless, RGB,
                     JPEG baseline (Pillow's encoder, encapsulated); bad_j2k.dcm (JPEG 2000,
                     not decoded) and bad_bomb.dcm (65535 x 65535 x 1000 declared).
  enhanced_frames.dcm  three frames, the rescale in the shared functional group, a window
                     (LINEAR, LINEAR_EXACT, SIGMOID) in each frame's group (enhanced
                     multi-frame, PS3.3 C.7.6.16).
  series_mr_*.dcm    one MR series (HEAD) as four single-frame files, InstanceNumber 1-4,
                     each slice brighter than the one before: a series handed over as a
                     pile of files is scored as one set, in instance order.
  reference.json     per file: for NIfTI the slicing axis, kept slices and window; per image
                     the scaled values (nibabel get_fdata / pydicom apply_modality_lut) and
                     the windowed values in [0, 1] (pydicom apply_voi_lut, rescaled from its
                     output range; MONOCHROME1 inverted).

The rules reproduced here are duoclip's (README "Medical images"): the axial axis by
nibabel's io_orientation, the 0.5th-99.5th percentile window (numpy.percentile), slices with
< 1 % of voxels above 5 % of the window skipped, slice rows along the higher remaining voxel
axis with its highest index at the top.

Run from the repository root:  python tools/gen_medical_fixtures.py
Needs numpy, nibabel, pydicom, pillow, pylibjpeg and pylibjpeg-libjpeg (pydicom's JPEG
decoder) at the versions pinned in tools/requirements.txt.
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


# Unique strings the PHI test searches every output for (tests/medical.rs).
PHI = {
    "PatientName": "Zzphiname^Qx7731",
    "PatientID": "PHIID-55813",
    "PatientBirthDate": "19010203",
    "AccessionNumber": "ACCPHI90127",
}


def dataset(rows, cols, photometric, bits, signed, samples=1, frames=1):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # secondary capture
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[photometric, str(rows)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    for key, value in PHI.items():
        setattr(ds, key, value)
    ds.Modality = "OT"
    ds.SeriesNumber = 3
    ds.InstanceNumber = 12
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if signed else 0
    if frames > 1:
        ds.NumberOfFrames = frames
    return ds


def dicom_reference(path):
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
    frames = pixels if int(getattr(ds, "NumberOfFrames", 1)) > 1 else pixels[None]
    out = {"stored": [], "windowed": [], "window": None}
    for i, frame in enumerate(frames):
        if ds.SamplesPerPixel == 3:
            out["stored"].append(frame.astype(np.float64).ravel().tolist())
            continue
        frame_ds = frame_dataset(ds, i)
        scaled = apply_modality_lut(frame, frame_ds).astype(np.float64)
        out["stored"].append(scaled.ravel().tolist())
        if "WindowCenter" in frame_ds:
            # apply_voi_lut's output range, to bring its result to [0, 1]
            lo, hi = apply_voi_lut(np.array([-1e12, 1e12]), frame_ds, index=0)
            w = (apply_voi_lut(scaled, frame_ds, index=0) - lo) / (hi - lo)
            centre, width = frame_ds.WindowCenter, frame_ds.WindowWidth
            centre = centre[0] if frame_ds["WindowCenter"].VM > 1 else centre
            width = width[0] if frame_ds["WindowWidth"].VM > 1 else width
            out["window"] = {"centre": float(centre), "width": float(width)}
            out.setdefault("frame_windows", []).append(out["window"])
        else:
            lo, hi = window_from(scaled)
            w = windowed(scaled, lo, hi)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            w = 1.0 - w
        out["windowed"].append(w.ravel().tolist())
    if len(out.get("frame_windows", [])) < 2:
        out.pop("frame_windows", None)
    else:
        out["window"] = None  # one per frame
    labels = [f"series={ds.SeriesNumber},instance={ds.InstanceNumber},frame={i + 1}"
              for i in range(len(frames))]
    out["labels"] = labels
    return out


def frame_dataset(ds, index):
    """`ds` with frame `index`'s functional groups (enhanced multi-frame: its own, else the
    shared one) as top-level attributes, which is what pydicom's LUT functions read."""
    import copy

    flat = copy.deepcopy(ds)
    groups = [g[index] for g in [ds.get("PerFrameFunctionalGroupsSequence")] if g]
    groups += [g[0] for g in [ds.get("SharedFunctionalGroupsSequence")] if g]
    for sequence in ["PixelValueTransformationSequence", "FrameVOILUTSequence"]:
        item = next((g[sequence][0] for g in groups if sequence in g), None)
        for element in item or []:
            flat[element.tag] = element
    return flat


def enhanced_fixture(reference):
    """Three frames whose rescale is in the shared functional group and whose windows (each
    with its own VOI LUT function) are in the per-frame groups, none at the top level."""
    from pydicom.dataset import Dataset

    rng = np.random.default_rng(9)
    ds = dataset(8, 8, "MONOCHROME2", 12, False, frames=3)
    ds.Modality = "CT"
    ds.PixelData = (3000 * blob((3, 8, 8), rng)).astype(np.uint16).tobytes()
    rescale = Dataset()
    rescale.RescaleSlope, rescale.RescaleIntercept, rescale.RescaleType = 2, -1024, "HU"
    shared = Dataset()
    shared.PixelValueTransformationSequence = [rescale]
    ds.SharedFunctionalGroupsSequence = [shared]
    ds.PerFrameFunctionalGroupsSequence = []
    for centre, width, function in [(40, 400, "LINEAR"), (-600, 1500, "LINEAR_EXACT"),
                                    (300, 2000, "SIGMOID")]:
        voi = Dataset()
        voi.WindowCenter, voi.WindowWidth, voi.VOILUTFunction = centre, width, function
        item = Dataset()
        item.FrameVOILUTSequence = [voi]
        ds.PerFrameFunctionalGroupsSequence.append(item)
    ds.save_as(OUT / "enhanced_frames.dcm", enforce_file_format=True)
    reference["enhanced_frames.dcm"] = dicom_reference(OUT / "enhanced_frames.dcm")


def dicom_fixtures(reference):
    import io

    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import (
        DeflatedExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        JPEGBaseline8Bit,
        RLELossless,
    )

    rng = np.random.default_rng(7)
    files = {}

    # CT: int16 stored, HU = stored - 1024, two windows (abdomen, lung).
    ds = dataset(16, 16, "MONOCHROME2", 16, True)
    stored = (1024 + 900 * blob((16, 16), rng) - 200).astype(np.int16)
    ds.Modality = "CT"
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = [40, -600], [400, 1500]
    ds.PixelData = stored.tobytes()
    files["ct_explicit.dcm"] = ds

    # MR: uint16 12-bit, implicit VR, no window of its own.
    ds = dataset(12, 14, "MONOCHROME2", 12, False)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.Modality = "MR"
    ds.PixelData = (4095 * blob((12, 14), rng) / 1.3).astype(np.uint16).tobytes()
    files["mr_implicit.dcm"] = ds

    # CR: MONOCHROME1 (bright = low), uint16, deflated, one window, slope 2.
    ds = dataset(10, 12, "MONOCHROME1", 14, False)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.Modality = "CR"
    ds.RescaleSlope, ds.RescaleIntercept = 2, 0
    ds.WindowCenter, ds.WindowWidth = 6000, 9000
    ds.PixelData = (6000 * blob((10, 12), rng)).astype(np.uint16).tobytes()
    files["cr_mono1_deflated.dcm"] = ds

    # Three frames, 8-bit, RLE lossless, no window.
    ds = dataset(9, 11, "MONOCHROME2", 8, False, frames=3)
    frames = (200 * blob((3, 9, 11), rng)).astype(np.uint8)
    ds.PixelData = frames.tobytes()
    ds.compress(RLELossless, encoding_plugin="pydicom")
    files["multiframe_rle.dcm"] = ds

    # RGB, 8-bit, interleaved.
    ds = dataset(8, 10, "RGB", 8, False, samples=3)
    ds.PixelData = (255 * rng.random((8, 10, 3))).astype(np.uint8).tobytes()
    files["rgb_explicit.dcm"] = ds

    # JPEG baseline, 8-bit grey, with a window.
    ds = dataset(16, 16, "MONOCHROME2", 8, False)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    grey = (250 * blob((16, 16), rng)).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="JPEG", quality=95)
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.WindowCenter, ds.WindowWidth = 128, 256
    files["jpeg_baseline.dcm"] = ds

    for name, ds in files.items():
        ds.save_as(OUT / name, enforce_file_format=True)
        reference[name] = dicom_reference(OUT / name)

    # Bad files, no reference: a transfer syntax duoclip does not decode (JPEG 2000), and a
    # 65535 x 65535 x 1000 header on a file of a few hundred bytes.
    from pydicom.uid import JPEG2000Lossless

    ds = dataset(16, 16, "MONOCHROME2", 8, False)
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(60)])
    ds["PixelData"].VR = "OB"
    ds.save_as(OUT / "bad_j2k.dcm", enforce_file_format=True)
    ds = dataset(65535, 65535, "MONOCHROME2", 16, False, frames=1000)
    ds.PixelData = bytes(64)
    ds.save_as(OUT / "bad_bomb.dcm", enforce_file_format=True)


def series_fixtures(reference):
    from pydicom.uid import generate_uid

    rng = np.random.default_rng(5)
    uid = generate_uid(entropy_srcs=["duoclip series fixture"])
    names = []
    for instance in range(1, 5):
        ds = dataset(8, 8, "MONOCHROME2", 12, False)
        ds.Modality = "MR"
        ds.BodyPartExamined = "HEAD"
        ds.SeriesInstanceUID = uid
        ds.InstanceNumber = instance
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[uid, str(instance)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PixelData = (400 * instance + 1000 * blob((8, 8), rng)).astype(np.uint16).tobytes()
        name = f"series_mr_{instance}.dcm"
        ds.save_as(OUT / name, enforce_file_format=True)
        names.append(name)
    # The UID only for the test to search the outputs for: it must reach none.
    reference["series"] = {"uid": uid, "files": names}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    reference = {"phi": PHI}
    nifti_fixtures(reference)
    dicom_fixtures(reference)
    series_fixtures(reference)
    enhanced_fixture(reference)
    (OUT / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")


if __name__ == "__main__":
    main()
