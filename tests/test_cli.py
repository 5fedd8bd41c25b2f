"""The console scripts work as documented (run as subprocesses, like a user would)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def run(*args, cwd):
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_synth_then_data_check(tmp_path):
    run("spinectx-synth", f"out={tmp_path}/ds", "studies=3", "seed=5", cwd=tmp_path)
    assert (tmp_path / "ds" / "lumbar_train_annotation.json").is_file()
    assert sorted(p.name for p in (tmp_path / "ds" / "lumbar_train").iterdir()) == ["study0", "study1", "study2"]
    # a tool run leaves no Hydra output folders behind
    assert not (tmp_path / "outputs").exists() and not (tmp_path / ".hydra").exists()

    out = tmp_path / "check.json"
    proc = run("spinectx-data", f"root={tmp_path}/ds", "splits=[lumbar_train]", f"out={out}", cwd=tmp_path)
    report = json.loads(out.read_text())
    assert report["totals"]["studies"] == 3 and len(report["studies"]) == 3
    rec = report["studies"][0]
    for key in ("study_uid", "series_uid", "instance_uid", "pixel_spacing", "shape", "landmarks", "problems"):
        assert key in rec
    assert len(rec["pixel_spacing"]) == 2 and len(rec["shape"]) == 2
    some = next(iter(rec["landmarks"].values()))
    assert len(some["coord"]) == 2 and isinstance(some["tags"], list)
    per_class = report["totals"]["per_class"]
    assert sum(v for k, v in per_class.items() if k.startswith("vertebra_")) == sum(
        1 for r in report["studies"] for k in r["landmarks"] if k.startswith("L") and "-" not in k)
    assert '"studies": 3' in proc.stdout


def test_data_check_reports_bad_root(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([str(BIN / "spinectx-data"), f"root={tmp_path}/missing", f"out={tmp_path}/x.json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "dataset root not found" in proc.stderr + proc.stdout


def test_profile_writes_the_table_beside_the_paper(tmp_path):
    import csv

    out = tmp_path / "prof" / "profile.csv"
    run("spinectx-profile", f"out={out}", "only=[CCF-Net]", cwd=tmp_path)
    rows = list(csv.DictReader(out.open()))
    assert [r["method"] for r in rows] == ["CCF-Net"] * 4
    assert list(rows[0])[:7] == ["method", "backbone", "msc", "params_M", "flops_G", "paper_params_M", "paper_flops_G"]
    r18 = {r["msc"]: r for r in rows if r["backbone"] == "resnet18"}
    assert float(r18["true"]["params_M"]) == pytest.approx(4.83, rel=0.01)
    assert float(r18["true"]["flops_G"]) == pytest.approx(12.0, rel=0.01)
    # the paper prints this row's params and FLOPs swapped: compared the right way round
    assert float(r18["false"]["paper_params_M"]) == 11.20 and float(r18["false"]["paper_flops_G"]) == 9.51
    assert all(r["within"] == "yes" for r in rows)
    md = out.with_suffix(".md").read_text()
    assert md.count("| CCF-Net |") == 4
