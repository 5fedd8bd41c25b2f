"""The RSNA 2024 reader on a hand-built layout of known geometry (tests/rsna_layout.py): report,
quirks, views, folds by study, left/right flips, 2.5-D input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from spinectx.cli import CONF_DIR
from spinectx.data import rsna
from spinectx.data.cache import FrameCache
from spinectx.data.dataset import SpineDataset
from spinectx.data.landmarks import LandmarkSet
from spinectx.data.transforms import SpineTransform, resize_image
from tests.rsna_layout import AX_Z, LEVELS, axial_slice_of, level_row, write_rsna_case


def landmarks(view: str) -> LandmarkSet:
    cfg = OmegaConf.load(Path(CONF_DIR) / "data" / "landmarks" / f"rsna2024_{view}.yaml")
    return LandmarkSet.from_config(OmegaConf.to_container(cfg, resolve=True))


QUIRKS = {
    "101": (),
    "102": ("descending_instances", "file_name_mismatch"),
    "103": ("missing_series", "blank"),
    "104": ("no_images",),
    "105": ("no_labels",),
    "106": ("duplicate_row", "spinal_on_t1", "two_slices"),
    "107": ("multi_stack_axial", "subarticular_other_series"),
    "108": (),
    "109": (),
    "110": (),
}


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> Path:
    return write_rsna_case(tmp_path_factory.mktemp("rsna"), {sid: set(q) for sid, q in QUIRKS.items()})


@pytest.fixture(scope="module")
def report(case) -> dict:
    return rsna.report(case)


def study(report, sid):
    return next(s for s in report["studies"] if s["study_id"] == sid)


def point(report, sid, condition, level):
    return next(p for p in study(report, sid)["points"] if p["condition"] == condition and p["level"] == level)


def test_report_lists_every_point_with_file_slice_and_severity(case, report):
    p = point(report, "101", "Spinal Canal Stenosis", "L4/L5")
    assert p["file"] == "train_images/101/1012/5.dcm" and p["slice_index"] == 4 and p["severity"] == "severe"
    assert p["coord"] == [32.0, level_row(3)] and p["pixel_spacing"] == [1.0, 1.0] and p["instance_number"] == 5
    left = point(report, "101", "Left Neural Foraminal Narrowing", "L1/L2")
    # slice order: ascending dot(IPP, row × column) = −x, i.e. patient left (x = +16) first
    assert left["slice_index"] == 1 and left["file"] == "train_images/101/1011/2.dcm"
    assert len(study(report, "101")["points"]) == 25 and not study(report, "101")["problems"]
    totals = report["totals"]
    assert totals["studies"] == 10 and totals["studies_with_images"] == 9 and totals["studies_with_labels"] == 9


def test_slice_order_comes_from_geometry_not_instance_numbers(report):
    for k, level in enumerate(LEVELS):
        p = point(report, "102", "Left Subarticular Stenosis", level)
        assert p["slice_index"] == axial_slice_of(k)  # instance numbers run the other way
        assert p["file"] == f"train_images/102/1023/{len(AX_Z) - axial_slice_of(k)}.dcm"
    problems = study(report, "102")["problems"]
    assert any("99.dcm: file name says instance 99, its DICOM InstanceNumber is 1" in p for p in problems)


def test_quirks_are_reported_with_their_files_and_counted(case, report):
    def has(sid, *parts):
        return any(all(x in p for x in parts) for p in study(report, sid)["problems"])

    assert has("103", "1031", "listed but missing on disk")
    assert point(report, "103", "Left Neural Foraminal Narrowing", "L1/L2")["file"] is None
    assert point(report, "103", "Right Neural Foraminal Narrowing", "L1/L2")["severity"] is None  # blank stays blank
    assert has("104", "train_images/104", "study without images")
    assert has("105", "no row (no labels)")
    assert any("labelled again" in p and "train_label_coordinates.csv" in p for p in report["problems"])
    assert has("106", "coordinate on a Sagittal T1 series", "Sagittal T2/STIR")
    assert has("107", "1073", "holds 2 stacks")
    kinds = report["totals"]["problems_by_kind"]
    for kind in ("series missing on disk", "study without images", "study without labels", "duplicated coordinate row",
                 "coordinate on an unexpected series type", "file name is not the InstanceNumber", "series split into stacks"):
        assert kinds.get(kind, 0) >= 1, kind


def test_spinal_view_frame_holds_most_points_and_keeps_the_others(case):
    index = rsna.build_view_index(case, "spinal", landmarks("spinal"))
    recs = {r.sample_id: r for r in index.records}
    assert "104" not in recs and "105" not in recs  # no images / no labels
    r = recs["106"]  # L4/L5, L5/S1 on slice 5, L2/L3, L3/L4 on slice 4, L1/L2 on the T1 series (left out)
    assert r.slice_index == 4 and r.meta["point_slices"] == [None, 4, 4, 5, 5]
    assert np.isnan(r.keypoints[0]).all() and r.keypoints[3].tolist() == [32.0, level_row(3)]
    assert r.tags[3] == ("severe",) and r.tags[0] == ("normal_mild",)  # L1/L2 keeps its label without a point
    assert r.meta["rows"][3] == "106_spinal_canal_stenosis_l4_l5"
    assert recs["101"].shape == (64, 64) and recs["101"].pixel_spacing == (1.0, 1.0)


def test_foraminal_view_gives_one_sample_per_side(case):
    index = rsna.build_view_index(case, "foraminal", landmarks("foraminal"))
    recs = {r.sample_id: r for r in index.records}
    assert {"101_left", "101_right"} <= set(recs) and "103_left" not in recs  # T1 missing on disk
    assert recs["101_left"].slice_index == 1 and recs["101_right"].slice_index == 7
    assert recs["101_left"].meta["side"] == "left" and recs["101_left"].study_uid == "101"


def test_subarticular_view_gives_one_sample_per_level_and_carries_points_between_series(case):
    index = rsna.build_view_index(case, "subarticular", landmarks("subarticular"))
    recs = {r.sample_id: r for r in index.records}
    assert sum(1 for r in index.records if r.study_uid == "101") == 5
    r = recs["101_l5_s1"]
    assert r.slice_index == axial_slice_of(4) and r.keypoints.tolist() == [[40.0, 30.0], [24.0, 30.0]]
    assert r.tags == [("moderate",), ("normal_mild",)]
    r = recs["107_l5_s1"]  # right on a second axial series: carried through patient space
    np.testing.assert_allclose(r.keypoints[1], [24.0, 30.0], atol=1e-6)
    assert any("carried over through patient space (+8.0 mm" in p for p in index.problems)
    assert all(len(r.slices) == 10 for r in index.records if r.study_uid == "107")  # the tilted stack is another


def test_folds_split_by_study_and_are_stratified(case):
    from spinectx.data.datamodule import SpineDataModule

    cfg = OmegaConf.to_container(OmegaConf.load(Path(CONF_DIR) / "data" / "landmarks" / "rsna2024_subarticular.yaml"))
    seen = {}
    for fold in range(2):
        dm = SpineDataModule(str(case), None, cfg, image_size=64, num_workers=0, num_folds=2, fold=fold,
                             reader={"_target_": "spinectx.data.rsna.RSNAReader", "view": "subarticular"})
        dm.setup("fit")
        val = {r.study_uid for r in dm.val_set.records}
        train = {r.study_uid for r in dm.train_set.records}
        assert not val & train  # every sample of a study in one fold
        seen[fold] = val
    assert seen[0] | seen[1] == {"101", "102", "103", "106", "107", "108", "109", "110"}
    strata = rsna.build_view_index(case, "spinal", landmarks("spinal")).strata
    assert strata["101"] == 2 and strata["105"] == -1


def test_a_horizontal_flip_swaps_left_and_right_landmarks_with_their_labels(case):
    lm = landmarks("subarticular")
    rec = next(r for r in rsna.build_view_index(case, "subarticular", lm).records if r.sample_id == "101_l5_s1")
    sample = SpineDataset([rec], lm, None, FrameCache(None)).raw_sample(0)
    flip = SpineTransform(64, train=True, p=0.0, flip=1.0, jitter_mm=0.0, flip_permutation=lm.flip_permutation)
    out = flip(sample)
    # the image's left point (x = 24, the patient's right) moves to x = 63 − 24 = 39 and becomes row 0 ("left")…
    assert out["keypoints"].tolist() == [[63 - 24.0, 30.0], [63 - 40.0, 30.0]]
    # …so each row keeps meaning the patient's side it names, with that side's label
    assert out["tags"][0].tolist() == sample["tags"][1].tolist() and out["tags"][1].tolist() == sample["tags"][0].tolist()
    plain = SpineTransform(64, train=True, p=0.0, flip=1.0, jitter_mm=0.0)(sample)
    assert plain["keypoints"].tolist() == [[63 - 40.0, 30.0], [63 - 24.0, 30.0]]  # without the pairs: no swap


def test_two_and_a_half_d_input_holds_the_neighbours_in_slice_order(case):
    lm = landmarks("spinal")
    rec = next(r for r in rsna.build_view_index(case, "spinal", lm).records if r.sample_id == "101")
    cache = FrameCache(None)
    single = SpineDataset([rec], lm, SpineTransform(32, train=False), cache)[0]["image"]
    three = SpineDataset([rec], lm, SpineTransform(32, train=False), cache, slices=3)[0]["image"]
    assert single.shape == (1, 32, 32) and three.shape == (3, 32, 32)
    assert torch.equal(three[1], single[0])
    for c in range(3):  # channel c is slice 3 + c, prepared exactly as the single frame is
        expected = resize_image(cache.load(rec.slices[3 + c]), (32, 32))
        np.testing.assert_allclose(three[c].numpy(), expected, rtol=1e-6)
    assert not torch.equal(three[0], three[2])
    edge = rec.__class__(**{**rec.__dict__, "slice_index": 0})  # at the end of the stack: the centre repeated
    at_edge = SpineDataset([edge], lm, SpineTransform(32, train=False), cache, slices=3)[0]["image"]
    assert torch.equal(at_edge[0], at_edge[1]) and not torch.equal(at_edge[1], at_edge[2])
    # augmentation: one draw for all channels — channel c is exactly slice 3 + c augmented alone with
    # the same seed (same warp, intensity factor and bias field)
    def augment(record, slices):
        transform = SpineTransform(64, train=True, seed=3, p=1.0, rotate=30, flip=1.0, jitter_mm=0.0)
        return SpineDataset([record], lm, transform, cache, slices=slices)[0]["image"]

    together = augment(rec, 3)
    for c in range(3):
        alone = augment(rec.__class__(**{**rec.__dict__, "slice_index": 3 + c}), 1)[0]
        torch.testing.assert_close(together[c], alone)
    assert not torch.equal(together[1], SpineDataset([rec], lm, SpineTransform(64, train=False), cache)[0]["image"][0])


def test_spinectx_data_writes_the_rsna_report(case, tmp_path):
    out = tmp_path / "check.json"
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([str(Path(sys.executable).parent / "spinectx-data"), "data=rsna2024", f"data.root={case}",
                           f"out={out}"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report) >= {"studies", "problems", "totals"}
    first = report["studies"][0]
    assert set(first) == {"study_id", "points", "problems"}
    assert set(first["points"][0]) == {"condition", "level", "series_id", "instance_number", "file", "slice_index",
                                       "coord", "severity", "pixel_spacing"}
    assert "problem:" in proc.stdout


def test_ids_written_as_floats_are_read_as_integers(tmp_path):
    """pandas writes an integer column that holds a NaN as floats: 1045646.0 is study 1045646."""
    from spinectx.data.rsna import integer_id, read_series_descriptions

    csv = tmp_path / "test_series_descriptions.csv"
    csv.write_text("study_id,series_id,series_description\n1045646.0,802611296.0,Sagittal T1\n1045646,12,Axial T2\n")
    problems: list[str] = []
    assert read_series_descriptions(csv, problems) == {"1045646": {"802611296": "Sagittal T1", "12": "Axial T2"}}
    assert not problems
    assert [integer_id(v) for v in ("7.00", "7.5", "x.0", " 8 ")] == ["7", "7.5", "x.0", "8"]
