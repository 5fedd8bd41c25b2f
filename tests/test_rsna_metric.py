"""The RSNA 2024 competition metric (SPEC §6): files, hand-computed scores, the training metric, the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from spinectx.data.errors import DataError
from spinectx.metrics.rsna import (
    CLASSES,
    EPS,
    LABEL_COLUMNS,
    RSNAMetric,
    parse_row_id,
    prior_submission,
    read_submission_csv,
    read_train_csv,
    row_ids,
    rsna_score,
    solution_from_train,
)

LN3 = math.log(3)
SPELLING = {0: "Normal/Mild", 1: "Moderate", 2: "Severe"}


def train_frame(labels: dict[str, dict[str, str | None]], default: str | None = "Normal/Mild") -> pd.DataFrame:
    """A wide train.csv table: every cell ``default`` but those given per study."""
    rows = []
    for study, cells in labels.items():
        unknown = set(cells) - set(LABEL_COLUMNS)
        assert not unknown, unknown
        rows.append({"study_id": study, **{c: default for c in LABEL_COLUMNS}, **cells})
    return pd.DataFrame(rows, columns=["study_id", *LABEL_COLUMNS])


def submission(study_ids, probs=(1 / 3, 1 / 3, 1 / 3), rows: dict[str, tuple] | None = None) -> pd.DataFrame:
    """Every row of ``study_ids`` at ``probs`` but ``rows`` (full row id → probabilities)."""
    ids = row_ids(study_ids)
    values = [list((rows or {}).get(r, probs)) for r in ids]
    frame = pd.DataFrame(values, columns=list(CLASSES))
    frame.insert(0, "row_id", ids)
    return frame


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------------
# rows and tables


def test_row_ids_and_the_long_solution_table():
    ids = row_ids(["44036939", "7"])
    assert len(ids) == 50 and ids[:25] == sorted(ids[:25]) and ids[0].startswith("44036939_")
    assert "44036939_left_subarticular_stenosis_l1_l2" in ids and "7_spinal_canal_stenosis_l5_s1" in ids
    assert parse_row_id("44036939_left_subarticular_stenosis_l1_l2") == ("44036939", "left_subarticular_stenosis", "l1_l2")
    assert parse_row_id("a_b_spinal_canal_stenosis_l5_s1") == ("a_b", "spinal_canal_stenosis", "l5_s1")
    for bad in ("spinal_canal_stenosis_l5_s1", "1_spinal_canal_stenosis_l5_l6", "1_canal_l1_l2"):
        with pytest.raises(ValueError, match="not a row id"):
            parse_row_id(bad)

    train = train_frame({"1": {"spinal_canal_stenosis_l4_l5": "Severe", "left_neural_foraminal_narrowing_l1_l2": "Moderate",
                               "right_subarticular_stenosis_l2_l3": None}})
    sol = solution_from_train(train).set_index("row_id")
    assert len(sol) == 25 and list(sol.index) == sorted(sol.index)
    assert sol.loc["1_spinal_canal_stenosis_l4_l5", ["truth", "weight", "group"]].tolist() == ["severe", 4.0, "spinal"]
    assert sol.loc["1_left_neural_foraminal_narrowing_l1_l2", ["truth", "weight", "group"]].tolist() == ["moderate", 2.0, "foraminal"]
    assert sol.loc["1_right_subarticular_stenosis_l2_l3", "truth"] is None
    assert sol.loc["1_right_subarticular_stenosis_l2_l3", ["weight", "group"]].tolist() == [0.0, "subarticular"]
    assert sol.loc["1_left_subarticular_stenosis_l5_s1", ["truth", "weight", "level"]].tolist() == ["normal_mild", 1.0, "l5_s1"]
    assert sol["group"].value_counts().to_dict() == {"foraminal": 10, "subarticular": 10, "spinal": 5}


def test_train_csv_round_trip_and_refusals(tmp_path):
    frame = train_frame({"4003253": {"spinal_canal_stenosis_l1_l2": "Moderate", "left_subarticular_stenosis_l5_s1": None},
                         "4646740": {c: None for c in LABEL_COLUMNS}})
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)  # None → blank, as the competition's file
    problems: list[str] = []
    back = read_train_csv(path, problems)
    assert back["study_id"].tolist() == ["4003253", "4646740"]
    assert back.loc[0, "spinal_canal_stenosis_l1_l2"] == "Moderate" and back.loc[0, "left_subarticular_stenosis_l5_s1"] is None
    assert back.loc[1, LABEL_COLUMNS[0]] is None
    assert len(problems) == 1 and "1 stud(ies) without any label" in problems[0] and "4646740" in problems[0]
    assert solution_from_train(back)["truth"].notna().sum() == 24

    bad = frame.copy()
    bad.loc[0, "spinal_canal_stenosis_l2_l3"] = "severe"
    bad.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"train.csv: 1 unknown value\(s\).*study 4003253 spinal_canal_stenosis_l2_l3='severe'"):
        read_train_csv(path)
    frame.rename(columns={"spinal_canal_stenosis_l1_l2": "spinal_l1_l2"}).to_csv(path, index=False)
    with pytest.raises(DataError, match="missing column.*spinal_canal_stenosis_l1_l2; unknown column.*spinal_l1_l2"):
        read_train_csv(path)
    pd.concat([frame, frame.iloc[:1]]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"1 study_id\(s\) repeated: 4003253"):
        read_train_csv(path)
    with pytest.raises(DataError, match="nothing.csv: train.csv file not found"):
        read_train_csv(tmp_path / "nothing.csv")


# --------------------------------------------------------------------------------------------
# the score, by hand


def two_studies() -> pd.DataFrame:
    """Study 1: a severe spinal level (and other abnormal rows); study 2: at most moderate spinal."""
    return solution_from_train(train_frame({
        "1": {"spinal_canal_stenosis_l4_l5": "Severe", "left_neural_foraminal_narrowing_l5_s1": "Moderate",
              "right_subarticular_stenosis_l4_l5": "Severe"},
        "2": {"spinal_canal_stenosis_l3_l4": "Moderate"},
    }))


def test_uniform_submission_scores_ln3_per_group():
    out = rsna_score(submission(["1", "2"]), two_studies())
    for group in ("spinal", "foraminal", "subarticular"):
        assert out[group] == pytest.approx(LN3, rel=1e-12)
    # any severe: study 1 severe (p = 1/3, weight 4), study 2 not (p = 1/3, weight 2 = its moderate row)
    any_severe = (4 * LN3 + 2 * math.log(1.5)) / 6
    assert out["any_severe_spinal"] == pytest.approx(any_severe, rel=1e-12)
    assert out["score"] == pytest.approx((3 * LN3 + any_severe) / 4, rel=1e-12)
    assert out["rows_scored"] == 50 and out["studies_scored"] == 2
    assert out["rows_per_group"] == {"spinal": 10, "foraminal": 20, "subarticular": 20, "any_severe_spinal": 2}
    assert all(v == pytest.approx(LN3) for v in out["per_condition"].values())
    assert all(v == pytest.approx(LN3) for v in out["per_level"].values())
    assert out["undefined"] == {} and out["ignored_rows"] == 0


def test_perfect_submission_scores_about_zero():
    sol = two_studies()
    onehot = {r: tuple(float(c == t) for c in CLASSES) for r, t in zip(sol["row_id"], sol["truth"])}
    out = rsna_score(submission(["1", "2"], rows=onehot), sol)
    # 0 and 1 are clipped to ε and 1 − ε, then the row renormalised: p_true = (1 − ε) / (1 + ε)
    row_loss = -math.log((1 - EPS) / (1 + EPS))
    for group in ("spinal", "foraminal", "subarticular"):
        assert out[group] == pytest.approx(row_loss, rel=1e-3)
    assert out["any_severe_spinal"] == pytest.approx(-math.log1p(-EPS), rel=1e-3)  # max severe 1 − ε / ε
    assert 0 < out["score"] < 1e-14


def test_one_severe_spinal_row_changes_the_any_severe_term():
    labels = {"1": {}, "2": {}}
    probs = (0.6, 0.3, 0.1)
    base = rsna_score(submission(["1", "2"], probs), solution_from_train(train_frame(labels)))
    assert base["any_severe_spinal"] == pytest.approx(-math.log(0.9))  # no severe anywhere, every weight 1
    labels["1"]["spinal_canal_stenosis_l2_l3"] = "Severe"
    sol = solution_from_train(train_frame(labels))
    one = rsna_score(submission(["1", "2"], probs), sol)
    # study 1 now severe: −ln 0.1 with weight 4; study 2 unchanged: −ln 0.9 with weight 1
    assert one["any_severe_spinal"] == pytest.approx((4 * -math.log(0.1) + -math.log(0.9)) / 5)
    assert one["spinal"] == pytest.approx((9 * -math.log(0.6) + 4 * -math.log(0.1)) / 13)
    assert one["foraminal"] == base["foraminal"] and one["subarticular"] == base["subarticular"]
    # the prediction is the study's largest severe value (another level's, here)
    raised = submission(["1", "2"], probs, rows={"1_spinal_canal_stenosis_l5_s1": (0.2, 0.1, 0.7)})
    assert rsna_score(raised, sol)["any_severe_spinal"] == pytest.approx((4 * -math.log(0.7) + -math.log(0.9)) / 5)


def test_rows_are_clipped_then_renormalised_but_any_severe_takes_the_value_as_submitted():
    sol = solution_from_train(train_frame({"1": {"spinal_canal_stenosis_l1_l2": "Severe"}}))
    rows = {
        "1_spinal_canal_stenosis_l1_l2": (0.0, 0.0, 3.0),        # severe, true: 3 → 1 − ε, 0 → ε
        "1_spinal_canal_stenosis_l2_l3": (2.0, 1.0, 1.0),        # clipped first: all 1 − ε, so p(normal) = 1/3
        "1_spinal_canal_stenosis_l3_l4": (0.0, 1.0, 0.0),        # normal_mild true at ε / (1 + ε)
        "1_spinal_canal_stenosis_l4_l5": (0.2, 0.2, 0.1),        # sum 0.5: p(normal) = 0.4
        "1_spinal_canal_stenosis_l5_s1": (0.6, 0.3, 0.3),        # sum 1.2: p(normal) = 0.5
    }
    problems: list[str] = []
    out = rsna_score(submission(["1"], rows=rows), sol, problems=problems)
    nll = [-math.log((1 - EPS) / (1 + EPS)), LN3, -math.log(EPS / (1 + EPS)), -math.log(0.4), math.log(2)]
    assert out["spinal"] == pytest.approx((4 * nll[0] + sum(nll[1:])) / 8, rel=1e-12)
    assert out["spinal"] > 4  # the ε row dominates: −ln ε ≈ 36
    notice = next(p for p in problems if "do not sum to 1" in p)  # every row but (0, 1, 0)
    assert notice.split(": ", 1)[1].startswith("4 row(s)") and "1_spinal_canal_stenosis_l1_l2" in notice
    # any severe: truth severe, max of the *submitted* severe values clipped: 3 → 1 − ε
    assert out["any_severe_spinal"] == pytest.approx(-math.log(1 - EPS), rel=1e-3)
    # as submitted, not renormalised: a study without severe whose row (2, 1, 1) carries severe = 1
    no_severe = solution_from_train(train_frame({"1": {}}))
    unnormalised = submission(["1"], rows={"1_spinal_canal_stenosis_l2_l3": (2.0, 1.0, 1.0)})
    # renormalised it would be 0.25 (−ln 0.75); as submitted 1 → 1 − ε, so −ln ε
    assert rsna_score(unnormalised, no_severe)["any_severe_spinal"] == pytest.approx(-math.log(EPS), rel=1e-9)


def test_group_terms_match_sklearn_log_loss_on_a_normalised_submission():
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(4)
    studies = [str(s) for s in range(100, 106)]
    labels = {s: {c: (SPELLING[int(rng.choice(3, p=[0.6, 0.25, 0.15]))] if rng.random() > 0.1 else None)
                  for c in LABEL_COLUMNS} for s in studies}
    sol = solution_from_train(train_frame(labels))
    sub = submission(studies)
    sub[list(CLASSES)] = rng.dirichlet([2, 1, 1], size=len(sub))
    out = rsna_score(sub, sol)
    merged = sol[sol["truth"].notna()].merge(sub, on="row_id")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # sklearn renames y_pred; positional works across versions
        for group in ("spinal", "foraminal", "subarticular"):
            g = merged[merged["group"] == group]
            expected = log_loss(g["truth"].map(CLASSES.index), g[list(CLASSES)].to_numpy(), sample_weight=g["weight"],
                                labels=[0, 1, 2])
            assert out[group] == pytest.approx(expected, rel=1e-9), group
        spinal = merged[merged["group"] == "spinal"].groupby("study_id")
        y = spinal["truth"].apply(lambda t: (t == "severe").any())
        expected = log_loss(y, spinal["severe"].max(), sample_weight=spinal["weight"].max(), labels=[False, True])
    assert out["any_severe_spinal"] == pytest.approx(expected, rel=1e-9)


def test_blank_truths_are_not_scored(tmp_path):
    labels = {"1": {"spinal_canal_stenosis_l1_l2": None, "left_subarticular_stenosis_l3_l4": None,
                    "spinal_canal_stenosis_l2_l3": "Severe"}}
    sol = solution_from_train(train_frame(labels))
    probs = (0.7, 0.2, 0.1)
    out = rsna_score(submission(["1"], probs), sol)
    # whatever is submitted for the blank rows changes nothing, also a very high severe (any-severe term)
    other = rsna_score(submission(["1"], probs, rows={"1_spinal_canal_stenosis_l1_l2": (0.0, 0.0, 1.0),
                                                      "1_left_subarticular_stenosis_l3_l4": (0.0, 1.0, 0.0)}), sol)
    for key in ("score", "spinal", "subarticular", "any_severe_spinal"):
        assert other[key] == out[key], key
    assert out["rows_scored"] == 23 and out["rows_per_group"]["spinal"] == 4
    assert out["spinal"] == pytest.approx((3 * -math.log(0.7) + 4 * -math.log(0.1)) / 7)
    # a blank row may even be missing from the submission: said, not refused
    sub = submission(["1"], probs)
    problems: list[str] = []
    dropped = rsna_score(sub[sub["row_id"] != "1_spinal_canal_stenosis_l1_l2"], sol, problems)
    assert dropped["score"] == out["score"]
    assert any("1 row(s) missing whose truth is blank" in p and "1_spinal_canal_stenosis_l1_l2" in p for p in problems)


def test_a_group_without_scored_rows_is_left_out_of_the_mean():
    probs = (0.5, 0.3, 0.2)
    blank_sub = {c: None for c in LABEL_COLUMNS if "subarticular" in c}
    out = rsna_score(submission(["1"], probs), solution_from_train(train_frame({"1": blank_sub})))
    assert math.isnan(out["subarticular"]) and "no subarticular row" in out["undefined"]["subarticular"]
    assert out["rows_per_group"]["subarticular"] == 0
    nll = -math.log(0.5)
    assert out["spinal"] == pytest.approx(nll) and out["any_severe_spinal"] == pytest.approx(-math.log(0.8))
    assert out["score"] == pytest.approx((nll + nll + -math.log(0.8)) / 3)
    assert math.isnan(out["per_condition"]["left_subarticular_stenosis"])
    # no spinal label: the spinal term and the any-severe term are both left out
    blank_spinal = {c: None for c in LABEL_COLUMNS if c.startswith("spinal")}
    out = rsna_score(submission(["1"], probs), solution_from_train(train_frame({"1": blank_spinal})))
    assert math.isnan(out["spinal"]) and math.isnan(out["any_severe_spinal"])
    assert out["rows_per_group"]["any_severe_spinal"] == 0 and out["score"] == pytest.approx(nll)
    # nothing at all to score
    with pytest.raises(DataError, match="gt.csv: nothing to score"):
        rsna_score(submission(["1"]), solution_from_train(train_frame({"1": {}}, default=None)), solution_name="gt.csv")


def test_per_condition_and_per_level_breakdowns():
    sol = solution_from_train(train_frame({"1": {"spinal_canal_stenosis_l4_l5": "Severe",
                                                 "left_neural_foraminal_narrowing_l4_l5": "Moderate"}}))
    out = rsna_score(submission(["1"], (0.8, 0.1, 0.1)), sol)
    a, b = -math.log(0.8), -math.log(0.1)
    assert out["per_condition"]["left_neural_foraminal_narrowing"] == pytest.approx((4 * a + 2 * b) / 6)
    assert out["per_condition"]["right_neural_foraminal_narrowing"] == pytest.approx(a)
    assert out["per_condition"]["spinal_canal_stenosis"] == pytest.approx((4 * a + 4 * b) / 8)
    assert out["per_level"]["l4_l5"] == pytest.approx((4 * b + 2 * b + 3 * a) / 9)
    assert out["per_level"]["l1_l2"] == pytest.approx(a)
    assert out["spinal"] == out["per_condition"]["spinal_canal_stenosis"]
    assert out["foraminal"] == pytest.approx((9 * a + 2 * b) / 11)
    assert out["rows_per_level"] == dict.fromkeys(["l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1"], 5)
    assert out["rows_per_condition"]["spinal_canal_stenosis"] == 5


def test_missing_and_foreign_rows():
    sol = two_studies()
    sub = submission(["1", "2", "999"])
    problems: list[str] = []
    out = rsna_score(sub, sol, problems, submission_name="sub.csv", solution_name="train.csv")
    assert out["ignored_rows"] == 25 and out["ignored_studies"] == 1
    assert problems == ["sub.csv: 25 row(s) of 1 stud(ies) not in train.csv ignored: 999"]
    drop = ["2_spinal_canal_stenosis_l1_l2", "1_left_subarticular_stenosis_l2_l3"]
    with pytest.raises(DataError, match=r"sub.csv: 2 row\(s\) missing that train.csv scores .*every row.*"
                                        r"1_left_subarticular_stenosis_l2_l3, 2_spinal_canal_stenosis_l1_l2"):
        rsna_score(sub[~sub["row_id"].isin(drop)], sol, submission_name="sub.csv", solution_name="train.csv")


# --------------------------------------------------------------------------------------------
# the submission file


HEADER = "row_id,normal_mild,moderate,severe\n"


def test_read_submission_csv(tmp_path):
    sub = submission(["44036939"], (0.5, 0.3, 0.2))
    path = tmp_path / "submission.csv"
    sub.assign(extra=1).to_csv(path, index=False)
    problems: list[str] = []
    back = read_submission_csv(path, problems)
    assert list(back.columns) == ["row_id", *CLASSES] and back["row_id"].tolist() == sub["row_id"].tolist()
    np.testing.assert_array_equal(back[list(CLASSES)].to_numpy(), sub[list(CLASSES)].to_numpy())
    assert problems == [f"{path}: column(s) extra ignored"]


@pytest.mark.parametrize(("body", "message"), [
    ("1_spinal_canal_stenosis_l1_l2,0.5,0.5\n", "missing column(s) severe"),
    ("1_spinal_canal_stenosis_l1_l2,0.5,0.3,0.2\n1_spinal_canal_stenosis_l1_l2,0.5,0.3,0.2\n",
     "1 row_id(s) repeated: 1_spinal_canal_stenosis_l1_l2"),
    ("1_spinal_canal_stenosis_l1_l2,0.5,0.3,0.2\n1_spinal_canal_stenosis_l2_l3,0.5,-0.1,0.6\n",
     "1 row(s) with a negative value: 1_spinal_canal_stenosis_l2_l3"),
    ("1_spinal_canal_stenosis_l1_l2,NaN,0.3,0.2\n1_spinal_canal_stenosis_l2_l3,0.5,0.3,0.2\n",
     "1 row(s) with a blank or non-finite value (NaN, inf): 1_spinal_canal_stenosis_l1_l2"),
    ("1_spinal_canal_stenosis_l1_l2,0.5,inf,0.2\n1_spinal_canal_stenosis_l2_l3,0.5,,0.2\n",
     "2 row(s) with a blank or non-finite value (NaN, inf): 1_spinal_canal_stenosis_l1_l2, 1_spinal_canal_stenosis_l2_l3"),
    ("1_spinal_canal_stenosis_l1_l2,0.5,high,0.2\n", "1 row(s) with a value that is not a number: 1_spinal_canal_stenosis_l1_l2"),
    ("1_spinal_canal_stenosis_l1_l2,0,0,0\n", "1 row(s) whose values sum to 0"),
    ("1_spinal_stenosis_l1_l2,0.5,0.3,0.2\n", "1 row_id(s) not of the form {study_id}_{condition}_{level}"),
    (",0.5,0.3,0.2\n", "blank row_id on line(s) 2"),
    ("", "no row"),
])
def test_submission_refusals_name_the_rows(tmp_path, body, message):
    header = "row_id,normal_mild,moderate\n" if "missing column" in message else HEADER
    path = write_csv(tmp_path / "sub.csv", header + body)
    with pytest.raises(DataError) as caught:
        read_submission_csv(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)


def test_many_offending_rows_are_named_a_few_then_counted(tmp_path):
    ids = row_ids(["5", "6"])
    body = "".join(f"{r},0.5,-1,0.5\n" for r in ids)
    with pytest.raises(DataError, match=r"50 row\(s\) with a negative value: 5_left\S+, .*, … \(50 in all\)"):
        read_submission_csv(write_csv(tmp_path / "sub.csv", HEADER + body))
    with pytest.raises(DataError, match="malformed CSV"):
        read_submission_csv(write_csv(tmp_path / "bad.csv", HEADER + '"1_spinal_canal_stenosis_l1_l2,0.5\n'))


# --------------------------------------------------------------------------------------------
# the prior baseline


def test_prior_submission_rows_equal_the_training_frequencies():
    col = "spinal_canal_stenosis_l4_l5"
    blank_col = "left_subarticular_stenosis_l1_l2"
    train = train_frame({
        "1": {col: "Normal/Mild", blank_col: None},
        "2": {col: "Moderate", blank_col: None},
        "3": {col: "Severe", blank_col: None},
        "4": {col: "Severe", blank_col: None},
        "5": {col: None, blank_col: None},   # blank: not counted
    })
    prior = prior_submission(train, ["9", "8", "9"])
    assert len(prior) == 50 and prior["row_id"].tolist() == sorted(row_ids(["8", "9"]))
    rows = prior.set_index("row_id")
    np.testing.assert_allclose(rows.loc[f"8_{col}"], [0.25, 0.25, 0.5])
    np.testing.assert_allclose(rows.loc[f"9_{blank_col}"], [1 / 3, 1 / 3, 1 / 3])  # never labelled: uniform
    np.testing.assert_allclose(rows.loc["9_right_neural_foraminal_narrowing_l2_l3"], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(rows.sum(axis=1), 1.0)
    smoothed = prior_submission(solution_from_train(train), ["8"], pseudo_count=1).set_index("row_id")  # long table too
    np.testing.assert_allclose(smoothed.loc[f"8_{col}"], [2 / 7, 2 / 7, 3 / 7])
    np.testing.assert_allclose(smoothed.loc["8_right_neural_foraminal_narrowing_l2_l3"], [6 / 8, 1 / 8, 1 / 8])
    # scored against the four labelled training studies: l4/l5 rows at ln 4 (weights 1, 2) and ln 2 (4, 4); the
    # other 16 spinal rows always normal_mild, predicted (1, 0, 0): clipped, renormalised, −ln((1 − ε) / (1 + ε))
    out = rsna_score(prior_submission(train, ["1", "2", "3", "4"]), solution_from_train(train.iloc[:4]))
    certain = -math.log((1 - EPS) / (1 + EPS))
    assert out["per_condition"]["spinal_canal_stenosis"] == pytest.approx(
        (1 * math.log(4) + 2 * math.log(4) + 2 * 4 * math.log(2) + 16 * certain) / (1 + 2 + 8 + 16), rel=1e-9)
    with pytest.raises(ValueError, match="pseudo_count"):
        prior_submission(train, ["1"], pseudo_count=-1)


# --------------------------------------------------------------------------------------------
# the training metric


def _random_view(n_samples: int, k: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    prob = torch.softmax(torch.randn(n_samples, k, 3, generator=g) * 2, dim=-1)
    target = torch.multinomial(torch.tensor([0.45, 0.25, 0.15, 0.15]), n_samples * k, replacement=True, generator=g)
    target = target.reshape(n_samples, k) - 1  # −1 = blank
    target[0] = -1  # a sample without any labelled row
    target[1, 2] = 2  # and some severe rows
    dist = torch.rand(n_samples, k, generator=g) * 12
    return prob, target, dist


def _score_view(prob, target, columns: list[list[str]], study_of: list[str]) -> dict:
    """rsna_score on the rows that the per-sample tensors describe."""
    labels: dict[str, dict] = {s: {} for s in study_of}
    sub_rows = {}
    for i, study in enumerate(study_of):
        for j, column in enumerate(columns[i]):
            t = int(target[i, j])
            labels[study][column] = SPELLING[t] if t >= 0 else None
            sub_rows[f"{study}_{column}"] = tuple(prob[i, j].double().tolist())
    sol = solution_from_train(train_frame(labels, default=None))
    return rsna_score(submission(list(labels), rows=sub_rows), sol)


def test_rsna_metric_equals_the_score_group_term():
    levels = ["l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1"]
    # spinal view: one sample per study, 5 levels
    prob, target, dist = _random_view(6, 5, seed=0)
    metric = RSNAMetric(any_severe=True)
    metric.update(prob[:3], target[:3], dist[:3])
    metric.update(prob[3:], target[3:], dist[3:])
    got = {k: float(v) for k, v in metric.compute().items()}
    ref = _score_view(prob, target, [[f"spinal_canal_stenosis_{lv}" for lv in levels]] * 6, [f"s{i}" for i in range(6)])
    assert got["logloss"] == pytest.approx(ref["spinal"], rel=1e-12)
    assert got["any_severe"] == pytest.approx(ref["any_severe_spinal"], rel=1e-12)
    assert got["score"] == pytest.approx((ref["spinal"] + ref["any_severe_spinal"]) / 2, rel=1e-12)
    assert got["rows"] == ref["rows_per_group"]["spinal"] == int((target >= 0).sum())
    assert got["hit_rate"] == pytest.approx(float((dist <= 6).double().mean()))
    # foraminal view: a sample per side, 5 levels each; its log loss is the foraminal group term
    prob, target, dist = _random_view(8, 5, seed=1)
    columns = [[f"{'left' if i % 2 == 0 else 'right'}_neural_foraminal_narrowing_{lv}" for lv in levels] for i in range(8)]
    metric = RSNAMetric()
    metric.update(prob, target, dist)
    got = {k: float(v) for k, v in metric.compute().items()}
    ref = _score_view(prob, target, columns, [f"s{i // 2}" for i in range(8)])
    assert set(got) == {"logloss", "score", "hit_rate", "rows"}
    assert got["logloss"] == got["score"] == pytest.approx(ref["foraminal"], rel=1e-12)


def test_rsna_metric_hit_rate_clipping_and_undefined_values(caplog):
    metric = RSNAMetric(radius_mm=6.0)
    prob = torch.tensor([[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]]], dtype=torch.float64)
    target = torch.tensor([[0, -1, 1]])
    dist = torch.tensor([[6.0, float("nan"), float("inf")]])  # hit, no true point, no prediction
    metric.update(prob, target, dist)
    out = metric.compute()
    row0 = -math.log((1 - EPS) / (1 + EPS))
    assert float(out["logloss"]) == pytest.approx((row0 + 2 * -math.log(0.3)) / 3, rel=1e-12)
    assert float(out["hit_rate"]) == 0.5 and float(out["rows"]) == 2
    empty = RSNAMetric(any_severe=True)
    empty.update(prob, torch.full((1, 3), -1), torch.full((1, 3), float("nan")))
    with caplog.at_level("WARNING", logger="spinectx.metrics"):
        out = empty.compute()
    for key in ("logloss", "any_severe", "score", "hit_rate"):
        assert math.isnan(float(out[key])), key
    assert float(out["rows"]) == 0 and "no row with a class target" in empty.undefined["logloss"]
    assert "RSNA metric undefined" in caplog.text
    with pytest.raises(ValueError, match=r"expected prob \[B, K, 3\]"):
        metric.update(prob[..., :2], target, dist)
    with pytest.raises(ValueError, match="targets must be −1"):
        metric.update(prob, torch.tensor([[0, 3, 1]]), dist)


def test_rsna_metric_merges_like_ddp_processes():
    prob, target, dist = _random_view(10, 5, seed=2)
    whole = RSNAMetric(any_severe=True)
    whole.update(prob, target, dist)
    a, b = RSNAMetric(any_severe=True), RSNAMetric(any_severe=True)
    a.update(prob[:7], target[:7], dist[:7])
    b.update(prob[7:], target[7:], dist[7:])
    a.merge_state(b)  # what torchmetrics' cat reduction does across processes
    expected = whole.compute()
    for key, value in a.compute().items():
        assert float(value) == pytest.approx(float(expected[key]), rel=1e-12), key


def _ddp_worker(rank: int, store: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        prob, target, distance = _random_view(9, 5, seed=3)
        if rank == 0:
            part = slice(0, 6)
            mine = (prob[part], target[part], distance[part])
        else:  # the other process sees only blank rows and landmarks without a true point
            mine = (prob[6:], torch.full_like(target[6:], -1), torch.full_like(distance[6:], float("nan")))
        metric = RSNAMetric(any_severe=True)
        metric.update(*mine)
        out = {k: float(v) for k, v in metric.compute().items()}  # compute() syncs across processes
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(out))
    finally:
        dist.destroy_process_group()


def test_rsna_metric_syncs_across_two_processes(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    prob, target, distance = _random_view(9, 5, seed=3)
    whole = RSNAMetric(any_severe=True)
    whole.update(prob[:6], target[:6], distance[:6])
    expected = {k: float(v) for k, v in whole.compute().items()}
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got == pytest.approx(expected, rel=1e-12), rank


# --------------------------------------------------------------------------------------------
# the command


def _cli_env() -> dict:
    import os

    import spinectx

    src = str(Path(spinectx.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}


def test_score_cli_on_hand_written_csvs(tmp_path, monkeypatch, capsys):
    header = "study_id," + ",".join(LABEL_COLUMNS)
    cells = ["Normal/Mild"] * 25
    severe = list(cells)
    severe[LABEL_COLUMNS.index("spinal_canal_stenosis_l4_l5")] = "Severe"
    severe[LABEL_COLUMNS.index("left_subarticular_stenosis_l1_l2")] = ""
    gt = write_csv(tmp_path / "train.csv", "\n".join([header, "11," + ",".join(severe), "12," + ",".join(cells)]) + "\n")
    lines = [f"{r},0.3333333333333333,0.3333333333333333,0.3333333333333333" for r in row_ids(["11", "12", "13"])]
    pred = write_csv(tmp_path / "submission.csv", HEADER + "\n".join(lines) + "\n")
    out = tmp_path / "score.json"
    proc = subprocess.run([sys.executable, "-m", "spinectx.cli.score", f"pred={pred}", f"gt={gt}", f"out={out}"],
                          cwd=tmp_path, env=_cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["format"] == "rsna2024"
    for key in ("spinal", "foraminal", "subarticular"):
        assert report[key] == pytest.approx(LN3, rel=1e-9)
    any_severe = (4 * LN3 + 1 * math.log(1.5)) / 5
    assert report["any_severe_spinal"] == pytest.approx(any_severe, rel=1e-9)
    assert report["score"] == pytest.approx((3 * LN3 + any_severe) / 4, rel=1e-9)
    assert set(report["per_condition"]) == {"spinal_canal_stenosis", "left_neural_foraminal_narrowing",
                                            "right_neural_foraminal_narrowing", "left_subarticular_stenosis",
                                            "right_subarticular_stenosis"}
    assert set(report["per_level"]) == {"l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1"}
    assert report["rows_scored"] == 49 and report["studies_scored"] == 2 and report["submission_rows"] == 75
    assert report["ignored_studies"] == 1 and report["ignored_rows"] == 25 and report["gt_studies"] == 2
    assert any("13" in p and "not in" in p and "ignored" in p for p in report["problems"])
    assert "any_severe_spinal" in proc.stdout and f"{LN3:.4f}" in proc.stdout and "per level" in proc.stdout
    assert not (tmp_path / "outputs").exists()

    # refused submissions: exit 2, the file and the rows named, nothing written (in this process: faster)
    from spinectx.cli import score

    out.unlink()
    monkeypatch.chdir(tmp_path)

    def refused(text: str, *extra: str) -> str:
        pred.write_text(text)
        monkeypatch.setattr(sys, "argv", ["spinectx-score", f"pred={pred}", f"gt={gt}", f"out={out}", *extra])
        with pytest.raises(SystemExit) as stopped:
            score.main()
        err = capsys.readouterr().err
        assert stopped.value.code == 2 and "Traceback" not in err and not out.exists(), err[-3000:]
        return err

    err = refused(HEADER + "\n".join(lines + lines[:1]) + "\n", "format=rsna2024")
    assert f"spinectx-score: error: {pred}: 1 row_id(s) repeated: 11_left_neural_foraminal_narrowing_l1_l2" in err
    err = refused(HEADER + "\n".join(line for line in lines if not line.startswith("12_spinal_canal_stenosis_l2_l3")))
    assert f"spinectx-score: error: {pred}: 1 row(s) missing that {gt} scores" in err and "12_spinal_canal_stenosis_l2_l3" in err
    err = refused(HEADER + lines[0].replace("0.3333333333333333", "-1", 1) + "\n")
    assert f"{pred}: 1 row(s) with a negative value: 11_left_neural_foraminal_narrowing_l1_l2" in err
    err = refused(HEADER + "\n".join(lines) + "\n", "format=kaggle")
    assert "spinectx-score: error: format must be one of auto, tianchi, rsna2024, got 'kaggle'" in err
