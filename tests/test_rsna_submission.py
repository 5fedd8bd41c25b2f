"""RSNA 2024 submission assembly (src/spinectx/data/rsna_submission.py): every row of every study,
sorted and normalised, the training prior (with its reason) for rows the model could not predict,
the prior of each view's checkpoint mapped to label columns, and a file the scorer accepts."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from spinectx.data.rsna_submission import assemble_submission, view_prior_columns, write_submission
from spinectx.metrics.rsna import LABEL_COLUMNS, read_submission_csv, rsna_score, solution_from_train

LEVEL_NAMES = ["L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1"]
PRIOR = {column: [0.7, 0.2, 0.1] for column in LABEL_COLUMNS}


def test_every_row_of_every_study_sorted_and_normalised():
    predicted = {"20_spinal_canal_stenosis_l4_l5": [2.0, 1.0, 1.0],  # normalised here
                 "3_left_subarticular_stenosis_l1_l2": [0.1, 0.1, 0.8]}
    frame, problems = assemble_submission(["20", "3"], predicted, PRIOR, {"3_spinal_canal_stenosis_l1_l2": "series missing"})
    assert len(frame) == 50 and list(frame.row_id) == sorted(frame.row_id) and frame.row_id.is_unique
    assert list(frame.columns) == ["row_id", "normal_mild", "moderate", "severe"]
    np.testing.assert_allclose(frame[["normal_mild", "moderate", "severe"]].sum(1), 1.0)
    row = frame.set_index("row_id").loc["20_spinal_canal_stenosis_l4_l5"]
    assert row.tolist() == pytest.approx([0.5, 0.25, 0.25])
    # 48 rows from the prior, each with its reason
    assert len(problems) == 48
    reason = {p["row_id"]: p["reason"] for p in problems}
    assert reason["3_spinal_canal_stenosis_l1_l2"] == "series missing" and reason["20_spinal_canal_stenosis_l1_l2"] == "no prediction"
    assert frame.set_index("row_id").loc["3_spinal_canal_stenosis_l1_l2"].tolist() == pytest.approx([0.7, 0.2, 0.1])


def test_unusable_model_output_falls_back_to_the_prior_with_the_reason():
    bad = {"1_spinal_canal_stenosis_l1_l2": [math.nan, 0.5, 0.5], "1_spinal_canal_stenosis_l2_l3": [-1.0, 1.0, 1.0],
           "1_spinal_canal_stenosis_l3_l4": [0.0, 0.0, 0.0]}
    frame, problems = assemble_submission(["1"], bad, PRIOR)
    reasons = {p["row_id"]: p["reason"] for p in problems}
    assert all(reasons[r].startswith("model output unusable") for r in bad)
    np.testing.assert_allclose(frame.set_index("row_id").loc[list(bad)].to_numpy(), [[0.7, 0.2, 0.1]] * 3)
    uniform, _ = assemble_submission(["1"], {}, {})  # no prior for a column: uniform
    np.testing.assert_allclose(uniform[["normal_mild", "moderate", "severe"]].to_numpy(), 1 / 3)


def test_rows_of_other_studies_or_malformed_ids_are_refused():
    with pytest.raises(ValueError, match="studies not asked for"):
        assemble_submission(["1"], {"2_spinal_canal_stenosis_l1_l2": [1, 0, 0]}, PRIOR)
    with pytest.raises(ValueError, match="not a row id"):
        assemble_submission(["1"], {"1_spinal_canal_stenosis_l6_s1": [1, 0, 0]}, PRIOR)


def test_view_priors_map_onto_the_label_columns():
    spinal = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.6, 0.2, 0.2], [0.5, 0.3, 0.2]])
    columns = view_prior_columns("spinal", LEVEL_NAMES, spinal)
    assert set(columns) == {c for c in LABEL_COLUMNS if c.startswith("spinal")}
    assert columns["spinal_canal_stenosis_l4_l5"] == pytest.approx([0.6, 0.2, 0.2])
    foraminal = view_prior_columns("foraminal", LEVEL_NAMES[::-1], spinal)  # order of the checkpoint's landmarks
    assert foraminal["left_neural_foraminal_narrowing_l5_s1"] == foraminal["right_neural_foraminal_narrowing_l5_s1"] \
        == pytest.approx([0.9, 0.05, 0.05])
    sub = view_prior_columns("subarticular", ["left", "right"], [[0.6, 0.3, 0.1, 0.0], [0.5, 0.4, 0.1, 0.0]])
    assert len(sub) == 10 and sub["right_subarticular_stenosis_l2_l3"] == pytest.approx([0.5, 0.4, 0.1])
    assert set(columns) | set(foraminal) | set(sub) == set(LABEL_COLUMNS)
    with pytest.raises(ValueError, match="left/right"):
        view_prior_columns("subarticular", LEVEL_NAMES, spinal)
    with pytest.raises(ValueError, match="unknown view"):
        view_prior_columns("axial", LEVEL_NAMES, spinal)


def test_the_written_file_is_what_the_scorer_reads(tmp_path):
    train = pd.DataFrame({"study_id": ["1", "2"], **{c: ["Normal/Mild", "Severe"] for c in LABEL_COLUMNS}})
    predicted = {f"2_{c}": [0.0, 0.0, 1.0] for c in LABEL_COLUMNS}
    frame, problems = assemble_submission(["1", "2"], predicted, PRIOR)
    csv, sidecar = write_submission(frame, problems, tmp_path / "out" / "submission.csv")
    assert csv.name == "submission.csv" and sidecar.name == "submission.problems.json"
    back = read_submission_csv(csv)
    assert len(back) == 50
    side = json.loads(sidecar.read_text())
    assert side["rows_from_prior"] == 25 and {p["row_id"].split("_")[0] for p in side["problems"]} == {"1"}
    scored = rsna_score(back, solution_from_train(train))
    assert scored["rows_scored"] == 50
    # study 2 perfect, study 1 at the prior's 0.7 for its normal rows
    assert scored["spinal"] == pytest.approx(-math.log(0.7) * 5 / (5 + 5 * 4) + 0.0, abs=1e-4)
    assert not list(tmp_path.glob("out/.*.tmp"))
