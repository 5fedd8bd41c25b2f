"""The console scripts work as documented (run as subprocesses, like a user would)."""

import json
import os
import subprocess
import sys
from pathlib import Path

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
