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
  jpeg_lossless_sv1.dcm  DX, 12 bits stored in 16, JPEG lossless process 14 SV1
                     (1.2.840.10008.1.2.4.70, predictor 1), with a window.
  jpeg_lossless_p14.dcm  CT, signed 16-bit, two frames, JPEG lossless process 14
                     (1.2.840.10008.1.2.4.57) with predictor 7, no window.
  jpeg_extended_12bit.dcm  12-bit JPEG extended (1.2.840.10008.1.2.4.51, SOF1): refused,
                     no reference (dicom-rs's pure-Rust JPEG decoder reads 8-bit DCT only).
                     The three JPEG streams are libjpeg-turbo's (imagecodecs.jpeg8_encode);
                     their references are decoded by pylibjpeg-libjpeg, not by libjpeg-turbo.
  voi_lut.dcm        CT, signed, rescaled, with a VOI LUT Sequence item (descriptor 2000
                     entries, first mapped -1000 HU, 12 bits; PS3.3 C.11.2.1.1) and a window:
                     the LUT is the file's first VOI (pydicom's prefer_lut), the window second.
  reference.json     per file: for NIfTI the slicing axis, kept slices and window; per image
                     the scaled values (nibabel get_fdata / pydicom apply_modality_lut) and
                     the windowed values in [0, 1] (pydicom apply_voi_lut, rescaled from its
                     output range: a window's ends, a VOI LUT's 2**bits - 1; MONOCHROME1
                     inverted).

The rules reproduced here are duoclip's (README "Medical images"): the axial axis by
nibabel's io_orientation, the 0.5th-99.5th percentile window (numpy.percentile), slices with
< 1 % of voxels above 5 % of the window skipped, slice rows along the higher remaining voxel
axis with its highest index at the top.

Run from the repository root:  python tools/gen_medical_fixtures.py
Needs numpy, nibabel, pydicom, pillow, pylibjpeg and pylibjpeg-libjpeg (pydicom's JPEG
decoder), and imagecodecs (the lossless and 12-bit JPEG encoder) at the versions pinned in
tools/requirements.txt.
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
    if ds.file_meta.TransferSyntaxUID.startswith("1.2.840.10008.1.2.4."):
        # libjpeg (pylibjpeg-libjpeg), a decoder independent of both dicom-rs and the encoder
        ds.pixel_array_options(decoding_plugin="pylibjpeg")
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
        if "VOILUTSequence" in frame_ds:
            # apply_voi_lut prefers the LUT; its entries span 0 .. 2**bits - 1
            entries, first, bits = frame_ds.VOILUTSequence[0].LUTDescriptor
            w = apply_voi_lut(scaled, frame_ds, index=0) / (2**bits - 1)
            out["window"] = {"lut": {"entries": entries or 65536, "first_mapped": first,
                                     "bits": bits}}
            if "WindowCenter" in frame_ds:
                # the file's second VOI, its window (`--window file:2`)
                lo, hi = apply_voi_lut(np.array([-1e12, 1e12]), frame_ds, prefer_lut=False)
                second = apply_voi_lut(scaled, frame_ds, prefer_lut=False)
                out.setdefault("windowed_second", []).append(
                    ((second - lo) / (hi - lo)).ravel().tolist())
        elif "WindowCenter" in frame_ds:
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


def encapsulated(ds, frames):
    """`ds` holding `frames` (compressed streams) as encapsulated pixel data."""
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"


def save_with_references(files, reference):
    for name, ds in files.items():
        ds.save_as(OUT / name, enforce_file_format=True)
        reference[name] = dicom_reference(OUT / name)


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
    from pydicom.uid import (
        DeflatedExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        ImplicitVRLittleEndian,
        generate_uid,
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

    # The same CT in explicit VR big endian (retired in 2004, still met in old archives).
    ds = dataset(16, 16, "MONOCHROME2", 16, True)
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    ds.SOPInstanceUID = generate_uid(entropy_srcs=["big endian"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = "CT"
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = [40, -600], [400, 1500]
    ds.PixelData = stored.astype(">i2").tobytes()
    files["ct_big_endian.dcm"] = ds

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
    ds.compress(RLELossless, encoding_plugin="pydicom", generate_instance_uid=False)
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
    encapsulated(ds, [buffer.getvalue()])
    ds.WindowCenter, ds.WindowWidth = 128, 256
    files["jpeg_baseline.dcm"] = ds

    save_with_references(files, reference)

    # Bad files, no reference: a transfer syntax duoclip does not decode (JPEG 2000), and a
    # 65535 x 65535 x 1000 header on a file of a few hundred bytes.
    from pydicom.uid import JPEG2000Lossless

    ds = dataset(16, 16, "MONOCHROME2", 8, False)
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    encapsulated(ds, [b"\xff\x4f\xff\x51" + bytes(60)])
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


def jpeg_fixtures(reference):
    """JPEG lossless (processes 14 and 14 SV1) and 12-bit extended, encoded by libjpeg-turbo
    through imagecodecs: pydicom writes no JPEG itself."""
    import imagecodecs
    from pydicom.uid import JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1

    rng = np.random.default_rng(14)

    # DX: 12 bits stored, first-order prediction (the usual X-ray syntax), a window.
    ds = dataset(24, 20, "MONOCHROME2", 12, False)
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    ds.Modality = "DX"
    stored = (4095 * blob((24, 20), rng) / 1.3).astype(np.uint16)
    frame = imagecodecs.jpeg8_encode(stored, lossless=True, predictor=1, bitspersample=12)
    encapsulated(ds, [frame])
    ds.WindowCenter, ds.WindowWidth = 1500, 3000
    files = {"jpeg_lossless_sv1.dcm": ds}

    # CT: signed 16-bit (the bit patterns are JPEG's unsigned 16-bit samples), two frames,
    # predictor 7 ((Ra + Rb) / 2), no window.
    ds = dataset(16, 18, "MONOCHROME2", 16, True, frames=2)
    ds.file_meta.TransferSyntaxUID = JPEGLossless
    ds.Modality = "CT"
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    hu = np.stack([-1024 + 2400 * blob((16, 18), rng) for _ in range(2)]).astype(np.int16)
    frames = [imagecodecs.jpeg8_encode(f.view(np.uint16), lossless=True, predictor=7,
                                       bitspersample=16) for f in hu]
    encapsulated(ds, frames)
    files["jpeg_lossless_p14.dcm"] = ds

    save_with_references(files, reference)

    # 12-bit DCT (SOF1): refused, so no reference.
    ds = dataset(16, 16, "MONOCHROME2", 12, False)
    ds.file_meta.TransferSyntaxUID = JPEGExtended12Bit
    stored = (4095 * blob((16, 16), rng) / 1.3).astype(np.uint16)
    encapsulated(ds, [imagecodecs.jpeg8_encode(stored, level=95, bitspersample=12)])
    ds.save_as(OUT / "jpeg_extended_12bit.dcm", enforce_file_format=True)


def voi_lut_fixture(reference):
    """A signed CT whose first VOI is a LUT (PS3.3 C.11.2.1.1): 2000 entries from -1000 HU,
    12-bit output on a gamma curve, values outside the LUT's input range on both sides; and
    a window as its second VOI."""
    from pydicom.dataset import Dataset

    rng = np.random.default_rng(30)
    ds = dataset(12, 16, "MONOCHROME2", 16, True)
    ds.Modality = "CT"
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    stored = (1024 - 1200 + 2600 * blob((12, 16), rng)).astype(np.int16)
    ds.PixelData = stored.tobytes()
    lut = Dataset()
    lut.LUTDescriptor = [2000, -1000, 12]
    curve = np.round(4095 * (np.arange(2000) / 1999) ** 0.6).astype("<u2")
    lut.LUTData = curve.tobytes()
    lut["LUTData"].VR = "OW"
    lut.LUTExplanation = "gamma 0.6"
    ds.VOILUTSequence = [lut]
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.save_as(OUT / "voi_lut.dcm", enforce_file_format=True)
    reference["voi_lut.dcm"] = dicom_reference(OUT / "voi_lut.dcm")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    reference = {"phi": PHI}
    nifti_fixtures(reference)
    dicom_fixtures(reference)
    series_fixtures(reference)
    enhanced_fixture(reference)
    jpeg_fixtures(reference)
    voi_lut_fixture(reference)
    (OUT / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")


if __name__ == "__main__":
    main()
