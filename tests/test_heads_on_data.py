"""experiments/classifiers/heads_on_data.py: the parts that need no training (split discovery, the
table row, argument checks)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "classifiers" / "heads_on_data.py"


@pytest.fixture(scope="module")
def heads():
    spec = importlib.util.spec_from_file_location("heads_on_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_splits_are_the_annotation_files_of_the_root(heads, tmp_path):
    (tmp_path / "lumbar_train150_annotation.json").write_text("[]")
    (tmp_path / "lumbar_train51_annotation.json").write_text("[]")
    (tmp_path / "notes.json").write_text("{}")
    assert heads.splits_of(str(tmp_path)) == "[lumbar_train150,lumbar_train51]"
    with pytest.raises(SystemExit, match="no <split>_annotation.json"):
        heads.splits_of(str(tmp_path / "lumbar_train150"))


def test_row_puts_each_group_beside_its_level_prior(heads, tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"train_seconds": 90.0}))
    metrics = {"L-Disc": 0.9, "L-Vertebra": 0.95,
               "level_prior": {"Disc": {"points": 40, "model_auc": 0.81, "level_prior_auc": 0.66},
                               "Vertebra": {"points": 30, "model_auc": None, "level_prior_auc": 0.6}}}
    r = heads.row("independent", "bilstm", metrics, tmp_path)
    assert r["disc_auc"] == 0.81 and r["disc_prior_auc"] == 0.66 and r["disc_points"] == 40
    assert r["vertebra_auc"] is None and r["vertebra_prior_auc"] == 0.6
    assert r["train_min"] == 1.5 and r["head"] == "bilstm"
    assert heads.fmt(None) == "–" and heads.fmt(float("nan")) == "n/a" and heads.fmt(0.8123) == "0.812"


@pytest.mark.parametrize("args, message", [
    (["--heads", "cell,lstm"], "unknown ['lstm']"),
    (["--heads", "deepscorenet"], "include cell"),
    (["--root", "x=/nonexistent/folder"], "not a folder"),
    (["--root", "just-a-folder"], "give NAME=DIR"),
    (["--parallel", "0"], "--parallel must be ≥ 1"),
    (["--bogus", "1"], "unknown option(s) ['--bogus']"),
])
def test_bad_arguments_are_refused_before_training(tmp_path, args, message):
    base = ["--root", f"a={tmp_path}", "--out", str(tmp_path / "out")]
    if "--root" in args:
        base = base[2:]
    proc = subprocess.run([sys.executable, str(SCRIPT), *base, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_rerun_with_other_overrides_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "overrides.json").write_text(json.dumps(["trainer.max_epochs=3"]))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--root", f"a={tmp_path}", "--root", f"a={tmp_path}",
                           "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "each NAME once" in proc.stderr
    proc = subprocess.run([sys.executable, str(SCRIPT), "--root", f"a={tmp_path}", "--out", str(out), "--",
                           "trainer.max_epochs=14"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "give another --out" in proc.stderr, proc.stderr
