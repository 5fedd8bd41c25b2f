"""Study-level RSNA prediction (src/spinectx/rsna_inference.py) with three briefly trained view
checkpoints on generated studies: every study gives 25 rows (predicted or the prior with a reason),
the points come from the right series, the subarticular slice is the level's nearest axial slice,
and only the slices used are decoded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spinectx.data.geometry import nearest_slice, pixel_to_patient
from spinectx.data.rsna import SERIES_OF_VIEW as DESCRIPTIONS
from spinectx.data.rsna_submission import assemble_submission, view_prior_columns
from spinectx.inference import load_module
from spinectx.metrics.rsna import read_submission_csv, row_ids, rsna_score, solution_from_train
from spinectx.rsna_inference import predict_study, read_study_stacks
from tests.test_rsna_on_synthetic import quirk_study
from tests.test_train import make_cfg

VIEWS = ("spinal", "foraminal", "subarticular")
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, synthetic_rsna_root) -> dict[str, Path]:
    """One briefly trained checkpoint per view (1 step each)."""
    from spinectx.cli.train import train

    out = {}
    for view in VIEWS:
        tmp = tmp_path_factory.mktemp(f"ckpt_{view}")
        cfg = make_cfg(tmp, synthetic_rsna_root, ["data=rsna2024", f"data.view={view}", "data.num_folds=3",
                                                  "trainer.max_epochs=1", "+trainer.limit_train_batches=1",
                                                  "evaluate=false", "overlay_studies=0"])
        train(cfg)
        out[view] = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    return out


@pytest.fixture(scope="module")
def modules(checkpoints):
    return {view: load_module(path, "cpu") for view, path in checkpoints.items()}


def descriptions(root: Path) -> dict[str, str]:
    frame = pd.read_csv(root / "train_series_descriptions.csv", dtype=str)
    return dict(zip(frame.series_id, frame.series_description))


def test_every_study_gives_its_25_rows_and_a_submission_that_scores(modules, synthetic_rsna_root, tmp_path):
    root = synthetic_rsna_root
    desc = descriptions(root)
    studies = sorted(p.name for p in (root / "train_images").iterdir() if p.is_dir())
    results = {s: predict_study(root / "train_images" / s, modules, desc) for s in studies}
    prior = {}
    for view, module in modules.items():
        prior.update(view_prior_columns(view, module.landmarks.names, module.class_prior))
    predicted = {r: p for res in results.values() for r, p in res.rows.items()}
    reasons = {r: why for res in results.values() for r, why in res.reasons.items()}
    frame, problems = assemble_submission(studies, predicted, prior, reasons)
    assert len(frame) == 25 * len(studies) and list(frame.row_id) == sorted(frame.row_id)
    for res in results.values():  # each row is predicted or has its reason, never both, never neither
        assert not set(res.rows) & set(res.reasons) and len(res.rows) + len(res.reasons) == 25
        assert len(res.points) == len(res.rows)
    # the study whose series is missing on disk: that view's rows take the prior, saying why
    gone = results[quirk_study(root, "missing_series")]
    assert 5 <= len(gone.reasons) and all("series in" in why or "spinal prediction" in why for why in gone.reasons.values())
    assert {p["row_id"] for p in problems} == set(reasons)
    path = tmp_path / "submission.csv"
    frame.to_csv(path, index=False)
    train = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    scored = rsna_score(read_submission_csv(path), solution_from_train(train))
    assert np.isfinite(scored["score"]) and scored["rows_scored"] > 150


def test_points_come_from_their_views_series_and_the_nearest_axial_slice(modules, synthetic_rsna_root):
    root = synthetic_rsna_root
    desc = descriptions(root)
    study = quirk_study(root, "axial_two_stacks")
    res = predict_study(root / "train_images" / study, modules, desc)
    stacks, _ = read_study_stacks(root / "train_images" / study, desc)
    by_row = {p["row_id"]: p for p in res.points}
    for row, p in by_row.items():
        expected = ("Sagittal T2/STIR" if "spinal" in row else "Sagittal T1" if "foraminal" in row else "Axial T2")
        assert desc[p["series_id"]] == expected, row
    # each level's subarticular slice is the axial slice nearest the spinal point of that level
    t2 = {h.instance_number: h for st in stacks[DESCRIPTIONS["spinal"]] for h in st.slices}
    for level in ("l1_l2", "l3_l4", "l5_s1"):
        canal = by_row[f"{study}_spinal_canal_stenosis_{level}"]
        point = pixel_to_patient(t2[canal["instance_number"]], (canal["x"], canal["y"]))
        pick = nearest_slice(stacks[DESCRIPTIONS["subarticular"]], point)
        if pick is None:
            assert f"{study}_left_subarticular_stenosis_{level}" in res.reasons
            continue
        left = by_row[f"{study}_left_subarticular_stenosis_{level}"]
        assert left["instance_number"] == pick.stack.slices[pick.index].instance_number
    # pixels are decoded only for the slices used: far fewer than the study's files
    files = len(list((root / "train_images" / study).glob("*/*.dcm")))
    assert 0 < res.pixel_reads < files  # each slice once; axial slices of unused levels never


def run_predict(*args, cwd, ok=True):
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([str(BIN / "spinectx-predict"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert (proc.returncode == 0) == ok, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def ckpt_arg(checkpoints: dict) -> str:
    return "ckpt_path={" + ", ".join(f"{v}: {p}" for v, p in checkpoints.items()) + "}"


def test_predict_command_writes_the_submission_its_sidecar_and_the_points(checkpoints, synthetic_rsna_root, tmp_path):
    """The documented command on a test_images/ layout with its series CSV: every study of the CSV
    (a study listed without a folder too) gets its 25 rows; the points name files of the study."""
    root = synthetic_rsna_root
    test_images = tmp_path / "test_images"
    studies = sorted(p.name for p in (root / "train_images").iterdir() if p.is_dir())[:2]
    for s in studies:
        shutil.copytree(root / "train_images" / s, test_images / s)
    series = pd.read_csv(root / "train_series_descriptions.csv", dtype=str)
    listed = series[series.study_id.isin(studies)]
    ghost = pd.DataFrame([{"study_id": "999", "series_id": "1", "series_description": "Sagittal T1"}])
    pd.concat([listed, ghost]).to_csv(tmp_path / "test_series_descriptions.csv", index=False)
    run_predict(ckpt_arg(checkpoints), f"input={test_images}", f"series={tmp_path}/test_series_descriptions.csv",
                "output=out/submission.csv", "tta=true", cwd=tmp_path)
    sub = pd.read_csv(tmp_path / "out" / "submission.csv", dtype={"row_id": str})
    assert list(sub.row_id) == sorted(row_ids([*studies, "999"]))
    assert np.allclose(sub[["normal_mild", "moderate", "severe"]].sum(axis=1), 1.0, atol=1e-4)
    sidecar = json.loads((tmp_path / "out" / "submission.problems.json").read_text())
    ghost_rows = [p for p in sidecar["problems"] if p["row_id"].startswith("999_")]
    assert len(ghost_rows) == 25 and "no folder" in ghost_rows[0]["reason"]
    points = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert points["tta"] == {v: True for v in VIEWS}
    by_study = {s["study_id"]: s for s in points["studies"]}
    for s in studies:
        for p in by_study[s]["points"]:
            assert Path(p["file"]).is_file() and Path(p["file"]).parent.parent.name == s
            assert p["view"] in p["row_id"] or (p["view"] == "foraminal" and "foraminal" in p["row_id"])
        assert 0 < by_study[s]["pixel_reads"]


def test_predict_command_takes_one_study_folder(checkpoints, synthetic_rsna_root, tmp_path):
    root = synthetic_rsna_root
    study = sorted(p.name for p in (root / "train_images").iterdir() if p.is_dir())[0]
    run_predict(ckpt_arg({"spinal": checkpoints["spinal"]}), f"input={root / 'train_images' / study}",
                cwd=tmp_path)  # no series CSV: the files' SeriesDescription; default output name
    sub = pd.read_csv(tmp_path / "submission.csv", dtype={"row_id": str})
    assert list(sub.row_id) == sorted(row_ids([study]))
    sidecar = json.loads((tmp_path / "submission.problems.json").read_text())
    assert sidecar["rows_from_prior"] == 20  # foraminal and subarticular: no model given
    assert {p["reason"] for p in sidecar["problems"]} == {"no foraminal model given", "no subarticular model given"}


@pytest.mark.parametrize("case", ["series_folder", pytest.param("wrong_view", marks=pytest.mark.slow), "tianchi_output",
                                  pytest.param("unknown_view", marks=pytest.mark.slow), "points_folder",
                                  pytest.param("stage1_as_classifier", marks=pytest.mark.slow)])  # each a ~20 s process
def test_predict_command_refuses_bad_rsna_input_cleanly(case, checkpoints, synthetic_rsna_root, tmp_path):
    root = synthetic_rsna_root
    study = sorted(p for p in (root / "train_images").iterdir() if p.is_dir())[0]
    args = {"ckpt": ckpt_arg(checkpoints), "input": f"input={root / 'train_images'}", "out": "output=s.csv"}
    expected = {"series_folder": "series folder", "wrong_view": "trained on the spinal view",
                "tianchi_output": "give output=FILE.csv", "unknown_view": "unknown view",
                "points_folder": "is a folder", "stage1_as_classifier": "not a crop-classifier checkpoint"}[case]
    if case == "series_folder":
        args["input"] = f"input={next(p for p in study.iterdir() if p.is_dir())}"
    elif case == "wrong_view":
        args["ckpt"] = ckpt_arg({"foraminal": checkpoints["spinal"]})
    elif case == "tianchi_output":
        args["out"] = "output=p.json"
    elif case == "points_folder":
        (tmp_path / "pts").mkdir()
        args["points"] = f"points={tmp_path / 'pts'}"
    elif case == "stage1_as_classifier":
        args["classifier"] = f"classifier_ckpt={{spinal: {checkpoints['spinal']}}}"
    else:
        args["ckpt"] = ckpt_arg({"spine": checkpoints["spinal"]})
    proc = run_predict(*args.values(), cwd=tmp_path, ok=False)
    assert proc.returncode == 2 and "spinectx-predict: error:" in proc.stderr and expected in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_slices_batched_through_the_network_give_what_one_slice_at_a_time_gives(modules, synthetic_rsna_root):
    from spinectx.rsna_inference import FrameMemo, predict_slice, predict_slices

    root = synthetic_rsna_root
    study = sorted(p for p in (root / "train_images").iterdir() if p.is_dir())[0]
    stacks, _ = read_study_stacks(study, descriptions(root))
    stack = max(stacks[DESCRIPTIONS["foraminal"]], key=lambda s: len(s.slices))
    module = modules["foraminal"]
    module.hparams.tta = True
    memo = FrameMemo()
    indices = [len(stack.slices) - 1, 0, 2, 1]  # any order, the stack's ends included
    batched = predict_slices(module, stack.slices, indices, memo, batch=3)  # two calls: 3 + 1
    assert [p.header for p in batched] == [stack.slices[i] for i in indices]
    for i, got in zip(indices, batched):
        alone = predict_slice(module, stack.slices, i, memo)
        np.testing.assert_allclose(got.keypoints, alone.keypoints, atol=1e-3)
        np.testing.assert_allclose(got.class_prob, alone.class_prob, atol=1e-5)
        np.testing.assert_allclose(got.score, alone.score, atol=1e-5)
    assert len(memo) == len({min(max(i + d, 0), len(stack.slices) - 1) for i in indices for d in (-1, 0, 1)})


def test_stray_files_do_not_turn_test_images_into_one_study(checkpoints, synthetic_rsna_root, tmp_path):
    """A .DS_Store or README inside a study folder is not a DICOM file: test_images/ stays a folder of studies."""
    from spinectx.rsna_inference import predict_studies

    root = synthetic_rsna_root
    studies = sorted(p.name for p in (root / "train_images").iterdir() if p.is_dir())[:2]
    for s in studies:
        shutil.copytree(root / "train_images" / s, tmp_path / "test_images" / s)
    (tmp_path / "test_images" / studies[0] / ".DS_Store").write_bytes(b"\0\1")
    (tmp_path / "test_images" / studies[1] / "notes.txt").write_text("acquired on the old scanner")
    modules = {"spinal": load_module(checkpoints["spinal"], "cpu")}
    pred = predict_studies(tmp_path / "test_images", modules)
    assert [r.study_id for r in pred.studies] == studies
    assert list(pred.submission.row_id) == sorted(row_ids(studies))


def test_an_undecodable_slice_costs_that_slice_or_view_not_the_study(modules, synthetic_rsna_root, tmp_path):
    root = synthetic_rsna_root
    desc = descriptions(root)
    study = sorted(p.name for p in (root / "train_images").iterdir() if p.is_dir())[0]
    folder = tmp_path / study
    shutil.copytree(root / "train_images" / study, folder)
    stacks, _ = read_study_stacks(folder, desc)
    t2 = max(stacks[DESCRIPTIONS["spinal"]], key=lambda s: len(s.slices))
    middle = Path(t2.slices[len(t2.slices) // 2].path)
    middle.write_bytes(middle.read_bytes()[: int(middle.stat().st_size * 0.7)])  # pixel data truncated
    for h in max(stacks[DESCRIPTIONS["foraminal"]], key=lambda s: len(s.slices)).slices:  # every T1 slice broken
        Path(h.path).write_bytes(Path(h.path).read_bytes()[: int(Path(h.path).stat().st_size * 0.7)])
    res = predict_study(folder, modules, desc)
    spinal = [r for r in res.rows if "spinal" in r]
    assert len(spinal) == 5  # another middle slice took over
    assert all(p["file"] != str(middle.resolve()) for p in res.points if "spinal" in p["row_id"])
    foraminal = [r for r in res.reasons if "foraminal" in r]
    assert len(foraminal) == 10 and all("decod" in res.reasons[r] for r in foraminal)
    assert any(str(middle) in p for p in res.problems)
    # the subarticular rows do not depend on the T1 series: placed from the spinal points as usual
    assert all(r in res.rows or "outside every Axial" in res.reasons[r] for r in
               [f"{study}_{s}_subarticular_stenosis_{lv}" for s in ("left", "right")
                for lv in ("l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1")])


def test_one_rsna_checkpoint_in_tianchi_mode_says_how_to_call_rsna_prediction(checkpoints, synthetic_rsna_root, tmp_path):
    proc = run_predict(f"ckpt_path={checkpoints['spinal']}", f"input={synthetic_rsna_root / 'train_images'}",
                       cwd=tmp_path, ok=False)
    assert "RSNA 2024 spinal checkpoint" in proc.stderr and "ckpt_path='{spinal:" in proc.stderr, proc.stderr[-2000:]


def test_eval_of_a_view_checkpoint_keeps_the_view_metrics_in_metrics_json(checkpoints, synthetic_rsna_root, tmp_path):
    """spinectx-eval on an RSNA view writes its log loss and hit rate to metrics.json, not only the
    TianChi table keys."""
    proc = subprocess.run([sys.executable, "-m", "spinectx.cli.eval", f"ckpt_path={checkpoints['spinal']}",
                           "data=rsna2024", f"data.root={synthetic_rsna_root}", "data.view=spinal", "data.num_folds=3",
                           "data.num_workers=0", "trainer=cpu", f"hydra.run.dir={tmp_path}", "overlay_studies=0"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0 < metrics["logloss"] < 20 and 0.0 <= metrics["hit_rate"] <= 1.0, metrics
