"""Cross-series geometry on generated RSNA studies of known geometry (docs/synthetic.md: every
axial block is centred on its level, so a level's sagittal canal point lies in the axial slice that
holds the level's subarticular labels): a sagittal level point → its axial slice over every axial
stack and series of the study (tilted stacks, two series), and the patient's side of a sagittal
slice from patient coordinates (mirrored images and reversed numbering included)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from spinectx.data import rsna
from spinectx.data.geometry import nearest_slice, patient_side, pixel_to_patient, slab_half_width_mm
from tests.test_rsna_on_synthetic import quirk_study


@pytest.fixture(scope="module")
def studies(synthetic_rsna_root):
    found, _ = rsna.scan(synthetic_rsna_root)
    return {s.study_id: s for s in found}


def points(study, condition):
    return {p.level: p for p in study.points if p.condition == condition and p.problem is None}


def axial_stacks(study):
    return [st for sid, desc in study.series.items() if desc == "Axial T2" for st in study.stacks.get(sid, [])]


def test_a_sagittal_level_point_finds_the_axial_slice_of_its_level(studies, synthetic_rsna_root):
    checked = set()
    for study in studies.values():
        canal, left, right = (points(study, c) for c in ("Spinal Canal Stenosis", "Left Subarticular Stenosis",
                                                         "Right Subarticular Stenosis"))
        stacks = axial_stacks(study)
        for level, p in canal.items():
            if level not in left or level not in right:
                continue
            pick = nearest_slice(stacks, pixel_to_patient(p.header, (p.x, p.y)))
            assert pick is not None, (study.study_id, level)
            assert pick.stack.slices[pick.index].path == left[level].header.path, (study.study_id, level)
            assert abs(pick.distance_mm) < 1.0
            # the canal lies between the two recesses on that slice (the patient's left is on the image's right)
            assert right[level].x < pick.xy[0] < left[level].x
            checked.add(study.study_id)
    root = synthetic_rsna_root
    assert {quirk_study(root, "axial_two_stacks"), quirk_study(root, "two_axial_series")} <= checked
    assert len(checked) >= 6


def test_the_tilted_stack_and_the_second_series_are_reached(studies, synthetic_rsna_root):
    root = synthetic_rsna_root
    tilted = studies[quirk_study(root, "axial_two_stacks")]
    canal = points(tilted, "Spinal Canal Stenosis")
    picks = {lv: nearest_slice(axial_stacks(tilted), pixel_to_patient(p.header, (p.x, p.y))) for lv, p in canal.items()}
    assert len({id(pick.stack) for pick in picks.values()}) == 2  # both stacks of the one series are used
    two = studies[quirk_study(root, "two_axial_series")]
    canal = points(two, "Spinal Canal Stenosis")
    series_of = {id(st): sid for sid, desc in two.series.items() if desc == "Axial T2" for st in two.stacks.get(sid, [])}
    used = {lv: series_of[id(nearest_slice(axial_stacks(two), pixel_to_patient(p.header, (p.x, p.y))).stack)]
            for lv, p in canal.items()}
    assert len(set(used.values())) == 2 and used["L4/L5"] == used["L5/S1"] != used["L1/L2"]


def test_a_point_outside_every_stack_finds_nothing(studies):
    study = next(s for s in studies.values() if axial_stacks(s) and points(s, "Spinal Canal Stenosis"))
    p = points(study, "Spinal Canal Stenosis")["L3/L4"]
    point = pixel_to_patient(p.header, (p.x, p.y))
    stacks = axial_stacks(study)
    assert nearest_slice(stacks, point + np.array([0.0, 0.0, 300.0])) is None  # far above the lumbar spine
    assert nearest_slice(stacks, point + np.array([400.0, 0.0, 0.0])) is None  # projects outside every frame
    assert nearest_slice([], point) is None
    gap = slab_half_width_mm(stacks[0].slices)
    assert 0.5 < gap < 5  # 3–4 slices per level, a few mm apart


def test_the_side_of_a_sagittal_slice_comes_from_patient_coordinates(studies, synthetic_rsna_root):
    checked, seen = 0, set()
    for study in studies.values():
        canal = points(study, "Spinal Canal Stenosis")
        if "L3/L4" not in canal:
            continue
        midline = float(pixel_to_patient(canal["L3/L4"].header, (canal["L3/L4"].x, canal["L3/L4"].y))[0])
        for condition, side in (("Left Neural Foraminal Narrowing", "left"), ("Right Neural Foraminal Narrowing", "right")):
            for p in points(study, condition).values():
                h = p.header
                assert patient_side(h, midline) == side, (study.study_id, condition)
                # the same slice stored mirrored (row direction reversed, position at the other edge):
                # the image's left and right swap, the patient's side does not
                r = np.asarray(h.orientation[:3])
                far = np.asarray(h.position) + (h.cols - 1) * h.pixel_spacing[1] * r
                mirrored = dataclasses.replace(h, orientation=(*(-r), *h.orientation[3:]), position=tuple(far))
                assert patient_side(mirrored, midline) == side
                checked += 1
                seen.add(study.study_id)
    assert checked >= 50
    # numbering changes nothing: studies with reversed and offset instance numbers were among those checked
    assert {quirk_study(synthetic_rsna_root, q) for q in ("instance_reversed", "instance_offset")} <= seen
