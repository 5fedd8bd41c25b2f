"""Submissions (write/read), the TianChi challenge metric, and spinectx-score against the training metric."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import spinectx
from spinectx.data.landmarks import LandmarkSet
from spinectx.data.submission import StudyPrediction, abnormal_tags, read_submission, tags_from_prob, write_submission
from spinectx.metrics import TableMetric, challenge_classes, challenge_metric

NAN = float("nan")


def test_abnormal_tags_follow_the_training_counts_and_can_be_overridden(landmarks):
    assert abnormal_tags(landmarks) == {"vertebra": "v2", "disc": "v2"}  # bulge is the commonest abnormal disc
    assert abnormal_tags(landmarks, {"disc": "v3"})["disc"] == "v3"
    with pytest.raises(ValueError, match="not one of its classes"):
        abnormal_tags(landmarks, {"vertebra": "v5"})
    # a dataset the counts do not cover: the first non-normal class of its vocabulary
    other = LandmarkSet.from_config({"level": {"identifications": ["L1/L2", "L2/L3"], "classes": ["Normal/Mild", "Moderate", "Severe"]}})
    assert abnormal_tags(other) == {"level": "Moderate"}
    assert tags_from_prob([0.49, 0.5], other) == ["Normal/Mild", "Moderate"]

    prob = np.array([0.1, 0.7, 0.5, NAN, 0.0, 0.2, 0.9, 0.3, 0.8, 0.6, 0.4])
    assert tags_from_prob(prob, landmarks) == ["v1", "v2", "v2", "", "v1", "v1", "v2", "v1", "v2", "v2", "v1"]
    assert tags_from_prob(prob, landmarks, threshold=0.75, abnormal={"disc": "v4"})[5:] == ["v1", "v4", "v1", "v4", "v1", "v1"]


def _prediction(uid: str, k: int, seed: int, tags=None) -> StudyPrediction:
    rng = np.random.default_rng(seed)
    keypoints = rng.uniform(0, 512, size=(k, 2))
    prob = rng.uniform(0, 1, size=k)
    return StudyPrediction(uid, f"{uid}.1", f"{uid}.1.7", keypoints, prob, z_index=7, tags=tags)


def test_submission_round_trip(tmp_path, landmarks):
    k = len(landmarks)
    a = _prediction("1.2.3", k, 0)
    a.keypoints[4] = NAN  # no prediction for L5
    tags_b = [("v2",)] * 5 + [("v3", "v5"), ("v1",), ("v4",), ("v2",), ("v5",), ("v1",)]
    b = _prediction("1.2.4", k, 1, tags=tags_b)
    path = write_submission(tmp_path / "sub" / "pred.json", [a, b], landmarks)
    assert sorted(p.name for p in path.parent.iterdir()) == ["pred.json"]  # no temporary file left

    raw = json.loads(path.read_text())
    assert [s["studyUid"] for s in raw] == ["1.2.3", "1.2.4"]
    points = raw[0]["data"][0]["annotation"][0]["data"]["point"]
    assert len(points) == k - 1 and "L5" not in [p["tag"]["identification"] for p in points]
    assert points[0]["zIndex"] == 7 and set(points[0]["tag"]) == {"identification", "vertebra"}
    assert set(points[-1]["tag"]) == {"identification", "disc"}

    problems: list[str] = []
    back = read_submission(path, landmarks, problems)
    assert problems == [] and set(back) == {"1.2.3", "1.2.4"}
    ra, rb = back["1.2.3"], back["1.2.4"]
    np.testing.assert_array_equal(ra.keypoints, a.keypoints)  # full precision, NaN where none
    np.testing.assert_array_equal(ra.prob[np.arange(k) != 4], a.prob[np.arange(k) != 4])
    assert math.isnan(ra.prob[4]) and ra.tags[4] == ()
    assert [t[0] for i, t in enumerate(ra.tags) if i != 4] == [t for i, t in enumerate(tags_from_prob(a.prob, landmarks)) if i != 4]
    assert (ra.series_uid, ra.instance_uid, ra.z_index, ra.prob_from_tags) == ("1.2.3.1", "1.2.3.1.7", 7, False)
    assert rb.tags == tags_b
    np.testing.assert_array_equal(rb.prob, b.prob)

    # without "prob": P(abnormal) comes from the tags, and that is reported
    for study in raw:
        for p in study["data"][0]["annotation"][0]["data"]["point"]:
            del p["prob"]
    raw[1]["data"][0]["annotation"][0]["data"]["point"].append({"coord": [1, 2], "tag": {"identification": "T11-T12", "disc": "v1"}})
    raw.append(raw[0])  # the same study twice
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(raw))
    problems = []
    back = read_submission(plain, landmarks, problems)
    rb = back["1.2.4"]
    assert rb.prob_from_tags
    np.testing.assert_array_equal(rb.prob, [1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 0])
    text = "\n".join(problems)
    assert str(plain) in text and "derived from the tags" in text
    assert "T11-T12" in text and "more than once" in text


def test_reading_a_malformed_submission_names_the_file(tmp_path, landmarks):
    from spinectx.data.errors import AnnotationError

    bad = tmp_path / "bad.json"
    bad.write_text('[{"studyUid": "1", "data": [')
    with pytest.raises(AnnotationError, match="bad.json: malformed JSON"):
        read_submission(bad, landmarks)


def _hand_case(landmarks):
    """Two studies (vertebrae L1..L5 = 0..4, discs T12-L1..L5-S1 = 5..10) with known outcomes."""
    idx = landmarks.index
    gt = np.full((2, len(landmarks), 2), NAN)
    pred = np.full_like(gt, NAN)
    gt_tags = [[() for _ in landmarks.names] for _ in range(2)]
    pred_tags = [[None for _ in landmarks.names] for _ in range(2)]

    def put(study, name, tags, truth, offset, predicted):
        k = idx[name]
        gt[study, k] = truth
        gt_tags[study][k] = tags
        if offset is not None:
            pred[study, k] = np.asarray(truth) + np.asarray(offset)
        pred_tags[study][k] = predicted

    # study 0, spacing 1 mm × 1 mm
    put(0, "L1", ("v1",), (100, 50), (0, 0), "v1")            # hit, right class
    put(0, "L2", ("v2",), (100, 90), (3, 0), "v1")            # hit, wrong class
    put(0, "L3", ("v2",), (100, 130), (0, 7), "v2")           # 7 mm: wrong
    put(0, "L4", ("v2",), (100, 170), None, None)             # no prediction: not_hit
    idx_l5 = idx["L5"]
    pred[0, idx_l5] = (100, 210)                              # prediction for an unannotated landmark: ignored
    pred_tags[0][idx_l5] = "v2"
    put(0, "T12-L1", ("v3", "v5"), (110, 30), (0, 0), "v3")   # two tags: v3 hit, v5 confused with v3
    put(0, "L1-L2", ("v1",), (110, 70), (6, 0), "v2")         # exactly 6 mm: a hit, class v2
    put(0, "L2-L3", ("v2",), (110, 110), (0, 0), "v2")        # hit
    put(0, "L3-L4", ("v4",), (110, 150), (0, 0), "")          # location but no class: not_hit
    put(0, "L4-L5", (), (110, 190), (0, 0), "v2")             # annotated without tag: counts nowhere
    put(0, "L5-S1", ("v1",), (110, 230), (6.5, 0), "v1")      # 6.5 mm: wrong
    # study 1, spacing dy = 0.5 mm, dx = 2 mm
    put(1, "L1", ("v2",), (100, 50), (3, 0), "v2")            # 3 columns = 6 mm: hit
    put(1, "L2", ("v1",), (100, 90), (0, 10), "v1")           # 10 rows = 5 mm (20 mm if axes swapped): hit
    spacing = np.array([[1.0, 1.0], [0.5, 2.0]])
    return pred, pred_tags, gt, gt_tags, spacing


def test_challenge_metric_hand_computed(landmarks):
    pred, pred_tags, gt, gt_tags, spacing = _hand_case(landmarks)
    out = challenge_metric(pred, pred_tags, gt, gt_tags, spacing, landmarks)
    assert out["classes"] == challenge_classes(landmarks) == [
        "vertebra_v1", "vertebra_v2", "disc_v1", "disc_v2", "disc_v3", "disc_v4", "disc_v5"]
    assert out["rows"] == out["classes"] + ["wrong", "not_hit"]
    c = out["confusion"]
    nonzero = {(r, col): v for r, cols in c.items() for col, v in cols.items() if v}
    assert nonzero == {
        ("vertebra_v1", "vertebra_v1"): 2,
        ("vertebra_v1", "vertebra_v2"): 1,
        ("vertebra_v2", "vertebra_v2"): 1,
        ("wrong", "vertebra_v2"): 1,
        ("not_hit", "vertebra_v2"): 1,
        ("disc_v2", "disc_v1"): 1,
        ("wrong", "disc_v1"): 1,
        ("disc_v2", "disc_v2"): 1,
        ("disc_v3", "disc_v3"): 1,
        ("disc_v3", "disc_v5"): 1,
        ("not_hit", "disc_v4"): 1,
    }
    pc = out["per_class"]
    assert pc["vertebra_v1"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert pc["vertebra_v2"] == pytest.approx({"precision": 1.0, "recall": 0.25, "f1": 0.4, "support": 4})
    assert pc["disc_v1"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert pc["disc_v2"]["f1"] == pytest.approx(2 / 3) and pc["disc_v3"]["f1"] == pytest.approx(2 / 3)
    assert pc["disc_v3"]["precision"] == pytest.approx(0.5)  # the v5 column lands in row v3
    assert pc["disc_v5"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    # (0.8 + 0.4 + 0 + 2/3 + 2/3 + 0 + 0) / 7
    assert out["macro_f1"] == pytest.approx(7.6 / 21)

    # a looser threshold turns both "wrong" rows into predictions
    loose = challenge_metric(pred, pred_tags, gt, gt_tags, spacing, landmarks, threshold_mm=7.0)
    assert loose["confusion"]["wrong"]["vertebra_v2"] == 0 and loose["confusion"]["vertebra_v2"]["vertebra_v2"] == 2
    with pytest.raises(ValueError, match="not one of"):
        bad = [list(t) for t in pred_tags]
        bad[0][landmarks.index["L1"]] = "v5"
        challenge_metric(pred, bad, gt, gt_tags, spacing, landmarks)


def _class_prob_rows(landmarks, rows: dict) -> np.ndarray:
    """[K, C] class probabilities: the given rows (by identification), NaN elsewhere."""
    out = np.full((len(landmarks), landmarks.max_classes), NAN)
    for name, row in rows.items():
        out[landmarks.index[name]] = list(row) + [0.0] * (landmarks.max_classes - len(row))
    return out


def test_tags_from_class_probabilities(landmarks):
    from spinectx.data.submission import abnormal_from_class_prob, tags_from_class_prob

    probs = _class_prob_rows(landmarks, {
        "L1": [0.3, 0.7], "L2": [0.5, 0.5],                 # tie: the first (normal) class
        "T12-L1": [0.1, 0.2, 0.6, 0.1, 0.5],                # flag at exactly 0.5 is set
        "L1-L2": [0.4, 0.4, 0.1, 0.1, 0.49],
        "L2-L3": [0.05, 0.05, 0.1, 0.8, 0.9],
    })
    assert tags_from_class_prob(probs, landmarks) == ["v2", "v1", "", "", "", "v3,v5", "v1", "v4,v5", "", "", ""]
    assert tags_from_class_prob(probs, landmarks, flag_threshold=0.95)[5] == "v3"
    abnormal = abnormal_from_class_prob(probs, landmarks)
    assert abnormal[0] == pytest.approx(0.7) and abnormal[5] == pytest.approx(1 - 0.1 * 0.5)
    assert abnormal[6] == pytest.approx(1 - 0.4 * 0.51) and math.isnan(abnormal[2])
    rsna = LandmarkSet.from_config({"spinal": {"identifications": ["L1/L2", "L2/L3"], "classes": ["normal_mild", "moderate", "severe"],
                                               "class_weights": [1, 2, 4]}})
    assert tags_from_class_prob([[0.2, 0.3, 0.5], [0.7, 0.2, 0.1]], rsna) == ["severe", "normal_mild"]
    with pytest.raises(ValueError, match=r"expected \[11, 5\]"):
        tags_from_class_prob(probs[:, :2], landmarks)


def test_challenge_metric_from_predicted_classes(landmarks):
    """A multiclass model's tags ("v3,v5") against multi-tag truth: matched tags on the diagonal,
    the others under an unmatched predicted class, unmatched predicted flags as false positives."""
    from spinectx.data.submission import tags_from_class_prob

    k = len(landmarks)
    gt = np.full((1, k, 2), NAN)
    pred = np.full((1, k, 2), NAN)
    gt_tags = [[() for _ in range(k)]]
    rows = {}
    v35, v1 = [0.1, 0.1, 0.7, 0.1, 0.8], [0.9, 0.05, 0.03, 0.02, 0.1]
    plan = [  # name, truth, class probabilities, distance (px = mm)
        ("L1", ("v2",), [0.2, 0.8], 0),
        ("T12-L1", ("v3", "v5"), v35, 0),                     # both tags hit
        ("L1-L2", ("v3",), v35, 1),                           # v3 hit, v5 an extra prediction
        ("L2-L3", ("v2",), v35, 2),                           # v2 under v3, v5 extra
        ("L3-L4", ("v2", "v5"), [0.1, 0.1, 0.7, 0.1, 0.2], 0),  # predicted "v3": both tags under v3
        ("L4-L5", ("v1",), v1, 0),
        ("L5-S1", ("v4",), [0.5, 0.1, 0.1, 0.3, 0.7], 7),       # 7 mm: wrong, nothing extra
    ]
    for j, (name, tags, row, dist) in enumerate(plan):
        i = landmarks.index[name]
        gt[0, i] = (100.0, 20.0 + 40 * j)
        pred[0, i] = gt[0, i] + (dist, 0)
        gt_tags[0][i] = tags
        rows[name] = row
    pred[0, landmarks.index["L2"]] = (50, 50)  # a prediction for an unannotated landmark: ignored
    rows["L2"] = [0.1, 0.9]
    pred_tags = [tags_from_class_prob(_class_prob_rows(landmarks, rows), landmarks)]
    assert [pred_tags[0][landmarks.index[n]] for n, *_ in plan] == ["v2", "v3,v5", "v3,v5", "v3,v5", "v3", "v1", "v1,v5"]
    out = challenge_metric(pred, pred_tags, gt, gt_tags, np.ones((1, 2)), landmarks)
    nonzero = {(r, col): v for r, cols in out["confusion"].items() for col, v in cols.items() if v}
    assert nonzero == {
        ("vertebra_v2", "vertebra_v2"): 1,
        ("disc_v3", "disc_v3"): 2,
        ("disc_v5", "disc_v5"): 1,
        ("disc_v3", "disc_v2"): 2,
        ("disc_v3", "disc_v5"): 1,
        ("disc_v1", "disc_v1"): 1,
        ("wrong", "disc_v4"): 1,
    }
    assert {c: v for c, v in out["extra"].items() if v} == {"disc_v5": 2}
    pc = out["per_class"]
    assert pc["disc_v3"] == pytest.approx({"precision": 0.4, "recall": 1.0, "f1": 4 / 7, "support": 2})
    assert pc["disc_v5"] == pytest.approx({"precision": 1 / 3, "recall": 0.5, "f1": 0.4, "support": 2})
    assert out["macro_f1"] == pytest.approx((1 + 1 + 4 / 7 + 0.4) / 7)
    # the first code alone (what a one-class prediction gives) confuses the v5 of T12-L1 with v3
    first = [[t.split(",")[0] if t else t for t in pred_tags[0]]]
    single = challenge_metric(pred, first, gt, gt_tags, np.ones((1, 2)), landmarks)
    assert single["confusion"]["disc_v3"]["disc_v5"] == 2 and not any(single["extra"].values())


def test_submission_round_trip_with_class_probabilities(tmp_path, landmarks):
    from spinectx.data.submission import abnormal_from_class_prob, tags_from_class_prob

    k = len(landmarks)
    rng = np.random.default_rng(4)
    class_prob = np.zeros((k, landmarks.max_classes))
    for j, name in enumerate(landmarks.names):
        group = landmarks.group(name)
        e = len(group.exclusive)
        class_prob[j, :e] = rng.dirichlet(np.ones(e))
        class_prob[j, e:len(group.classes)] = rng.uniform(0, 1, len(group.flags))
    prob = abnormal_from_class_prob(class_prob, landmarks)
    a = _prediction("1.2.5", k, 2)
    a.prob, a.class_prob = prob, class_prob
    a.keypoints[0] = NAN
    path = write_submission(tmp_path / "pred.json", [a], landmarks)
    raw = json.loads(path.read_text())
    points = raw[0]["data"][0]["annotation"][0]["data"]["point"]
    disc = next(p for p in points if p["tag"]["identification"] == "L4-L5")
    assert list(disc["probs"]) == ["v1", "v2", "v3", "v4", "v5"] and disc["prob"] == pytest.approx(prob[9])
    assert list(points[0]["probs"]) == ["v1", "v2"]  # a vertebra: its own vocabulary only
    expected_tags = tags_from_class_prob(class_prob, landmarks)
    assert disc["tag"]["disc"] == expected_tags[9]

    problems: list[str] = []
    back = read_submission(path, landmarks, problems)["1.2.5"]
    assert problems == []
    np.testing.assert_array_equal(back.class_prob[1:], class_prob[1:])
    assert np.isnan(back.class_prob[0]).all()  # no prediction for L1
    assert [",".join(t) for t in back.tags[1:]] == expected_tags[1:]
    np.testing.assert_array_equal(back.prob[1:], prob[1:])

    # without "prob" and without a class tag: both derived from "probs", and reported
    for p in points:
        del p["prob"]
    del disc["tag"]["disc"]
    points[0]["probs"] = {"v1": 0.5}  # L2 (L1 has no point): not every class: ignored, reported
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(raw))
    problems = []
    back = read_submission(plain, landmarks, problems)["1.2.5"]
    assert back.prob[9] == pytest.approx(prob[9]) and ",".join(back.tags[9]) == expected_tags[9]
    assert np.isnan(back.class_prob[1]).all() and back.prob_from_tags  # L2: prob from its tag
    text = "\n".join(problems)
    assert "derived from 'probs'" in text and "tag derived from 'probs'" in text and "L2: probs" in text
    # no file-level class probabilities at all: class_prob stays None
    for p in points:
        p.pop("probs", None)
    plain.write_text(json.dumps(raw))
    assert read_submission(plain, landmarks)["1.2.5"].class_prob is None


def _cli_env() -> dict:
    src = str(Path(spinectx.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}


def test_score_cli_reproduces_the_training_metric(tmp_path, landmarks):
    from spinectx.data.records import build_index
    from spinectx.data.synthetic import generate_dataset

    root = tmp_path / "ds"
    gt_file = generate_dataset(root, studies=3, seed=1)
    records = build_index(root, ["lumbar_train"], landmarks).records
    assert len(records) == 3
    n, k = len(records), len(landmarks)

    # predictions: the truth moved by known distances (mm) in random directions, with chosen probs
    rng = np.random.default_rng(11)
    plan = np.array([0.0, 1.0, 2.5, 4.0, 5.5, 5.9, 6.3, 8.0, 12.0, 3.0, 25.0])
    dist = np.stack([rng.permutation(plan) for _ in range(n)])
    angle = rng.uniform(0, 2 * np.pi, size=(n, k))
    spacing = np.array([r.pixel_spacing for r in records], dtype=np.float64)  # (dy, dx)
    # one displacement that is located only when dy and dx are read the right way round: along the
    # axis of the smaller spacing in the most anisotropic of the two predicted studies
    ratio = spacing[:2].max(1) / spacing[:2].min(1)
    s_ = int(np.argmax(ratio))
    assert ratio[s_] > 1.01
    dist[s_, 0] = 6.0 / np.sqrt(ratio[s_])  # < 6 mm; > 6 mm with the spacings swapped
    angle[s_, 0] = 0.0 if spacing[s_, 1] < spacing[s_, 0] else np.pi / 2
    gt_kp = np.stack([r.keypoints for r in records]).astype(np.float64)
    pred_kp = gt_kp.copy()
    pred_kp[..., 0] += dist * np.cos(angle) / spacing[:, None, 1]
    pred_kp[..., 1] += dist * np.sin(angle) / spacing[:, None, 0]
    labels = np.array([[landmarks.encode_tags(nm, r.tags[j])[0] for j, nm in enumerate(landmarks.names)] for r in records])
    prob = np.clip(0.35 * labels + rng.uniform(0, 0.65, size=(n, k)), 0, 1)
    pred_kp[0, 3] = NAN  # one landmark without prediction
    pred_kp[2] = NAN      # the third study gets no prediction at all (left out of the file)
    prob[2] = NAN

    predictions = []
    for i, r in enumerate(records[:2]):
        tags = [(t,) if t else () for t in tags_from_prob(prob[i], landmarks)]
        if i == 1:
            tags[landmarks.index["L3-L4"]] = ("v3",)  # explicit classes pass through the file
            tags[landmarks.index["L4-L5"]] = ("v4",)
        predictions.append(StudyPrediction(r.study_uid, r.series_uid, r.instance_uid, pred_kp[i], prob[i], r.slice_index, tags))
    predictions.append(StudyPrediction("1.2.3.999", "1.2.3.999.1", "1.2.3.999.1.1", pred_kp[1], prob[1]))  # not in gt
    pred_file = write_submission(tmp_path / "pred.json", predictions, landmarks)

    # what training computes for the same predictions
    metric = TableMetric(landmarks.group_of, [g.title for g in landmarks.groups])
    annotated = np.isfinite(gt_kp).all(-1)
    metric.update(torch.from_numpy(pred_kp), torch.from_numpy(prob), torch.from_numpy(gt_kp),
                  torch.from_numpy(annotated), torch.from_numpy(labels), torch.from_numpy(spacing))
    expected = {key: float(v) for key, v in metric.compute().items()}
    # and independently of the metric code: located = planned distance <= 6 mm
    located = (dist <= 6) & np.isfinite(pred_kp).all(-1) & annotated
    for g, group in enumerate(landmarks.groups):
        in_group = np.asarray(landmarks.group_of) == g
        assert expected[f"L-{group.title}"] == pytest.approx(located[:, in_group].sum() / annotated[:, in_group].sum())
    assert 0 < expected["L-Disc"] < 1 and 0 < expected["L-Vertebra"] < 1
    assert 0 < expected["Score"] < 1
    pred_tags = [[p.tags[j][0] if p.tags[j] else None for j in range(k)] for p in read_submission(pred_file, landmarks).values()][:2]
    challenge = challenge_metric(pred_kp, pred_tags + [[None] * k], gt_kp, [r.tags for r in records], spacing, landmarks)

    out = tmp_path / "score.json"
    proc = subprocess.run(
        [sys.executable, "-m", "spinectx.cli.score", f"pred={pred_file}", f"gt={gt_file}", f"images={root}", f"out={out}"],
        cwd=tmp_path, env=_cli_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not (tmp_path / "outputs").exists() and not (tmp_path / ".hydra").exists()
    report = json.loads(out.read_text())
    for key in ("L-Disc", "L-Vertebra", "C-Disc", "C-Vertebra", "Score"):
        assert report[key] == pytest.approx(expected[key], abs=1e-6), key
    assert report["challenge"]["confusion"] == challenge["confusion"]
    assert report["challenge"]["macro_f1"] == pytest.approx(challenge["macro_f1"], abs=1e-9)
    rows = report["challenge"]["confusion"]  # every tag of a landmark not located is wrong or not_hit
    assert sum(rows["wrong"].values()) + sum(rows["not_hit"].values()) == sum(
        len(records[i].tags[j]) for i, j in zip(*np.nonzero(~located & annotated)))
    assert sum(rows["not_hit"].values()) == sum(len(records[2].tags[j]) for j in range(k)) + len(records[0].tags[3])
    assert report["studies"] == 3 and report["missing_predictions"] == 1
    assert any("1.2.3.999" in p and "not in" in p for p in report["problems"])
    assert "Score" in proc.stdout


def test_score_reports_missing_files(tmp_path, landmarks):
    from spinectx.cli.score import score_submission
    from spinectx.data.errors import DataError

    gt = tmp_path / "gt.json"
    gt.write_text("[]")
    with pytest.raises(DataError, match="pred.json: prediction file not found"):
        score_submission(tmp_path / "pred.json", gt, tmp_path, landmarks)
    (tmp_path / "pred.json").write_text("[]")
    with pytest.raises(DataError, match="images: image folder not found"):
        score_submission(tmp_path / "pred.json", gt, tmp_path / "images", landmarks)


def _strict_json(path: Path):
    """json.loads that refuses the non-standard tokens NaN / Infinity."""

    def refuse(token):
        raise ValueError(f"invalid JSON token {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _score_cli(tmp_path, pred, gt, images, out):
    return subprocess.run(
        [sys.executable, "-m", "spinectx.cli.score", f"pred={pred}", f"gt={gt}", f"images={images}", f"out={out}"],
        cwd=tmp_path, env=_cli_env(), capture_output=True, text=True, timeout=300,
    )


@pytest.fixture(scope="module")
def scored_pair(tmp_path_factory, landmarks):
    """Two generated studies with their ground truth, and a perfect submission for them."""
    from spinectx.data.records import build_index
    from spinectx.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("score_pair")
    gt_file = generate_dataset(root / "ds", studies=2, seed=5)
    records = build_index(root / "ds", ["lumbar_train"], landmarks).records
    preds = [StudyPrediction(r.study_uid, r.series_uid, r.instance_uid, r.keypoints.astype(np.float64),
                             np.array([landmarks.encode_tags(n, r.tags[j])[0] for j, n in enumerate(landmarks.names)]))
             for r in records]
    pred_file = write_submission(root / "pred.json", preds, landmarks)
    return root / "ds", gt_file, pred_file


def test_score_refuses_a_ground_truth_without_landmarks(tmp_path, scored_pair):
    images, gt_file, pred_file = scored_pair
    gt = json.loads(gt_file.read_text())
    for entry in gt:
        entry["data"][0]["annotation"] = []
    empty = tmp_path / "empty_gt.json"
    empty.write_text(json.dumps(gt))
    out = tmp_path / "score.json"
    proc = _score_cli(tmp_path, pred_file, empty, images, out)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "spinectx-score: error:" in proc.stderr and "nothing to score: no annotated ground-truth landmark" in proc.stderr
    assert "2 ground-truth studies" in proc.stderr and "0 of them scorable" in proc.stderr
    assert "no usable landmark" in proc.stderr  # why they are not scorable
    assert not out.exists()


def test_score_refuses_predictions_for_other_studies(tmp_path, scored_pair, landmarks):
    images, gt_file, _ = scored_pair
    k = len(landmarks)
    other = write_submission(tmp_path / "other.json",
                             [StudyPrediction("9.9.9", "9.9.9.1", "9.9.9.1.1", np.zeros((k, 2)), np.full(k, 0.5))], landmarks)
    out = tmp_path / "score.json"
    proc = _score_cli(tmp_path, other, gt_file, images, out)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    err = proc.stderr
    assert "nothing to score: no prediction for any scored ground-truth study" in err and str(other) in err
    assert "2 ground-truth studies" in err and "1 predicted studies" in err and "0 in common" in err
    assert not out.exists()


def test_score_writes_null_with_a_reason_for_an_undefined_auc(tmp_path, scored_pair, landmarks, capsys):
    from spinectx.cli.score import print_report, score_submission
    from spinectx.data.submission import write_json_atomic

    images, gt_file, pred_file = scored_pair
    gt = json.loads(gt_file.read_text())
    for entry in gt:  # every vertebra abnormal: C-Vertebra is undefined
        for p in entry["data"][0]["annotation"][0]["data"]["point"]:
            if "vertebra" in p["tag"]:
                p["tag"]["vertebra"] = "v2"
    one_class = tmp_path / "one_class.json"
    one_class.write_text(json.dumps(gt))
    report = score_submission(pred_file, one_class, images, landmarks)
    assert report["C-Vertebra"] is None and "fewer than two classes" in report["undefined"]["C-Vertebra"]
    assert report["L-Vertebra"] == 1.0 and report["L-Disc"] == 1.0 and report["C-Disc"] == 1.0  # perfect prediction
    assert report["Score"] == pytest.approx(1.0 * (0.0 + 1.0) / 2)  # SPEC §4: the undefined AUC counts as 0
    out = tmp_path / "score.json"
    write_json_atomic(out, report, indent=2)  # what the CLI writes
    written = _strict_json(out)
    assert written["C-Vertebra"] is None and written["undefined"] == report["undefined"]
    print_report(report, landmarks)
    shown = capsys.readouterr().out
    assert "n/a" in shown and "C-Vertebra n/a: the" in shown


def test_macro_f1_is_undefined_when_the_ground_truth_has_no_class(tmp_path, scored_pair, landmarks, capsys):
    """Locations but no class tag at all: every class has support 0, so the challenge metric has
    nothing to average. Once printed as macro-F1 0.00 with per-class zeros; now null with a reason,
    ``n/a`` when printed. The table metric (localisation) is still scored."""
    from spinectx.cli.score import print_report, score_submission
    from spinectx.data.submission import write_json_atomic

    images, gt_file, pred_file = scored_pair
    gt = json.loads(gt_file.read_text())
    for entry in gt:
        for p in entry["data"][0]["annotation"][0]["data"]["point"]:
            group = "vertebra" if "vertebra" in p["tag"] else "disc"
            p["tag"][group] = None if group == "disc" else ""
    untagged = tmp_path / "untagged.json"
    untagged.write_text(json.dumps(gt))
    report = score_submission(pred_file, untagged, images, landmarks)
    assert report["challenge"]["macro_f1"] is None and report["L-Disc"] == 1.0 and report["L-Vertebra"] == 1.0
    assert "none with a class tag" in report["undefined"]["macro-F1"]
    assert all(c["support"] == 0 and c["f1"] == 0.0 for c in report["challenge"]["per_class"].values())
    assert any("no class: tag.disc is null" in p and str(untagged) in p for p in report["problems"])  # and said so
    out = tmp_path / "score.json"
    write_json_atomic(out, report, indent=2)
    assert _strict_json(out)["challenge"]["macro_f1"] is None
    print_report(report, landmarks)
    shown = capsys.readouterr().out
    assert "macro-F1 n/a: no ground-truth class to score" in shown and "per class" not in shown
    # the metric itself: no tag anywhere → undefined; one tagged landmark → defined (absent classes count 0)
    n, k = 1, len(landmarks)
    kp, spacing = np.zeros((n, k, 2)), np.ones((n, 2))
    empty = challenge_metric(kp, [[None] * k], kp, [[()] * k], spacing, landmarks)
    assert empty["macro_f1"] is None and "1 stud" in empty["undefined"]["macro_f1"]
    one = [[()] * k]
    one[0][landmarks.index["L1"]] = ("v1",)
    defined = challenge_metric(kp, [["v1"] * k], kp, one, spacing, landmarks)
    assert defined["undefined"] == {} and defined["macro_f1"] == pytest.approx(1 / len(challenge_classes(landmarks)))


def test_a_prediction_on_another_frame_of_a_multi_frame_file_is_reported(tmp_path, scored_pair, landmarks):
    """The annotated T2 stack stored as one Enhanced MR file: a prediction naming the same instance
    but another frame (its zIndex) is a problem line, as another instance already was."""
    import shutil

    from spinectx.cli.score import score_submission
    from spinectx.data.records import build_index
    from spinectx.data.study import index_study
    from tests.test_real_world_inputs import to_enhanced

    images, gt_file, _ = scored_pair
    root = tmp_path / "ds"
    shutil.copytree(images, root)
    gt = json.loads(gt_file.read_text())
    entry = gt[0]
    folder = next(f for f in sorted((root / "lumbar_train").iterdir()) if index_study(f).study_uid == entry["studyUid"])
    stack, i = index_study(folder).locate(entry["data"][0]["instanceUid"])
    enhanced = to_enhanced(stack, folder / "enhanced.dcm", list(range(len(stack.slices))))  # frame f = slice f
    for h in stack.slices:
        Path(h.path).unlink()
    entry["data"][0]["instanceUid"] = enhanced.SOPInstanceUID
    for p in entry["data"][0]["annotation"][0]["data"]["point"]:
        p["zIndex"] = i
    gt_multi = root / "lumbar_train_annotation.json"
    gt_multi.write_text(json.dumps(gt))
    records = {r.study_uid: r for r in build_index(root, ["lumbar_train"], landmarks).records}
    assert records[entry["studyUid"]].frame_ref.frame == i

    def scored(frame):
        preds = [StudyPrediction(r.study_uid, r.series_uid, r.instance_uid, r.keypoints.astype(np.float64),
                                 np.full(len(landmarks), 0.5), z_index=frame if r.study_uid == entry["studyUid"] else None)
                 for r in records.values()]
        pred = write_submission(tmp_path / f"pred{frame}.json", preds, landmarks)
        return [p for p in score_submission(pred, gt_multi, root, landmarks)["problems"] if "frame" in p]

    assert scored(i) == []  # the annotated frame: nothing to say (and single-frame studies are never flagged)
    (line,) = scored(i + 1)
    assert f"study {entry['studyUid']} predicted on frame {i + 1} of the multi-frame instance {enhanced.SOPInstanceUID}" in line
    assert f"annotated on frame {i}" in line
    (line,) = scored(None)
    assert "without zIndex" in line and f"annotated on frame {i}" in line


def test_score_tells_the_format_from_the_prediction_file(tmp_path):
    from spinectx.cli.score import detect_format
    from spinectx.data.errors import DataError

    cases = {
        "a.json": ('[{"studyUid": "1.2.3", "data": []}]', "tianchi"),
        "bom.json": ('\ufeff\n  {"studyUid": "1"}', "tianchi"),
        "sub.csv": ("row_id,normal_mild,moderate,severe\n1_spinal_canal_stenosis_l1_l2,1,0,0\n", "rsna2024"),
        "quoted.txt": ('"row_id","normal_mild","moderate","severe"\n', "rsna2024"),
    }
    for name, (text, expected) in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert detect_format(tmp_path / name) == expected, name
    (tmp_path / "other.csv").write_text("id,prob\n1,0.5\n")
    with pytest.raises(DataError, match="other.csv: cannot tell the submission format.*format=tianchi or format=rsna2024"):
        detect_format(tmp_path / "other.csv")
    with pytest.raises(DataError, match="none.csv: prediction file not found"):
        detect_format(tmp_path / "none.csv")


def test_a_tianchi_submission_needs_images_and_reports_its_format(tmp_path, scored_pair, monkeypatch, capsys):
    """images= is optional in score.yaml (an RSNA submission needs none) but still required for TianChi."""
    from spinectx.cli import score

    images, gt_file, pred_file = scored_pair
    out = tmp_path / "score.json"
    monkeypatch.chdir(tmp_path)

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["spinectx-score", f"pred={pred_file}", f"gt={gt_file}", f"out={out}", *args])
        try:
            score.main()
        except SystemExit as stopped:
            return stopped.code, capsys.readouterr().err
        return 0, capsys.readouterr().err

    code, err = run()
    assert code == 2 and "spinectx-score: error: images: missing; give images=..." in err and "TianChi" in err
    assert not out.exists()
    code, err = run(f"images={images}", "format=tianchi")
    assert code == 0, err[-3000:]
    report = json.loads(out.read_text())
    assert report["format"] == "tianchi" and report["Score"] == pytest.approx(1.0)
