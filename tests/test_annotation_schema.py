"""The annotation schema: malformed values cost as little as possible and are reported with the
file, the study, the landmark and the field; duplicate studies follow one rule (the first entry)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spinectx.data.annotation import parse_annotations
from spinectx.data.errors import AnnotationError


def point(ident: str, cls="v1", coord=(10.0, 20.0), z=4, **extra) -> dict:
    group = "disc" if "-" in ident else "vertebra"
    out = {"coord": list(coord), "tag": {"identification": ident, group: cls}, **extra}
    if z is not None:
        out["zIndex"] = z
    return out


def study(uid: str, *items, series="se", instance="in") -> dict:
    return {"studyUid": uid, "version": "v0.1",
            "data": [{"seriesUid": series, "instanceUid": instance, "annotation": list(items)}]}


def item(*points) -> dict:
    return {"annotator": 54, "data": {"point": list(points)}}


def write(tmp_path, entries, name="ann.json"):
    path = tmp_path / name
    path.write_text(json.dumps(entries))  # Python's json writes a float NaN as the token NaN
    return path


def only(problems, *words):
    """The one problem line holding all ``words``."""
    hits = [p for p in problems if all(w in p for w in words)]
    assert len(hits) == 1, (words, problems)
    return hits[0]


def test_numeric_class_code_costs_only_the_class(tmp_path, landmarks):
    path = write(tmp_path, [study("1.2.3", item(point("L1"), point("L2-L3", 2), point("L4-L5", "v3,v5")))])
    parsed = parse_annotations(path, landmarks)
    s = parsed.studies[0]
    assert set(s.points) == {"L1", "L2-L3", "L4-L5"}
    assert s.points["L2-L3"].coord == (10.0, 20.0) and s.points["L2-L3"].tags == ()  # class unknown
    assert s.points["L4-L5"].tags == ("v3", "v5") and s.points["L1"].tags == ("v1",)
    line = only(s.problems, "L2-L3")
    for word in (str(path), "entry 0", "studyUid 1.2.3", "tag.disc", "got 2 (number)", "location kept, class unknown"):
        assert word in line, (word, line)
    assert parsed.problems == [] and len(s.problems) == 1
    # the training loader's class target for it is unknown (masked), not "normal"
    assert np.isnan(landmarks.encode_tags("L2-L3", s.points["L2-L3"].tags)[0])


def test_unknown_class_code_keeps_the_location(tmp_path, landmarks):
    path = write(tmp_path, [study("s", item(point("L3", "v7")))])
    s = parse_annotations(path, landmarks).studies[0]
    assert s.points["L3"].tags == () and s.points["L3"].coord == (10.0, 20.0)
    assert "'v7'" in only(s.problems, str(path), "studyUid s", "L3", "class unknown")


def test_annotation_item_whose_data_is_a_list_costs_its_points(tmp_path, landmarks):
    path = write(tmp_path, [study("1.2.3", item(point("L1"), point("L2")), {"data": [point("L3"), point("L4")]},
                                  item(point("L5")))])
    s = parse_annotations(path, landmarks).studies[0]
    assert set(s.points) == {"L1", "L2", "L5"}
    line = only(s.problems, "annotation[1]")
    for word in (str(path), "studyUid 1.2.3", "data: expected an object", "(list)", "its points skipped"):
        assert word in line, (word, line)


def test_nan_z_index_never_costs_a_landmark(tmp_path, landmarks):
    path = write(tmp_path, [study("1.2.3", item(point("L1", z=float("nan")), point("L2", z=None), point("L3", z=2.5),
                                                point("L4", z=-1), point("L5", z=6.0)))])
    assert "NaN" in path.read_text()
    s = parse_annotations(path, landmarks).studies[0]
    assert set(s.points) == {"L1", "L2", "L3", "L4", "L5"}
    assert [s.points[n].z_index for n in ("L1", "L2", "L3", "L4", "L5")] == [None, None, None, None, 6]
    note = only(s.problems, "zIndex")  # one note for the study: a missing zIndex is not worth one
    for word in (str(path), "studyUid 1.2.3", "L1", "NaN", "L3", "L4", "landmark kept"):
        assert word in note, (word, note)
    assert "L2" not in note and len(s.problems) == 1


def test_bad_point_costs_only_that_point(tmp_path, landmarks):
    path = write(tmp_path, [study("9", item(
        point("L1", coord=(5.0, float("nan"))),      # not finite
        point("L2", coord=(5.0,)),                   # one number
        {"coord": [1, 2], "tag": {"disc": "v1"}},    # no identification
        "L4",                                        # not an object
        point("T11-T12", coord="nowhere"),           # outside the landmark set: skipped and counted, not a problem
        point("L5", coord=("3", 4)),                 # a string is not a number
        point("L1-L2"),
    ))])
    parsed = parse_annotations(path, landmarks)
    s = parsed.studies[0]
    assert set(s.points) == {"L1-L2"}
    assert s.skipped == ["T11-T12"] and parsed.skipped_identifications["T11-T12"] == 1
    assert "coord[1]: expected a finite number, got NaN" in only(s.problems, "L1:")
    assert "coord: expected [x, y]" in only(s.problems, "L2:")
    assert "missing 'tag.identification'" in only(s.problems, "data[0].annotation[0].data.point[2]")
    assert "expected an object" in only(s.problems, "data[0].annotation[0].data.point[3]")
    assert 'coord[0]: expected a valid number, got "3" (string)' in only(s.problems, "L5:")
    assert all(str(path) in p and "studyUid 9" in p and p.endswith("point skipped") for p in s.problems)
    assert len(s.problems) == 5


def test_bad_study_entry_costs_only_that_study(tmp_path, landmarks):
    entries = [
        study("good", item(point("L1"))),
        {"studyUid": "a", "data": {"seriesUid": "x"}},                           # data not a list
        {"studyUid": "b", "data": [{"instanceUid": "i", "annotation": []}]},    # no seriesUid
        {"studyUid": 7, "data": []},                                           # uid not a string
        "not an entry",
        {"studyUid": "c", "data": []},                                          # no frame: skipped, not malformed
    ]
    path = write(tmp_path, entries)
    parsed = parse_annotations(path, landmarks)
    assert [s.study_uid for s in parsed.studies] == ["good"] and parsed.studies[0].entry == 0
    p = parsed.problems
    assert "data: expected a valid list" in only(p, "entry 1 (studyUid a)", "study skipped")
    assert "missing 'data[0].seriesUid'" in only(p, "entry 2 (studyUid b)")
    assert "studyUid: expected a valid string, got 7 (number)" in only(p, "entry 3 (studyUid ?)")
    assert "expected an object" in only(p, "entry 4")
    assert "empty 'data'" in only(p, "entry 5 (studyUid c)")
    assert all(line.startswith(f"{path}: ") for line in p) and len(p) == 5


def test_structures_that_are_not_the_format_raise(tmp_path, landmarks):
    with pytest.raises(AnnotationError, match="expected a list of studies at the top level, got dict"):
        parse_annotations(write(tmp_path, {"studyUid": "1"}), landmarks)
    # a list none of whose entries is a study of the format: the wrong file, not n bad studies
    path = write(tmp_path, [{"study_id": 1, "level": "L1/L2"}, {"study_id": 2, "level": "L2/L3"}])
    with pytest.raises(AnnotationError, match=r"none of the 2 entries .* first: entry 0 \(studyUid \?\): missing 'studyUid'") as err:
        parse_annotations(path, landmarks)
    assert str(path) in str(err.value)
    assert parse_annotations(write(tmp_path, []), landmarks).studies == []  # empty is fine


def test_extra_fields_are_allowed_and_kept(tmp_path, landmarks):
    path = write(tmp_path, [study("s", item(point("L1", prob=0.25, score=[1, 2])))])
    s = parse_annotations(path, landmarks).studies[0]
    assert s.points["L1"].extra == {"prob": 0.25, "score": [1, 2]} and s.problems == []


def test_duplicate_study_first_entry_counts(tmp_path, landmarks):
    entries = [
        study("A", item(point("L1", coord=(1, 1))), instance="first"),
        study("B", item(point("L1"))),
        study("A", item(point("L1", coord=(2, 2))), instance="second"),
        study("A", item(point("L2"))),
    ]
    path = write(tmp_path, entries)
    parsed = parse_annotations(path, landmarks)
    assert [(s.study_uid, s.entry) for s in parsed.studies] == [("A", 0), ("B", 1)]
    a = parsed.studies[0]
    assert a.instance_uid == "first" and a.points["L1"].coord == (1.0, 1.0) and set(a.points) == {"L1"}
    assert only(parsed.problems, "entries 0 and 2") == (
        f"{path}: study A appears more than once (entries 0 and 2); the first entry counts, entry 2 ignored")
    assert "entry 3 ignored" in only(parsed.problems, "entries 0 and 3")
    assert len(parsed.problems) == 2


def test_duplicates_read_and_written_by_the_same_rule(tmp_path, landmarks):
    from spinectx.data.submission import StudyPrediction, read_submission, write_submission

    k = len(landmarks)
    path = write(tmp_path, [study("A", item(point("L1", coord=(1, 1), prob=0.9)), instance="first"),
                            study("A", item(point("L1", coord=(2, 2), prob=0.1)), instance="second")])
    problems: list[str] = []
    read = read_submission(path, landmarks, problems)
    assert read["A"].instance_uid == "first" and read["A"].keypoints[0].tolist() == [1.0, 1.0]
    assert read["A"].prob[0] == 0.9  # "prob" of the entry that counts
    assert sum("appears more than once" in p for p in problems) == 1

    pred = StudyPrediction("A", "s", "i", np.zeros((k, 2)), np.full(k, 0.5))
    target = tmp_path / "out.json"
    with pytest.raises(ValueError, match="study A is predicted twice"):
        write_submission(target, [pred, pred], landmarks)
    assert not target.exists()


def test_a_point_without_a_class_is_reported_and_keeps_its_location(tmp_path, landmarks):
    """``null``, ``""``, a class under the other group's key, no class key: each once silently
    unknown, now one problem line per point naming file, study, landmark and what was found."""
    no_key = point("L3")
    del no_key["tag"]["vertebra"]
    wrong_group = point("L4")
    wrong_group["tag"] = {"identification": "L4", "disc": "v2"}  # a vertebra's class written under "disc"
    path = write(tmp_path, [study("1.2.3", item(point("L1", None), point("L1-L2", ""), point("L2-L3", "  "), no_key,
                                                wrong_group, point("L5", "v2")))])
    s = parse_annotations(path, landmarks).studies[0]
    assert set(s.points) == {"L1", "L1-L2", "L2-L3", "L3", "L4", "L5"}  # every location kept
    assert all(s.points[n].tags == () for n in ("L1", "L1-L2", "L2-L3", "L3", "L4")) and s.points["L5"].tags == ("v2",)
    assert s.points["L4"].coord == (10.0, 20.0)
    expected = {
        "L1": "no class: tag.vertebra is null",
        "L1-L2": 'no class: tag.disc is "" (string)',
        "L2-L3": 'no class: tag.disc is "  " (string)',
        "L3": "no class under tag.vertebra (tag keys: identification)",
        "L4": "no class under tag.vertebra (tag keys: identification, disc)",
    }
    for name, found in expected.items():
        line = only(s.problems, f": {name}: ")
        for word in (str(path), "entry 0", "studyUid 1.2.3", found, "location kept, class unknown"):
            assert word in line, (word, line)
    assert len(s.problems) == 5


def test_a_submission_may_leave_the_class_to_its_prob(tmp_path, landmarks):
    from spinectx.data.submission import read_submission

    bare = point("L1", prob=0.9)
    del bare["tag"]["vertebra"]
    path = write(tmp_path, [study("A", item(bare, point("L2", None, prob=0.1)))])
    problems: list[str] = []
    read = read_submission(path, landmarks, problems)
    assert read["A"].tags[landmarks.index["L1"]] == ("v2",) and read["A"].tags[landmarks.index["L2"]] == ("v1",)
    assert not any("no class" in p for p in problems)  # optional there: one summary line instead
    assert any("2 point(s) without a tag: tag derived from 'prob'" in p for p in problems)


def test_uids_with_surrounding_whitespace_are_stripped_with_a_note(tmp_path, landmarks):
    entries = [study(" 1.2.3\n", item(point("L1")), series="se ", instance="\tin"), study("1.2.3", item(point("L2")))]
    path = write(tmp_path, entries)
    parsed = parse_annotations(path, landmarks)
    (s,) = parsed.studies
    assert (s.study_uid, s.series_uid, s.instance_uid) == ("1.2.3", "se", "in") and set(s.points) == {"L1"}
    for field_name, raw in (("studyUid", '" 1.2.3\\n"'), ("data[0].seriesUid", '"se "'), ("data[0].instanceUid", '"\\tin"')):
        line = only(s.problems, f"{field_name} {raw}")
        assert str(path) in line and "entry 0" in line and "surrounding whitespace" in line, line
    assert "appears more than once (entries 0 and 1)" in only(parsed.problems, "1.2.3")  # one study, not two
    blank = parse_annotations(write(tmp_path, [study("  ", item(point("L1"))), study("x")], name="blank.json"), landmarks)
    assert [t.study_uid for t in blank.studies] == ["x"] and "studyUid is blank" in only(blank.problems, "entry 0")
