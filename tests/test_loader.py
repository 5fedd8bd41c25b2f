"""Loader on generated studies: indexing, annotated frame, spacing, annotation parsing, errors."""

import json
import shutil

import numpy as np
import pydicom
import pytest

from spinectx.data.annotation import parse_annotations
from spinectx.data.cache import FrameCache
from spinectx.data.dicom import read_frame, read_header
from spinectx.data.errors import AnnotationError, DataError, DicomError
from spinectx.data.records import build_index
from spinectx.data.study import index_study, plane_of, weighting_of


def annotation_of(root):
    return json.loads((root / "lumbar_train_annotation.json").read_text())


def copy_dataset(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_index_finds_annotated_frame_and_spacing(synthetic_root, landmarks):
    index = build_index(synthetic_root, ["lumbar_train"], landmarks)
    assert len(index.records) == 12 and not index.skipped_studies
    ann = {e["studyUid"]: e for e in annotation_of(synthetic_root)}
    for rec in index.records:
        entry = ann[rec.study_uid]["data"][0]
        assert rec.instance_uid == entry["instanceUid"] and rec.series_uid == entry["seriesUid"]
        ds = pydicom.dcmread(rec.frame_path, stop_before_pixels=True)
        assert ds.SOPInstanceUID == rec.instance_uid
        assert rec.pixel_spacing == pytest.approx(tuple(float(v) for v in ds.PixelSpacing))
        assert rec.shape == (ds.Rows, ds.Columns)
        # zIndex of the annotation = position of the frame in slice order
        z = {p["zIndex"] for p in entry["annotation"][0]["data"]["point"]}
        assert z == {rec.slice_index}


def test_series_grouping_plane_weighting_and_slice_order(synthetic_root):
    study = index_study(synthetic_root / "lumbar_train" / "study0")
    kinds = sorted((s.plane, s.weighting) for s in study.stacks)
    assert kinds == [("axial", "T2"), ("sagittal", "T1"), ("sagittal", "T2")]
    for s in study.stacks:
        normal = np.cross(s.slices[0].orientation[:3], s.slices[0].orientation[3:])
        pos = [float(np.dot(normal, h.position)) for h in s.slices]
        assert pos == sorted(pos)
    # file names carry no order: slice order differs from name order in at least one series
    by_name = [sorted(s.slices, key=lambda h: int(h.path.split("image")[-1][:-4])) for s in study.stacks]
    assert any([h.path for h in a] != [h.path for h in s.slices] for a, s in zip(by_name, study.stacks))
    assert study.inference_stack().plane == "sagittal" and study.inference_stack().weighting == "T2"


def test_plane_and_weighting_rules():
    assert plane_of((0, 1, 0, 0, 0, -1)) == "sagittal"
    assert plane_of((1, 0, 0, 0, 1, 0)) == "axial"
    assert plane_of((1, 0, 0, 0, 0, -1)) == "coronal"
    assert plane_of(None) == "unknown"
    assert weighting_of("t2_tse_sag_384", 100, 3000) == "T2"
    assert weighting_of("SAG T1", None, None) == "T1"
    assert weighting_of("sag fse", 110.0, 3500.0) == "T2"  # from TE
    assert weighting_of("sag fse", 12.0, 500.0) == "T1"  # from TE/TR
    assert weighting_of("localizer", None, None) is None


def test_keypoints_match_annotation_in_any_order(synthetic_root, landmarks):
    index = build_index(synthetic_root, ["lumbar_train"], landmarks)
    ann = {e["studyUid"]: e for e in annotation_of(synthetic_root)}
    for rec in index.records:
        points = ann[rec.study_uid]["data"][0]["annotation"][0]["data"]["point"]
        for p in points:
            ident = p["tag"]["identification"]
            if ident in landmarks.index:
                k = landmarks.index[ident]
                assert tuple(rec.keypoints[k]) == tuple(float(v) for v in p["coord"])
                group = landmarks.group(ident).name
                assert ",".join(rec.tags[k]) == p["tag"][group]


def test_missing_landmark_masked_and_unknown_identification_counted(synthetic_root, landmarks, tmp_path):
    root = copy_dataset(synthetic_root, tmp_path / "ds")
    data = annotation_of(root)
    points = data[0]["data"][0]["annotation"][0]["data"]["point"]
    removed = next(p for p in points if p["tag"]["identification"] == "L3")
    points.remove(removed)
    points.append({"coord": [5, 5], "zIndex": 0, "tag": {"identification": "T10-T11", "disc": "v1"}})
    (root / "lumbar_train_annotation.json").write_text(json.dumps(data))
    index = build_index(root, ["lumbar_train"], landmarks)
    rec = next(r for r in index.records if r.study_uid == data[0]["studyUid"])
    assert np.isnan(rec.keypoints[landmarks.index["L3"]]).all() and rec.tags[landmarks.index["L3"]] == ()
    assert index.skipped_identifications["T10-T11"] >= 1
    assert index.totals(landmarks)["skipped_identifications"]["T10-T11"] >= 1
    assert any("T10-T11" in p for p in rec.problems)


def test_malformed_json_names_file_and_position(tmp_path, landmarks):
    bad = tmp_path / "x_annotation.json"
    bad.write_text('[{"studyUid": "1", "data": [}]')
    with pytest.raises(AnnotationError) as err:
        parse_annotations(bad, landmarks)
    assert str(bad) in str(err.value) and "line 1" in str(err.value)
    bad.write_text('[{"studyUid": "1"}]')
    with pytest.raises(AnnotationError, match="missing 'data'"):
        parse_annotations(bad, landmarks)


def test_unknown_class_code_is_reported_not_invented(tmp_path, landmarks):
    f = tmp_path / "a.json"
    f.write_text(json.dumps([{"studyUid": "s", "data": [{"seriesUid": "x", "instanceUid": "y", "annotation": [
        {"data": {"point": [{"coord": [1, 2], "tag": {"identification": "L1", "vertebra": "v9"}},
                            {"coord": [3, 4], "tag": {"identification": "L2-L3", "disc": "v3,v5"}}]}}]}]}]))
    parsed = parse_annotations(f, landmarks).studies[0]
    # the location survives, the class counts as unknown (no tag invented)
    assert parsed.points["L1"].tags == () and parsed.points["L1"].coord == (1.0, 2.0)
    assert any("L1" in p and "v9" in p and "class unknown" in p for p in parsed.problems)
    assert parsed.points["L2-L3"].tags == ("v3", "v5") and parsed.points["L2-L3"].coord == (3.0, 4.0)


def test_corrupt_dicom_raises_with_file_name(tmp_path):
    bad = tmp_path / "image0.dcm"
    bad.write_bytes(b"this is not a dicom file" * 10)
    with pytest.raises(DicomError) as err:
        read_header(bad)
    assert str(bad) in str(err.value)
    with pytest.raises(DicomError, match="image0.dcm"):
        read_frame(bad)


def test_truncated_pixel_data_raises_with_file_name(synthetic_root, tmp_path):
    src = next((synthetic_root / "lumbar_train" / "study1").glob("*.dcm"))
    data = src.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) - len(data) // 3])
    with pytest.raises(DicomError, match="cut.dcm"):
        read_frame(cut)


def test_corrupt_file_in_study_is_reported_and_study_kept(synthetic_root, landmarks, tmp_path):
    root = copy_dataset(synthetic_root, tmp_path / "ds")
    index = build_index(root, ["lumbar_train"], landmarks)
    rec = index.records[0]
    victim = next(p for p in rec.slice_paths if p != rec.frame_path)  # not the annotated frame
    with open(victim, "wb") as fh:
        fh.write(b"garbage")
    index2 = build_index(root, ["lumbar_train"], landmarks)
    assert len(index2.records) == len(index.records)
    assert any(victim in p and "unreadable" in p for p in index2.problems)


def test_annotation_pointing_at_missing_instance_skips_study_with_reason(synthetic_root, landmarks, tmp_path):
    root = copy_dataset(synthetic_root, tmp_path / "ds")
    index = build_index(root, ["lumbar_train"], landmarks)
    rec = index.records[0]
    (tmp_path / "ds" / "lumbar_train" / rec.frame_path.split("/lumbar_train/")[1]).unlink()
    index2 = build_index(root, ["lumbar_train"], landmarks)
    assert rec.study_uid in index2.skipped_studies and len(index2.records) == len(index.records) - 1
    assert any(rec.instance_uid in p and "not found" in p for p in index2.problems)


def test_missing_annotation_file_and_root(tmp_path, landmarks):
    (tmp_path / "lumbar_train").mkdir()
    with pytest.raises(DataError, match="annotation file"):
        build_index(tmp_path, ["lumbar_train"], landmarks)
    with pytest.raises(DataError, match="dataset root not found"):
        build_index(tmp_path / "nope", ["lumbar_train"], landmarks)


def test_frame_decode_and_cache(synthetic_root, landmarks, tmp_path):
    rec = build_index(synthetic_root, ["lumbar_train"], landmarks).records[0]
    raw = read_frame(rec.frame_path)
    assert raw.dtype == np.float32 and raw.shape == rec.shape
    cache = FrameCache(tmp_path / "cache")
    first = cache.load(rec.frame_path)
    files = list((tmp_path / "cache").rglob("*.npy"))
    assert len(files) == 1
    second = cache.load(rec.frame_path)  # from the cache
    np.testing.assert_allclose(first, second, atol=1e-3)
    assert 0.0 <= first.min() and 0.9 < np.percentile(first, 99.5) < 1.1


def test_rescale_and_monochrome1(synthetic_root, tmp_path):
    src = next((synthetic_root / "lumbar_train" / "study2").glob("*.dcm"))
    base = read_frame(src)
    ds = pydicom.dcmread(src)
    ds.RescaleSlope, ds.RescaleIntercept = 2.0, -100.0
    ds.save_as(tmp_path / "rescaled.dcm")
    np.testing.assert_allclose(read_frame(tmp_path / "rescaled.dcm"), base * 2 - 100)
    ds = pydicom.dcmread(src)
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "inverted.dcm")
    inv = read_frame(tmp_path / "inverted.dcm")
    np.testing.assert_allclose(inv, base.max() + base.min() - base)


def test_window_indices_clamp_at_the_stack_ends():
    from spinectx.data.dataset import window_indices

    assert window_indices(0, 10, 3) == [0, 0, 1]
    assert window_indices(9, 10, 3) == [8, 9, 9]
    assert window_indices(4, 10, 5) == [2, 3, 4, 5, 6]
    assert window_indices(4, 10, 1) == [4]
    assert window_indices(0, 1, 3) == [0, 0, 0]
