"""Issue 11: real-world inputs that broke the suite, each built here from generated studies.

Multi-stack series, Enhanced (multi-frame) MR, files without preamble / file meta, impossible
pixel headers, duplicated studies, a split unpacked one folder too deep, a seriesUid that is not
the series of its instance. Each test checks the whole kind: the study is used when it is usable
(and with the right pixels), and otherwise skipped at index time with a message naming the file.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import EnhancedMRImageStorage, ExplicitVRLittleEndian, RLELossless, generate_uid

from spinectx.cli.data import check_dataset
from spinectx.data.dicom import FrameRef, check_frame, read_frame, read_headers, sniff_transfer_syntax
from spinectx.data.errors import DataError, DicomError
from spinectx.data.folds import split_studies
from spinectx.data.records import build_index
from spinectx.data.study import index_study, slice_position
from spinectx.inference import find_targets, target_of_file
from tests.conftest import TIANCHI_LANDMARKS

# --------------------------------------------------------------------------------------------
# helpers


@pytest.fixture()
def root(synthetic_root, tmp_path):
    out = tmp_path / "ds"
    shutil.copytree(synthetic_root, out)
    return out


def load_ann(root: Path) -> list:
    return json.loads((root / "lumbar_train_annotation.json").read_text())


def save_ann(root: Path, entries: list, split: str = "lumbar_train") -> None:
    (root / f"{split}_annotation.json").write_text(json.dumps(entries))


def study_of(root: Path, entry: dict):
    """(folder, StudyIndex, annotated stack, slice index) of one annotation entry."""
    for folder in sorted((root / "lumbar_train").iterdir()):
        idx = index_study(folder)
        if idx.study_uid == entry["studyUid"]:
            stack, i = idx.locate(entry["data"][0]["instanceUid"])
            return folder, idx, stack, i
    raise AssertionError("study not found")


def record_of(index, uid):
    return next((r for r in index.records if r.study_uid == uid), None)


def problems_with(index, *parts):
    return [p for p in index.problems + [q for r in index.records for q in r.problems] if all(s in p for s in parts)]


# --------------------------------------------------------------------------------------------
# 1. one series, several stacks


def test_axial_images_inside_the_annotated_series_form_their_own_stack(root, landmarks):
    entries = load_ann(root)
    entry = entries[0]
    folder, idx, stack, i = study_of(root, entry)
    axial = next(s for s in idx.stacks if s.plane == "axial")
    added = []
    for k, h in enumerate(axial.slices[:3]):  # a localizer saved under the T2 sagittal series UID
        ds = pydicom.dcmread(h.path)
        ds.SeriesInstanceUID = stack.series_uid
        ds.SeriesDescription = stack.description
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = 100 + k
        added.append(folder / f"zz_localizer{k}.dcm")
        ds.save_as(added[-1])

    index = build_index(root, ["lumbar_train"], landmarks)
    rec = record_of(index, entry["studyUid"])
    assert rec is not None, index.problems  # the study is no longer rejected
    assert rec.slice_paths == [h.path for h in stack.slices] and rec.slice_index == i  # neighbours: own stack only
    assert "sagittal" in rec.stack
    split = problems_with(index, stack.series_uid, "2 stacks")
    assert split and "axial" in split[0] and "sagittal" in split[0]  # the index report lists the split

    new = index_study(folder)
    parts = new.series[stack.series_uid]
    assert sorted(s.plane for s in parts) == ["axial", "sagittal"]
    for s in parts:  # slice order decided per stack
        positions = [slice_position(h) for h in s.slices]
        assert positions == sorted(positions)
    target = find_targets(folder)[0][0]
    assert Path(target.path) not in added and target.series_uid == stack.series_uid
    assert new.inference_stack().plane == "sagittal" and new.inference_stack().weighting == "T2"


def test_a_stack_of_another_matrix_in_one_series_is_split(root, landmarks):
    entry = load_ann(root)[1]
    folder, idx, stack, i = study_of(root, entry)
    h = stack.slices[0 if i else -1]
    ds = pydicom.dcmread(h.path)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    small = ds.pixel_array[::2, ::2].copy()
    ds.Rows, ds.Columns = small.shape
    ds.PixelSpacing = [2 * float(v) for v in ds.PixelSpacing]
    ds.PixelData = small.tobytes()
    ds.save_as(folder / "zz_lowres.dcm")
    rec = record_of(build_index(root, ["lumbar_train"], landmarks), entry["studyUid"])
    assert len(rec.slices) == len(stack.slices) and str(folder / "zz_lowres.dcm") not in rec.slice_paths


# --------------------------------------------------------------------------------------------
# 2. Enhanced (multi-frame) MR


def to_enhanced(stack, out: Path, order: list[int]) -> Dataset:
    """Write the slices of ``stack`` (in slice order) as one Enhanced MR file whose frame f holds
    slice ``order[f]``; geometry only in the functional groups."""
    first = pydicom.dcmread(stack.slices[0].path)
    ds = Dataset()
    for elem in first:
        if elem.keyword not in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceLocation",
                                "InstanceNumber", "EchoTime", "RepetitionTime", "SliceThickness", "PixelData",
                                "RescaleSlope", "RescaleIntercept"):
            ds.add(copy.deepcopy(elem))
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = EnhancedMRImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.InstanceNumber = 1
    ds.NumberOfFrames = len(order)
    shared = Dataset()
    measures, plane, echo, timing, rescale = Dataset(), Dataset(), Dataset(), Dataset(), Dataset()
    measures.PixelSpacing = first.PixelSpacing
    measures.SliceThickness = first.SliceThickness
    plane.ImageOrientationPatient = first.ImageOrientationPatient
    echo.EffectiveEchoTime = float(first.EchoTime)
    timing.RepetitionTime = float(first.RepetitionTime)
    rescale.RescaleSlope, rescale.RescaleIntercept = 2, -5
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([plane])
    shared.MREchoSequence = Sequence([echo])
    shared.MRTimingAndRelatedParametersSequence = Sequence([timing])
    shared.PixelValueTransformationSequence = Sequence([rescale])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame, pixels = [], []
    for j in order:
        src = pydicom.dcmread(stack.slices[j].path)
        item, position = Dataset(), Dataset()
        position.ImagePositionPatient = src.ImagePositionPatient
        item.PlanePositionSequence = Sequence([position])
        per_frame.append(item)
        pixels.append(src.pixel_array)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = np.stack(pixels).astype("<u2").tobytes()
    ds.save_as(out, enforce_file_format=True)
    return ds


def test_enhanced_mr_series_frames_become_slices(root, landmarks):
    entries = load_ann(root)
    entry = entries[2]
    folder, idx, stack, i = study_of(root, entry)
    n = len(stack.slices)
    order = list(np.random.default_rng(0).permutation(n))  # frames stored out of spatial order
    originals = [read_frame(h.path) for h in stack.slices]
    enhanced = to_enhanced(stack, folder / "enhanced.dcm", order)
    for h in stack.slices:
        Path(h.path).unlink()
    annotated_frame = order.index(i)
    entry["data"][0]["instanceUid"] = enhanced.SOPInstanceUID
    for point in entry["data"][0]["annotation"][0]["data"]["point"]:
        point["zIndex"] = annotated_frame
    save_ann(root, entries)

    headers = read_headers(folder / "enhanced.dcm")
    assert [h.frame for h in headers] == list(range(n)) and headers[0].pixel_spacing == stack.slices[0].pixel_spacing
    index = build_index(root, ["lumbar_train"], landmarks)
    rec = record_of(index, entry["studyUid"])
    assert rec is not None, index.problems
    assert rec.frame_ref == FrameRef(str(folder / "enhanced.dcm"), annotated_frame)
    assert rec.slice_index == i and [ref.frame for ref in rec.slices] == [order.index(j) for j in range(n)]
    np.testing.assert_array_equal(read_frame(rec.frame_ref), originals[i] * 2 - 5)  # rescale from the groups
    assert rec.pixel_spacing == stack.slices[0].pixel_spacing

    target = find_targets(folder)[0][0]  # the T2 sagittal stack, not the T1 series
    assert target.path == str(folder / "enhanced.dcm") and target.frame == order.index(n // 2)
    single, notes = target_of_file(folder / "enhanced.dcm")  # one file: its middle slice, never frame 0 silently
    assert single.frame == order.index(n // 2) and single.z_index == single.frame and "multi-frame" in notes[0]
    with pytest.raises(DicomError, match="multi-frame file of .* no frame was chosen"):
        read_frame(folder / "enhanced.dcm")


def stack_as_enhanced(root: Path, entries: list, k: int):
    """Replace the annotated stack of entry ``k`` by one Enhanced MR file (frames in slice order)
    and point the annotation at it → (folder, stack, annotated slice index, point list)."""
    entry = entries[k]
    folder, idx, stack, i = study_of(root, entry)
    enhanced = to_enhanced(stack, folder / "enhanced.dcm", list(range(len(stack.slices))))
    for h in stack.slices:
        Path(h.path).unlink()
    entry["data"][0]["instanceUid"] = enhanced.SOPInstanceUID
    return folder, stack, i, entry["data"][0]["annotation"][0]["data"]["point"]


def test_enhanced_mr_without_a_frame_number_is_reported_not_read_as_frame_0(root, landmarks):
    entries = load_ann(root)
    folder, stack, i, points = stack_as_enhanced(root, entries, 2)
    for point in points:
        point.pop("zIndex", None)
    save_ann(root, entries)
    index = build_index(root, ["lumbar_train"], landmarks)
    assert record_of(index, entries[2]["studyUid"]) is None
    assert problems_with(index, str(folder / "enhanced.dcm"), "multi-frame", "cannot tell the annotated frame")


# --------------------------------------------------------------------------------------------
# 3. files without preamble, "DICM" or file meta


def strip_meta(path: Path, implicit: bool = True, little: bool = True) -> None:
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    raw = Dataset({tag: elem for tag, elem in ds.items()})
    raw.PixelData = arr.astype("<u2" if little else ">u2").tobytes()
    raw.save_as(path, implicit_vr=implicit, little_endian=little, enforce_file_format=False)
    assert open(path, "rb").read(132)[128:132] != b"DICM"


def test_files_without_preamble_or_file_meta_are_read(root, landmarks):
    entry = load_ann(root)[3]
    folder, idx, stack, i = study_of(root, entry)
    before = read_frame(stack.slices[i].path)
    for k, path in enumerate(sorted(folder.iterdir())):  # the whole study, in three encodings
        strip_meta(path, implicit=k % 3 == 0, little=k % 3 != 2)
    rec = record_of(build_index(root, ["lumbar_train"], landmarks), entry["studyUid"])
    assert rec is not None and rec.slice_index == i
    np.testing.assert_array_equal(read_frame(rec.frame_ref), before)


def test_compressed_file_without_file_meta_is_sniffed(tmp_path):
    from tests.test_dicom_robust import known_array, mr_dataset

    array = known_array()
    ds = mr_dataset(array)
    ds.compress(RLELossless, encoding_plugin="pydicom")
    raw = Dataset({tag: elem for tag, elem in ds.items()})
    raw.save_as(tmp_path / "rle.dcm", implicit_vr=False, little_endian=True, enforce_file_format=False)
    np.testing.assert_array_equal(read_frame(tmp_path / "rle.dcm"), array.astype(np.float32))
    assert sniff_transfer_syntax(b"\xff\xd8\xff\xe0\x00\x04ab\xff\xc3\x00\x02") == "1.2.840.10008.1.2.4.70"
    assert sniff_transfer_syntax(b"\xff\x4f\xff\x51rest") == "1.2.840.10008.1.2.4.91"
    assert sniff_transfer_syntax(b"not a codestream") is None


def test_unreadable_files_keep_their_own_reason(tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "a.dcm").write_bytes(b"\x00" * 40)
    (folder / "b.dcm").write_text("plain text, not DICOM\n" * 30)
    with pytest.raises(DataError) as err:
        index_study(folder)
    message = str(err.value)
    assert "2 unreadable" in message and "a.dcm: unreadable DICOM file" in message and "b.dcm: unreadable" in message


# --------------------------------------------------------------------------------------------
# 4. pixel headers that make decoding impossible


IMPOSSIBLE = {
    "bits stored above allocated": (dict(BitsAllocated=8, BitsStored=12, HighBit=11), "BitsStored"),
    "packed 12-bit": (dict(BitsAllocated=12, BitsStored=12, HighBit=11), "packed 12-bit"),
    "high bit outside": (dict(HighBit=16), "HighBit"),
    "three samples for grey": (dict(SamplesPerPixel=3), "SamplesPerPixel"),
    "pixel representation 2": (dict(PixelRepresentation=2), "PixelRepresentation"),
    "8 bits, 16-bit data": (dict(BitsAllocated=8, BitsStored=8, HighBit=7), "does not describe the data"),
    "zero rows": (dict(Rows=0), "invalid image size"),
}


@pytest.mark.parametrize("case", sorted(IMPOSSIBLE))
def test_impossible_pixel_header_is_refused_at_index_time(root, landmarks, case):
    elements, expected = IMPOSSIBLE[case]
    entries = load_ann(root)
    folder, idx, stack, i = study_of(root, entries[4])
    path = stack.slices[i].path
    ds = pydicom.dcmread(path)
    if case == "packed 12-bit":  # really packed: 3 bytes per 2 pixels
        v = ds.pixel_array.astype(np.uint16).reshape(-1, 2)
        packed = np.stack([v[:, 0] & 0xFF, (v[:, 0] >> 8) | ((v[:, 1] & 0xF) << 4), v[:, 1] >> 4], 1)
        ds.PixelData = packed.astype(np.uint8).tobytes()
    for key, value in elements.items():
        setattr(ds, key, value)
    ds.save_as(path)
    with pytest.raises(DicomError, match=expected):
        check_frame(path)
    report = check_dataset(str(root), ["lumbar_train"], TIANCHI_LANDMARKS)  # a report: no exception
    assert entries[4]["studyUid"] in report["skipped_studies"]
    assert any(p.startswith(path + ":") and expected in p for p in report["problems"])


def test_no_impossible_header_reaches_the_training_loader(root, landmarks):
    from spinectx.data.cache import FrameCache
    from spinectx.data.dataset import SpineDataset

    entries = load_ann(root)
    for entry, (elements, _) in zip(entries[:len(IMPOSSIBLE)], IMPOSSIBLE.values()):
        _, _, stack, i = study_of(root, entry)
        ds = pydicom.dcmread(stack.slices[i].path)
        for key, value in elements.items():
            setattr(ds, key, value)
        ds.save_as(stack.slices[i].path)
    index = build_index(root, ["lumbar_train"], landmarks)
    assert len(index.records) == len(entries) - len(IMPOSSIBLE)
    data = SpineDataset(index.records, landmarks, None, FrameCache(None))
    assert all(np.isfinite(data[j]["image"]).all() for j in range(len(data)))  # every sample decodes


# --------------------------------------------------------------------------------------------
# 6. the same study twice


def test_duplicate_study_folder_and_split_follow_one_rule(root, landmarks, tmp_path):
    entries = load_ann(root)
    folder, *_ = study_of(root, entries[0])
    shutil.copytree(folder, root / "lumbar_train" / "zz_copy_of_study")
    other = root / "lumbar_extra"  # the same study in a second split
    other.mkdir()
    shutil.copytree(folder, other / "again")
    save_ann(root, [entries[0]], "lumbar_extra")
    index = build_index(root, ["lumbar_train", "lumbar_extra"], landmarks)
    uids = [r.study_uid for r in index.records]
    assert len(uids) == len(set(uids)) == len(entries)
    assert problems_with(index, "zz_copy_of_study", str(folder), "the folder with the most images counts")
    assert problems_with(index, "lumbar_extra_annotation.json", "lumbar_train_annotation.json", entries[0]["studyUid"])
    assert record_of(index, entries[0]["studyUid"]).folder == str(folder)
    train, val = split_studies(uids, 4, 0)
    assert len(train) + len(val) == len(set(train) | set(val)) == len(entries)

    targets, notes = find_targets(root / "lumbar_train")  # prediction: one target per study
    assert len(targets) == len({t.study_uid for t in targets}) == len(entries)
    assert any("zz_copy_of_study" in p and "ignored" in p for p in notes)


# --------------------------------------------------------------------------------------------
# 8. a split unpacked one folder too deep


def test_split_one_folder_too_deep_is_named_and_training_stops_first(root, landmarks):
    from spinectx.data.datamodule import SpineDataModule

    split = root / "lumbar_train"
    deeper = split / "train"
    deeper.mkdir()
    for study in sorted(p for p in split.iterdir() if p.is_dir() and p != deeper):
        study.rename(deeper / study.name)
    report = check_dataset(str(root), ["lumbar_train"], TIANCHI_LANDMARKS)
    assert report["totals"]["studies"] == 0
    first = report["problems"][0]
    assert "one level deeper" in first and str(deeper) in first
    dm = SpineDataModule(str(root), ["lumbar_train"], TIANCHI_LANDMARKS, image_size=64, num_workers=0)
    with pytest.raises(DataError, match="one level deeper") as err:
        dm.setup("fit")
    assert "0 usable studies cannot fill 4 folds" in str(err.value) and str(deeper) in str(err.value)


# --------------------------------------------------------------------------------------------
# 11. a seriesUid that is not the series of its instance


def test_series_uid_of_another_series_is_reported_and_the_instance_used(root, landmarks):
    entries = load_ann(root)
    folder, idx, stack, i = study_of(root, entries[5])
    t1 = next(s for s in idx.stacks if s.weighting == "T1")
    entries[5]["data"][0]["seriesUid"] = t1.series_uid
    save_ann(root, entries)
    index = build_index(root, ["lumbar_train"], landmarks)
    rec = record_of(index, entries[5]["studyUid"])
    assert rec.series_uid == stack.series_uid and rec.slice_index == i
    assert problems_with(index, t1.series_uid, "broken export")


# --------------------------------------------------------------------------------------------
# all at once: the report exits 0 and names every problem; training and prediction go on


def test_one_dataset_with_every_fault_reports_trains_and_predicts(root, landmarks, tmp_path):
    import os
    import subprocess
    import sys

    from spinectx.cli.train import train
    from tests.test_train import make_cfg

    entries = load_ann(root)
    folder0, idx0, stack0, _ = study_of(root, entries[0])  # a localizer inside the annotated series
    ds = pydicom.dcmread(next(s for s in idx0.stacks if s.plane == "axial").slices[0].path)
    ds.SeriesInstanceUID = stack0.series_uid
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(folder0 / "zz_localizer.dcm")
    folder1, *_ = study_of(root, entries[1])  # no preamble anywhere in one study
    for path in sorted(folder1.iterdir()):
        strip_meta(path)
    _, _, stack4, i4 = study_of(root, entries[4])  # an impossible pixel header on an annotated frame
    bad = pydicom.dcmread(stack4.slices[i4].path)
    bad.BitsAllocated = 8
    bad.save_as(stack4.slices[i4].path)
    shutil.copytree(folder0, root / "lumbar_train" / "zz_copy")  # the same study twice

    out = tmp_path / "check.json"
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([str(Path(sys.executable).parent / "spinectx-data"), f"root={root}", f"out={out}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    problems = report["problems"]
    assert report["totals"]["studies"] == len(entries) - 1 and report["skipped_studies"] == [entries[4]["studyUid"]]
    assert any("holds 2 stacks" in p and stack0.series_uid in p for p in problems)
    assert any(p.startswith(stack4.slices[i4].path + ":") and "BitsStored" in p for p in problems)
    assert any("zz_copy" in p and "most images counts" in p for p in problems)
    assert "problem:" in proc.stdout

    cfg = make_cfg(tmp_path, root, ["+trainer.fast_dev_run=2", "evaluate=false", "data.splits=[lumbar_train]",
                                    "data.batch_size=2", "data.augment.neighbour_p=1.0"])
    train(cfg)  # every batch decodes: the bad study was left out at index time
    targets, notes = find_targets(root / "lumbar_train")
    assert len(targets) == len(entries) and all(plane_is_sagittal(t) for t in targets)


def plane_is_sagittal(target) -> bool:
    from spinectx.data.study import plane_of

    return plane_of(read_headers(target.path)[target.frame or 0].orientation) == "sagittal"


# --------------------------------------------------------------------------------------------
# follow-ups found by trying to break the above


def test_a_malformed_header_element_costs_its_file_only(root, landmarks):
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    entry = load_ann(root)[0]
    folder, idx, stack, i = study_of(root, entry)
    victim = stack.slices[0 if i else 1].path
    ds = pydicom.dcmread(victim)
    ds[0x00280010] = RawDataElement(Tag(0x00280010), "US", 1, b"\x01", 0, False, True)  # Rows of 1 byte
    ds.save_as(victim)
    index = build_index(root, ["lumbar_train"], landmarks)
    assert record_of(index, entry["studyUid"]) is not None
    assert problems_with(index, victim, "unreadable DICOM header element")


def test_enhanced_files_of_one_frame_each_take_their_geometry_from_the_groups(root, landmarks):
    entries = load_ann(root)
    entry = entries[2]
    folder, idx, stack, i = study_of(root, entry)
    for j, h in enumerate(list(stack.slices)):
        one = type(stack)(stack.series_uid, stack.description, stack.plane, stack.weighting, [h])
        ds = to_enhanced(one, folder / f"enh{j}.dcm", [0])
        Path(h.path).unlink()
        if j == i:
            entry["data"][0]["instanceUid"] = ds.SOPInstanceUID
    save_ann(root, entries)
    rec = record_of(build_index(root, ["lumbar_train"], landmarks), entry["studyUid"])
    assert rec is not None and rec.slice_index == i and rec.frame_ref.frame is None
    assert find_targets(folder)[0][0].series_uid == stack.series_uid  # the T2 stack, not T1


def test_pixel_data_a_few_columns_too_long_is_refused(root):
    entry = load_ann(root)[4]
    _, _, stack, i = study_of(root, entry)
    ds = pydicom.dcmread(stack.slices[i].path)
    ds.Columns = int(ds.Columns) - 32  # the data still holds the old width: rows would shear
    ds.save_as(stack.slices[i].path)
    with pytest.raises(DicomError, match="does not describe the data"):
        check_frame(stack.slices[i].path)


def test_spacings_differing_in_the_8th_digit_stay_one_stack(root, landmarks):
    entry = load_ann(root)[0]
    folder, idx, stack, i = study_of(root, entry)
    for h in stack.slices[::2]:
        ds = pydicom.dcmread(h.path)
        ds.PixelSpacing = [float(v) * (1 - 1e-8) for v in ds.PixelSpacing]
        ds.save_as(h.path)
    assert len(index_study(folder).series[stack.series_uid]) == 1


def test_a_study_whose_points_are_all_rejected_says_why(root, landmarks):
    entries = load_ann(root)
    for point in entries[0]["data"][0]["annotation"][0]["data"]["point"]:
        point["coord"] = [str(v) for v in point["coord"]]
    save_ann(root, entries)
    index = build_index(root, ["lumbar_train"], landmarks)
    skip = problems_with(index, entries[0]["studyUid"], "skipped")
    assert skip and "every point of the annotation was rejected" in skip[-1] and "coord" in skip[-1]
    assert len(problems_with(index, "lumbar_train_annotation.json", "coord")) >= 11  # each point's own reason


def test_points_on_other_frames_of_a_multi_frame_file_are_masked_and_reported(root, landmarks):
    entries = load_ann(root)
    entry = entries[2]
    folder, stack, i, points = stack_as_enhanced(root, entries, 2)
    for k, point in enumerate(points):
        point["zIndex"] = i if k >= 3 else i + 1
    save_ann(root, entries)
    index = build_index(root, ["lumbar_train"], landmarks)
    rec = record_of(index, entry["studyUid"])
    assert rec.frame_ref.frame == i and int(np.isfinite(rec.keypoints).all(-1).sum()) == len(points) - 3
    assert problems_with(index, "lie on other frames", "masked")


def test_a_partial_copy_of_a_study_never_wins_over_the_complete_one(root, landmarks):
    entry = load_ann(root)[0]
    folder, idx, stack, i = study_of(root, entry)
    partial = root / "lumbar_train" / "aaa_backup"  # sorts first, holds 3 files, not the annotated one
    partial.mkdir()
    for h in [h for h in stack.slices if h.instance_uid != entry["data"][0]["instanceUid"]][:3]:
        shutil.copy(h.path, partial)
    index = build_index(root, ["lumbar_train"], landmarks)
    assert record_of(index, entry["studyUid"]).folder == str(folder)
    targets, _ = find_targets(root / "lumbar_train")
    assert next(t for t in targets if t.study_uid == entry["studyUid"]).path.startswith(str(folder))


def test_prediction_reads_a_spare_copy_when_the_first_file_is_broken(root):
    from spinectx.inference import read_target

    entry = load_ann(root)[0]
    folder, *_ = study_of(root, entry)
    target = find_targets(folder)[0][0]
    data = open(target.path, "rb").read()
    (folder / "aaa_copy.dcm").write_bytes(data[: len(data) // 2])  # a truncated copy sorts first
    target = find_targets(folder)[0][0]
    assert target.path.endswith("aaa_copy.dcm") and target.spares
    image, notes = read_target(target)
    assert image.shape == read_frame(target.spares[0]).shape and "read from its copy" in notes[0]


def test_a_folder_holding_two_studies_gives_both(root, landmarks):
    entries = load_ann(root)
    folder0, *_ = study_of(root, entries[0])
    folder1, *_ = study_of(root, entries[1])
    for f in folder1.iterdir():
        f.rename(folder0 / f"other_{f.name}")
    folder1.rmdir()
    index = build_index(root, ["lumbar_train"], landmarks)
    assert record_of(index, entries[0]["studyUid"]) and record_of(index, entries[1]["studyUid"])
    assert {t.study_uid for t in find_targets(folder0)[0]} == {entries[0]["studyUid"], entries[1]["studyUid"]}


@pytest.mark.parametrize("depth", [1, 2])
def test_study_folders_deeper_are_found_beside_stray_files(root, landmarks, depth):
    split = root / "lumbar_train"
    deeper = split.joinpath(*["x"] * depth)
    deeper.mkdir(parents=True)
    (split / "x" / "README.txt").write_text("unzipped")
    for study in sorted(p for p in split.iterdir() if p.is_dir() and p.name != "x"):
        study.rename(deeper / study.name)
    first = check_dataset(str(root), ["lumbar_train"], TIANCHI_LANDMARKS)["problems"][0]
    assert ("one level deeper" if depth == 1 else "2 levels deeper") in first and str(deeper) in first


def test_two_acquisitions_in_one_series_split_by_echo_time(root):
    entry = load_ann(root)[0]
    folder, idx, stack, i = study_of(root, entry)
    for h in stack.slices:  # a second echo at the same positions, same series UID
        ds = pydicom.dcmread(h.path)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.EchoTime = float(ds.EchoTime) + 40
        ds.save_as(folder / f"echo2_{Path(h.path).name}")
    parts = index_study(folder).series[stack.series_uid]
    assert len(parts) == 2 and all(len(p.slices) == len(stack.slices) for p in parts)
    for h in stack.slices:  # a third copy that nothing separates: kept together, reported
        ds = pydicom.dcmread(h.path)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(folder / f"again_{Path(h.path).name}")
    assert any("slice position another image already holds" in p for p in index_study(folder).problems)


def test_enhanced_file_with_too_few_per_frame_items_is_refused(root):
    entry = load_ann(root)[2]
    folder, idx, stack, i = study_of(root, entry)
    ds = to_enhanced(stack, folder / "enhanced.dcm", list(range(len(stack.slices))))
    del ds.PerFrameFunctionalGroupsSequence[-1]
    ds.save_as(folder / "enhanced.dcm")
    with pytest.raises(DicomError, match="PerFrameFunctionalGroupsSequence has .* items for .* frames"):
        read_headers(folder / "enhanced.dcm")
