"""Real-world DICOM and bad input: transfer syntaxes, pixel conventions, damaged studies.

Decoding is checked against known pixels: pydicom's shipped MR/compressed test files (looked up
by name) against their uncompressed reference, and files written here from a known array
(12-bit, non-square) in every syntax an encoder is available for — pydicom's RLE, openjpeg's
JPEG 2000, Pillow's JPEG baseline, and a small JPEG lossless (process 14, SV1) encoder below.
Damaged synthetic studies check that every problem is reported naming its file, and that a bad
neighbouring slice never stops an epoch.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEG2000,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    MRImageStorage,
    RLELossless,
    generate_uid,
)

from spinectx.cli.data import check_dataset
from spinectx.data.cache import FrameCache
from spinectx.data.dataset import SpineDataset
from spinectx.data.dicom import check_frame, read_frame, read_header
from spinectx.data.errors import DataError, DicomError
from spinectx.data.records import build_index
from spinectx.data.study import index_study
from tests.conftest import TIANCHI_LANDMARKS

# --------------------------------------------------------------------------------------------
# helpers


def shipped(name: str) -> str:
    """Path of one of pydicom's test files, by name (all ship with the pinned pydicom 3.0.2)."""
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} is not installed (pydicom {pydicom.__version__})"
    return path


def known_array(rows: int = 40, cols: int = 72, bits: int = 12) -> np.ndarray:
    """A non-square image with smooth structure, noise and both extremes of ``bits``."""
    r, c = np.mgrid[0:rows, 0:cols]
    top = (1 << bits) - 1
    smooth = 0.5 * top * (1 + np.sin(r / 5.0) * np.cos(c / 9.0))
    noise = np.random.default_rng(0).integers(-40, 41, (rows, cols))
    out = np.clip(smooth + noise, 0, top).astype(np.uint16)
    out[0, 0], out[-1, -1] = 0, top
    return out


def mr_dataset(array: np.ndarray, bits_stored: int = 12, signed: bool = False, **elements) -> Dataset:
    """A minimal MR image dataset holding ``array`` uncompressed, explicit VR little endian."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "MR"
    ds.Rows, ds.Columns = array.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 8 if array.dtype.itemsize == 1 else 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = int(signed)
    ds.PixelSpacing = [0.5, 0.75]
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.ImagePositionPatient = [0, 0, 0]
    ds.PixelData = array.astype(array.dtype.newbyteorder("<")).tobytes()
    for key, value in elements.items():
        setattr(ds, key, value)
    return ds


def save(ds: Dataset, path) -> str:
    ds.save_as(path, enforce_file_format=True)
    return str(path)


def set_encapsulated(ds: Dataset, frame: bytes, syntax) -> Dataset:
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return ds


def jpeg_lossless_sv1(array: np.ndarray, precision: int) -> bytes:
    """Encode one grey image as JPEG lossless, process 14, first-order prediction (SV1), Pt 0.

    Differences to the left neighbour (first row: left; first column: above; first pixel:
    2^(P-1)) modulo 2^16, Huffman-coded by category with 17 five-bit codes (code = category)."""
    rows, cols = array.shape
    a = array.astype(np.int64)
    pred = np.empty_like(a)
    pred[0, 0] = 1 << (precision - 1)
    pred[0, 1:] = a[0, :-1]
    pred[1:, 0] = a[:-1, 0]
    pred[1:, 1:] = a[1:, :-1]
    diff = (a - pred) % 65536
    diff[diff > 32768] -= 65536
    bits = []
    for d in diff.ravel().tolist():
        ssss = abs(d).bit_length()
        bits.append(format(ssss, "05b"))
        if 0 < ssss < 16:
            bits.append(format(d if d > 0 else d + (1 << ssss) - 1, f"0{ssss}b"))
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)
    data = int(stream, 2).to_bytes(len(stream) // 8, "big")
    data = data.replace(b"\xff", b"\xff\x00")
    sof = bytes([0xFF, 0xC3, 0, 11, precision]) + rows.to_bytes(2, "big") + cols.to_bytes(2, "big") + bytes([1, 1, 0x11, 0])
    counts = [0] * 16
    counts[4] = 17  # seventeen codes of length 5
    dht = bytes([0xFF, 0xC4, 0, 36, 0x00]) + bytes(counts) + bytes(range(17))
    sos = bytes([0xFF, 0xDA, 0, 8, 1, 1, 0x00, 1, 0, 0])  # Ss = predictor 1, Se = 0, Ah/Al = 0
    return b"\xff\xd8" + sof + dht + sos + data + b"\xff\xd9"


def jpeg_baseline(array8: np.ndarray) -> bytes:
    Image = pytest.importorskip("PIL.Image")  # Pillow comes with matplotlib
    buf = io.BytesIO()
    Image.fromarray(array8).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def syntax_of(path) -> str:
    return pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID


# --------------------------------------------------------------------------------------------
# transfer syntaxes: shipped files


LOSSLESS_SHIPPED = [
    ("MR_small_RLE.dcm", RLELossless),
    ("MR_small_jpeg_ls_lossless.dcm", JPEGLSLossless),
    ("MR_small_jp2klossless.dcm", JPEG2000Lossless),
    ("MR_small_bigendian.dcm", ExplicitVRBigEndian),
    ("MR_small_expb.dcm", ExplicitVRBigEndian),
    ("MR_small_implicit.dcm", ImplicitVRLittleEndian),
    ("MR_small_padded.dcm", ExplicitVRLittleEndian),
]


@pytest.mark.parametrize("name,syntax", LOSSLESS_SHIPPED, ids=[n for n, _ in LOSSLESS_SHIPPED])
def test_shipped_lossless_mr_equals_uncompressed_reference(name, syntax):
    path = shipped(name)
    assert syntax_of(path) == syntax
    reference = read_frame(shipped("MR_small.dcm"))
    assert reference.shape == (64, 64) and reference.dtype == np.float32 and reference.max() > 1000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MR_small_padded: "excess padding to be removed"
        frame = read_frame(path)
        check_frame(path)
    np.testing.assert_array_equal(frame, reference)


def test_shipped_jpeg_lossless_equals_rle_reference():
    """JPEG lossless SV1 (colour, from GDCM) against the same picture as RLE: identical."""
    path = shipped("SC_rgb_jpeg_gdcm.dcm")
    assert syntax_of(path) == JPEGLosslessSV1
    np.testing.assert_array_equal(read_frame(path), read_frame(shipped("SC_rgb_rle.dcm")))


def test_shipped_jpeg_baseline_is_close_to_lossless_reference():
    reference = read_frame(shipped("SC_rgb_rle.dcm"))
    for name in ("SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_dcmtk_+eb+cy+np.dcm"):
        path = shipped(name)
        assert syntax_of(path) == JPEGBaseline8Bit
        frame = read_frame(path)
        assert frame.shape == reference.shape == (100, 100)
        assert np.abs(frame - reference).mean() < 2.0 and np.abs(frame - reference).max() < 12


def test_shipped_jpeg_extended_12bit_and_jpeg2000_non_square():
    """The same 1024×256 NM picture as JPEG extended (12 bits) and as lossy JPEG 2000."""
    ext, j2k = shipped("JPGExtended.dcm"), shipped("JPEG2000.dcm")
    assert syntax_of(ext) == JPEGExtended12Bit and syntax_of(j2k) == JPEG2000
    a, b = read_frame(ext), read_frame(j2k)
    assert a.shape == b.shape == (1024, 256)
    assert 0 <= a.min() and a.max() <= 4095  # 12-bit range
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9
    header = read_header(ext)
    assert (header.rows, header.cols) == (1024, 256)


def test_shipped_rescale_known_values():
    """CT_small: RescaleSlope 1, RescaleIntercept -1024; its first stored values are 175, 180."""
    frame = read_frame(shipped("CT_small.dcm"))
    assert frame.shape == (128, 128)
    np.testing.assert_array_equal(frame[0, :2], [175 - 1024, 180 - 1024])


# --------------------------------------------------------------------------------------------
# transfer syntaxes: generated from a known array


def _native(ds, tmp_path, name):
    return save(ds, tmp_path / name)


def _big_endian(ds, tmp_path, name):
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    ds.PixelData = np.frombuffer(ds.PixelData, "<u2").astype(">u2").tobytes()
    return save(ds, tmp_path / name)


def _implicit(ds, tmp_path, name):
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return save(ds, tmp_path / name)


def _rle(ds, tmp_path, name):
    ds.compress(RLELossless)
    return save(ds, tmp_path / name)


def _j2k_lossless(ds, tmp_path, name):
    ds.compress(JPEG2000Lossless)
    return save(ds, tmp_path / name)


def _jpeg_lossless(ds, tmp_path, name):
    array = np.frombuffer(ds.PixelData, "<u2").reshape(ds.Rows, ds.Columns)
    set_encapsulated(ds, jpeg_lossless_sv1(array, int(ds.BitsStored)), JPEGLosslessSV1)
    return save(ds, tmp_path / name)


GENERATED_LOSSLESS = {
    "explicit_le": (_native, ExplicitVRLittleEndian),
    "explicit_be": (_big_endian, ExplicitVRBigEndian),
    "implicit_le": (_implicit, ImplicitVRLittleEndian),
    "rle": (_rle, RLELossless),
    "jpeg2000_lossless": (_j2k_lossless, JPEG2000Lossless),
    "jpeg_lossless_sv1": (_jpeg_lossless, JPEGLosslessSV1),
}


@pytest.mark.parametrize("kind", list(GENERATED_LOSSLESS))
@pytest.mark.parametrize("bits", [12, 16])
def test_generated_lossless_non_square_decodes_exactly(kind, bits, tmp_path):
    write, syntax = GENERATED_LOSSLESS[kind]
    array = known_array(40, 72, bits)
    path = write(mr_dataset(array, bits_stored=bits), tmp_path, f"{kind}.dcm")
    assert syntax_of(path) == syntax
    frame = read_frame(path)
    assert frame.shape == (40, 72)
    np.testing.assert_array_equal(frame, array.astype(np.float32))
    check_frame(path)


def test_generated_jpeg_baseline_and_jpeg2000_lossy_are_close(tmp_path):
    array8 = (known_array(48, 80, 12) >> 4).astype(np.uint8)
    ds = set_encapsulated(mr_dataset(array8, bits_stored=8), jpeg_baseline(array8), JPEGBaseline8Bit)
    path = save(ds, tmp_path / "baseline.dcm")
    frame = read_frame(path)
    assert syntax_of(path) == JPEGBaseline8Bit and frame.shape == (48, 80)
    err = np.abs(frame - array8)
    assert err.mean() < 2.0 and err.max() < 24 and err.max() > 0  # lossy, yet close

    array = known_array(48, 80, 12)
    ds = mr_dataset(array)
    ds.compress(JPEG2000, j2k_cr=[8])
    path = save(ds, tmp_path / "j2k.dcm")
    frame = read_frame(path)
    assert syntax_of(path) == JPEG2000 and frame.shape == (48, 80)
    assert np.abs(frame - array).mean() < 40 and np.corrcoef(frame.ravel(), array.ravel())[0, 1] > 0.99


def test_monochrome1_is_inverted_for_native_and_compressed(tmp_path):
    array = known_array()
    expected = float(array.max()) + float(array.min()) - array.astype(np.float32)
    ds = mr_dataset(array, PhotometricInterpretation="MONOCHROME1")
    np.testing.assert_array_equal(read_frame(save(ds, tmp_path / "m1.dcm")), expected)
    ds.compress(RLELossless)
    np.testing.assert_array_equal(read_frame(save(ds, tmp_path / "m1_rle.dcm")), expected)


def test_rescale_slope_intercept_known_values(tmp_path):
    array = known_array()
    ds = mr_dataset(array, RescaleSlope=0.5, RescaleIntercept=-1024)
    frame = read_frame(save(ds, tmp_path / "rescaled.dcm"))
    np.testing.assert_array_equal(frame, array * np.float32(0.5) - 1024)
    assert frame[0, 0] == -1024 and frame[-1, -1] == 4095 * 0.5 - 1024
    # MONOCHROME1 and rescale together: rescaled first, then inverted
    ds = mr_dataset(array, RescaleSlope=2, RescaleIntercept=10, PhotometricInterpretation="MONOCHROME1")
    frame = read_frame(save(ds, tmp_path / "both.dcm"))
    assert frame[0, 0] == 2 * 4095 + 10 and frame[-1, -1] == 10


def test_12bit_in_16bit_words_masks_high_bits_and_sign_extends(tmp_path):
    array = known_array()
    dirty = mr_dataset(array)
    dirty.PixelData = (array | 0xF000).astype("<u2").tobytes()  # overlay bits above BitsStored
    np.testing.assert_array_equal(read_frame(save(dirty, tmp_path / "dirty.dcm")), array.astype(np.float32))

    signed = np.array([[-2048, -1, 0, 1, 2047]], dtype=np.int16)
    ds = mr_dataset(signed, signed=True)
    ds.PixelData = (signed.astype(np.uint16) & 0x0FFF).astype("<u2").tobytes()  # no sign extension stored
    np.testing.assert_array_equal(read_frame(save(ds, tmp_path / "signed12.dcm")), signed.astype(np.float32))


# --------------------------------------------------------------------------------------------
# damaged files


def test_truncated_and_pixel_less_files_fail_check_naming_the_file(tmp_path):
    truncated = tmp_path / "cut_mr.dcm"
    shutil.copy(shipped("MR_truncated.dcm"), truncated)
    assert read_header(truncated).rows == 64  # the header is fine
    with pytest.raises(DicomError, match=r"cut_mr\.dcm: .*pixel data truncated: 8130 bytes .* need 8192"):
        check_frame(truncated)
    with pytest.raises(DicomError, match=r"cut_mr\.dcm"):
        read_frame(truncated)

    no_pixels = tmp_path / "plan.dcm"
    shutil.copy(shipped("rtplan_truncated.dcm"), no_pixels)
    with pytest.raises(DicomError, match=r"plan\.dcm: .*(no pixel data|unreadable)"):
        check_frame(no_pixels)

    ds = mr_dataset(known_array())
    ds.compress(RLELossless)
    path = save(ds, tmp_path / "rle_cut.dcm")
    data = open(path, "rb").read()
    broken = tmp_path / "rle_broken.dcm"
    broken.write_bytes(data[: len(data) - 1500])
    with pytest.raises(DicomError, match=r"rle_broken\.dcm"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pydicom: end of file before the sequence delimiter
        check_frame(broken)


# --------------------------------------------------------------------------------------------
# damaged studies


@pytest.fixture()
def damaged_root(synthetic_root, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(synthetic_root, root)
    return root


def annotations(root):
    return json.loads((root / "lumbar_train_annotation.json").read_text())


def truncate(path, keep: float = 0.6):
    data = open(path, "rb").read()
    with open(path, "wb") as fh:
        fh.write(data[: int(len(data) * keep)])


def rewrite(path, **elements):
    ds = pydicom.dcmread(path)
    for key, value in elements.items():
        setattr(ds, key, value)
    ds.save_as(path)


def test_truncated_annotated_frame_skips_study_at_index_time(damaged_root, landmarks):
    before = build_index(damaged_root, ["lumbar_train"], landmarks)
    victim = before.records[3]
    truncate(victim.frame_path)
    index = build_index(damaged_root, ["lumbar_train"], landmarks)
    assert victim.study_uid in index.skipped_studies and len(index.records) == len(before.records) - 1
    msg = next(p for p in index.problems if victim.study_uid in p)
    assert msg.startswith(victim.frame_path + ":") and "annotated frame" in msg and "truncated" in msg
    # without the pixel check the header alone looks fine
    assert len(build_index(damaged_root, ["lumbar_train"], landmarks, check_pixels=False).records) == len(before.records)


def test_undecodable_compressed_annotated_frame_skips_study(damaged_root, landmarks):
    before = build_index(damaged_root, ["lumbar_train"], landmarks)
    victim = before.records[1]
    ds = pydicom.dcmread(victim.frame_path)
    ds.compress(RLELossless, generate_instance_uid=False)
    ds.save_as(victim.frame_path)
    assert len(build_index(damaged_root, ["lumbar_train"], landmarks).records) == len(before.records)  # still fine
    ds = pydicom.dcmread(victim.frame_path)
    ds.PixelData = encapsulate([b"\x00" * 64 + b"\x07garbage"])  # a frame no RLE decoder can read
    ds.save_as(victim.frame_path)
    index = build_index(damaged_root, ["lumbar_train"], landmarks)
    assert victim.study_uid in index.skipped_studies
    assert any(p.startswith(victim.frame_path + ":") and "cannot decode" in p for p in index.problems)


def test_intact_copy_of_a_truncated_annotated_frame_is_used(damaged_root, landmarks):
    before = build_index(damaged_root, ["lumbar_train"], landmarks)
    rec = before.records[2]
    frame_file = rec.frame_path
    spare = frame_file.replace(".dcm", "_copy.dcm").replace("/image", "/zz_image")  # sorts after the original
    shutil.copy(frame_file, spare)
    truncate(frame_file)
    index = build_index(damaged_root, ["lumbar_train"], landmarks)
    new = next(r for r in index.records if r.study_uid == rec.study_uid)
    assert new.frame_path == spare and new.slice_index == rec.slice_index and len(new.slice_paths) == len(rec.slice_paths)
    assert any(frame_file in p and spare in p for p in new.problems)
    np.testing.assert_array_equal(read_frame(new.frame_path), read_frame(spare))


def test_bad_neighbour_slice_falls_back_to_annotated_frame(damaged_root, landmarks, caplog):
    index = build_index(damaged_root, ["lumbar_train"], landmarks)
    rec = next(r for r in index.records if 0 < r.slice_index < len(r.slice_paths) - 1)
    before, after = rec.slice_paths[rec.slice_index - 1], rec.slice_paths[rec.slice_index + 1]
    truncate(before)
    with open(after, "wb") as fh:
        fh.write(b"not a dicom file")
    cache = FrameCache(None)
    annotated = cache.load(rec.frame_path)
    ds = SpineDataset([rec], landmarks, None, cache, num_rep=12, neighbour_p=1.0)
    with caplog.at_level(logging.WARNING, logger="spinectx.data.dataset"):
        images = [ds[i]["image"] for i in range(len(ds))]
    for image in images:
        np.testing.assert_array_equal(image, annotated)
    warnings = [r.getMessage() for r in caplog.records if r.name == "spinectx.data.dataset"]
    assert len(warnings) == 2  # once per file, not once per sample
    assert any(before in w for w in warnings) and any(after in w for w in warnings)
    assert all(rec.frame_path in w for w in warnings)


def test_neighbour_of_another_size_falls_back(damaged_root, landmarks):
    rec = build_index(damaged_root, ["lumbar_train"], landmarks).records[0]
    for step in (-1, 1):
        if 0 <= rec.slice_index + step < len(rec.slice_paths):
            path = rec.slice_paths[rec.slice_index + step]
            ds = pydicom.dcmread(path)
            ds.Rows, ds.Columns, ds.PixelData = 32, 48, np.zeros((32, 48), np.uint16).tobytes()
            ds.save_as(path)
            assert read_frame(path).shape == (32, 48)
    cache = FrameCache(None)
    data = SpineDataset([rec], landmarks, None, cache, num_rep=6, neighbour_p=1.0)
    annotated = cache.load(rec.frame_path)
    for i in range(len(data)):
        np.testing.assert_array_equal(data[i]["image"], annotated)


def test_no_sagittal_series_message(damaged_root):
    folder = damaged_root / "lumbar_train" / "study0"
    for series in index_study(folder).stacks:
        if series.plane == "sagittal":
            for h in series.slices:
                (folder / h.path.rsplit("/", 1)[1]).unlink()
    with pytest.raises(DataError, match=r"study0: no sagittal series in this study \(found planes: axial; series: axial T2"):
        index_study(folder).inference_stack()


def test_data_check_lists_every_problem(damaged_root, landmarks):
    """Damage one study per kind of problem; spinectx-data's report names each, with its file."""
    base = build_index(damaged_root, ["lumbar_train"], landmarks)
    recs = {r.study_uid: r for r in base.records}
    ann = annotations(damaged_root)
    uid = [e["studyUid"] for e in ann]
    r = [recs[u] for u in uid]

    def points(i):
        return ann[i]["data"][0]["annotation"][0]["data"]["point"]

    # 0: no sagittal series left (all sagittal files removed)
    folder0 = r[0].folder
    for series in index_study(folder0).stacks:
        if series.plane == "sagittal":
            for h in series.slices:
                os.unlink(h.path)
    # 1: annotation points at an instance that is not in the study
    ann[1]["data"][0]["instanceUid"] = "1.2.3.999"
    # 2: one coordinate outside the image; 3: all of them outside
    points(2)[0]["coord"] = [r[2].shape[1] + 50, 10]
    for p in points(3):
        p["coord"] = [-40, r[3].shape[0] + 9]
    # 4: NaN coordinate
    points(4)[1]["coord"] = [float("nan"), 5.0]
    # 5, 6: NaN and zero pixel spacing on the annotated frame
    rewrite(r[5].frame_path, PixelSpacing=[float("nan"), 0.7])
    rewrite(r[6].frame_path, PixelSpacing=[0, 0])
    # 7: annotated frame truncated; 8: another file of the study unreadable
    truncate(r[7].frame_path)
    other = next(p for p in r[8].slice_paths if p != r[8].frame_path)
    with open(other, "wb") as fh:
        fh.write(b"garbage")
    # 9: the annotated series is not sagittal (its orientation says axial)
    for p in r[9].slice_paths:
        rewrite(p, ImageOrientationPatient=[1, 0, 0, 0, 1, 0])
    (damaged_root / "lumbar_train_annotation.json").write_text(json.dumps(ann))

    report = check_dataset(str(damaged_root), ["lumbar_train"], TIANCHI_LANDMARKS)
    problems = report["problems"]

    def one(*parts):
        found = [p for p in problems if all(part in p for part in parts)]
        assert found, f"no problem mentioning {parts}:\n" + "\n".join(problems)
        return found[0]

    one(folder0, r[0].instance_uid, "not found", "no sagittal series")
    one(r[1].folder, "1.2.3.999", "not found")
    ident2 = points(2)[0]["tag"]["identification"]
    one(r[2].frame_path, ident2, "outside the", "masked")
    one(r[3].frame_path, "no usable landmark", "outside the")
    one(str(damaged_root / "lumbar_train_annotation.json"), uid[4], "L1: coord[0]: expected a finite number, got NaN")
    one(r[5].frame_path, "PixelSpacing", "not finite")
    one(r[6].frame_path, "PixelSpacing", "not positive")
    one(r[7].frame_path, "annotated frame", "truncated")
    one(other, "unreadable")
    one(r[9].frame_path, "axial series", "not a sagittal one")
    skipped = {uid[i] for i in (0, 1, 3, 5, 6, 7, 9)}
    assert set(report["skipped_studies"]) == skipped
    assert {s["study_uid"] for s in report["studies"]} == set(uid) - skipped
    assert report["totals"]["studies"] == len(uid) - len(skipped)
    assert report["totals"]["problems"] == len(problems)
