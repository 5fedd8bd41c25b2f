"""make reproduce-rsna at toy scale: the experiment's multirun over data.view trains one job per
view and fold, every view of a fold holds out the same studies, and spinectx-report-rsna predicts
them with the fold's checkpoints into a complete submission that spinectx-score scores the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BIN = Path(sys.executable).parent
TOY = ["data.image_size=64", "data.batch_size=4", "data.num_workers=0", "data.num_folds=3", "trainer.max_epochs=1",
       "trainer.limit_train_batches=2", "logger=none", "overlay_studies=0", "callbacks.progress_bar=null"]


def run(*args, cwd, ok=True):
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    proc = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert (proc.returncode == 0) == ok, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, synthetic_rsna_root):
    """Two views × fold 0 of 3, a few steps each, as `make reproduce-rsna` runs them."""
    tmp = tmp_path_factory.mktemp("reproduce_rsna")
    run("spinectx-train", "--multirun", "experiment=rsna", "data=rsna2024", f"data.root={synthetic_rsna_root}",
        "data.view=spinal,subarticular", f"hydra.sweep.dir={tmp}/sweep", f"paths.root_dir={tmp}", *TOY, cwd=tmp)
    return tmp


def test_views_of_a_fold_hold_out_the_same_studies(sweep):
    splits = [json.loads(p.read_text()) for p in sorted((sweep / "sweep").rglob("split.json"))]
    assert sorted(s["view"] for s in splits) == ["spinal", "subarticular"]
    spinal, sub = sorted(splits, key=lambda s: s["view"])
    # a study held out by one view is never trained on by the other
    assert not set(spinal["held_out"]) & set(sub["train"]) and not set(sub["held_out"]) & set(spinal["train"])
    assert spinal["fold"] == sub["fold"] == 0 and spinal["data_root"] == sub["data_root"]


def test_report_predicts_the_held_out_studies_and_scores_them(sweep, synthetic_rsna_root):
    out = sweep / "reports"
    run("spinectx-report-rsna", f"sweep={sweep}/sweep", f"out={out}", cwd=sweep)
    splits = [json.loads(p.read_text()) for p in (sweep / "sweep").rglob("split.json")]
    held_out = sorted(set().union(*(s["held_out"] for s in splits)))
    sub = pd.read_csv(out / "submission.csv", dtype={"row_id": str})
    assert len(sub) == 25 * len(held_out) and list(sub.row_id) == sorted(sub.row_id)
    assert sorted({r.split("_")[0] for r in sub.row_id}) == held_out
    assert np.allclose(sub[["normal_mild", "moderate", "severe"]].sum(axis=1), 1, atol=1e-4)
    # the foraminal view was not trained: its rows take the prior, each listed with its reason
    sidecar = json.loads((out / "submission.problems.json").read_text())
    foraminal = [p for p in sidecar["problems"] if "foraminal" in p["row_id"]]
    assert len(foraminal) == 10 * len(held_out)
    payload = json.loads((out / "score.json").read_text())
    # the report's score is spinectx-score's on the same files
    run("spinectx-score", f"pred={out}/submission.csv", f"gt={out}/held_out_train.csv", f"out={sweep}/s.json", cwd=sweep)
    scored = json.loads((sweep / "s.json").read_text())
    assert payload["model"]["score"] == pytest.approx(scored["score"], rel=1e-9)
    assert payload["prior"]["score"] > 0 and payload["folds"] == [0]
    for name in ("summary.md", "per_level.csv", "confusion.csv", "calibration.png", "predictions.json",
                 "held_out_train.csv", "points.png", "point_errors.csv"):
        assert (out / name).is_file(), name
    per_level = pd.read_csv(out / "per_level.csv")
    assert set(per_level.columns) >= {"condition", "level", "rows", "model", "prior"}
    confusion = pd.read_csv(out / "confusion.csv")
    truth = pd.read_csv(out / "held_out_train.csv", dtype=str, keep_default_na=False)
    spinal_labelled = sum((truth[c] != "").sum() for c in truth.columns if c.startswith("spinal"))
    counts = confusion[confusion.group == "spinal"].filter(like="predicted_").to_numpy().sum()
    assert counts == spinal_labelled  # every scored spinal row is in the confusion matrix once
    assert "| score |" in (out / "summary.md").read_text()


def test_report_refuses_a_folder_without_jobs(tmp_path):
    proc = run("spinectx-report-rsna", f"sweep={tmp_path}", f"out={tmp_path}/r", cwd=tmp_path, ok=False)
    assert proc.returncode == 2 and "no job folder" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("model", ["ccfnet", "simplebaseline", "scn", "hrnet"])
@pytest.mark.parametrize("scale", ["rsna_smoke", "rsna_paper"])
def test_every_model_family_builds_under_the_rsna_experiment(model, scale, synthetic_rsna_root, tmp_path):
    """`make reproduce-rsna ARGS='model=…'`: the scale's settings fit every model family's loss."""
    import hydra
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from spinectx.cli import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["experiment=rsna", f"scale={scale}", f"model={model}", "data=rsna2024",
                                          f"data.root={synthetic_rsna_root}", "data.view=subarticular",
                                          f"paths.root_dir={tmp_path}"])
    module = hydra.utils.instantiate(cfg.model, landmarks=OmegaConf.to_container(cfg.data.landmarks, resolve=True),
                                     input_size=int(cfg.data.image_size), input_slices=int(cfg.data.slices),
                                     metrics=OmegaConf.to_container(cfg.data.metrics, resolve=True))
    assert module.rsna_metric is not None and module.hparams.class_head == "multiclass"
    assert cfg.data.num_rep == cfg.rsna_passes.subarticular


def test_a_failed_job_is_named_by_its_root_cause_and_a_tianchi_job_as_such(tmp_path):
    from spinectx.rsna_report import error_line, read_view_job

    chained = ("Traceback (most recent call last):\n  File \"x\"\nTypeError: f() got an unexpected keyword argument 'w'\n\n"
               "The above exception was the direct cause of the following exception:\n\nTraceback (most recent call last):\n"
               "hydra.errors.InstantiationException: Error in call to target 'L':\nTypeError(\"f()\")\nfull_key: model\n")
    assert error_line(chained) == "TypeError: f() got an unexpected keyword argument 'w'"
    assert error_line("no exception line") == "no exception line"
    job = tmp_path / "job"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text("data:\n  root: x\nmodel:\n  name: ccfnet\n")
    (job / "metrics.json").write_text("{}")
    assert "not an RSNA 2024 job" in read_view_job(job).problem
    (job / ".hydra" / "config.yaml").write_text("data:\n  view: spinal\nmodel:\n  name: ccfnet\n")
    (job / "error.txt").write_text(chained)
    assert read_view_job(job).problem.startswith("failed: TypeError: f() got an unexpected keyword argument 'w'")


def test_report_refuses_an_output_file_and_a_missing_data_root_before_any_work(tmp_path):
    (tmp_path / "taken.csv").write_text("x")
    proc = run("spinectx-report-rsna", f"sweep={tmp_path}", f"out={tmp_path / 'taken.csv'}", cwd=tmp_path, ok=False)
    assert proc.returncode == 2 and "is a file" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("spinectx-report-rsna", f"sweep={tmp_path}", f"out={tmp_path / 'r'}", f"data_root={tmp_path / 'nothere'}",
               cwd=tmp_path, ok=False)
    assert proc.returncode == 2 and "no such folder" in proc.stderr and "Traceback" not in proc.stderr


def test_a_copied_sweep_reads_its_own_best_checkpoint(tmp_path):
    from spinectx.rsna_report import read_view_job

    original, copy = tmp_path / "orig" / "job", tmp_path / "copy" / "job"
    for job in (original, copy):
        (job / ".hydra").mkdir(parents=True)
        (job / "checkpoints").mkdir()
        (job / ".hydra" / "config.yaml").write_text("data:\n  view: spinal\nmodel:\n  name: ccfnet\n")
        (job / "split.json").write_text(json.dumps({"view": "spinal", "fold": 0, "held_out": ["1"], "data_root": str(tmp_path)}))
        (job / "checkpoints" / "epoch003.ckpt").write_text("best")
        (job / "checkpoints" / "last.ckpt").write_text("last")
        # metrics.json was copied along: it names the original sweep's file
        (job / "metrics.json").write_text(json.dumps({"evaluation": {"checkpoint": str(original / "checkpoints" / "epoch003.ckpt")}}))
    assert read_view_job(copy).checkpoint == copy / "checkpoints" / "epoch003.ckpt"
    (copy / "checkpoints" / "epoch003.ckpt").unlink()  # best gone: last.ckpt of this job, never the original's file
    assert read_view_job(copy).checkpoint == copy / "checkpoints" / "last.ckpt"
