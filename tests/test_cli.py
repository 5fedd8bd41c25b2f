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


@pytest.mark.parametrize("command", ["data", "predict-missing", "predict-corrupt", "predict-ckpt", "eval"])
def test_every_command_fails_the_same_clean_way(tmp_path, command):
    """Bad input ends any command with '<app>: error: <file>: <problem>' and exit 2, no traceback."""
    corrupt = tmp_path / "corrupt.dcm"
    corrupt.write_bytes(b"\x00" * 300)
    args, expected = {
        "data": (["spinectx-data", f"root={tmp_path}/missing", f"out={tmp_path}/x.json"], "dataset root not found"),
        "predict-missing": (["spinectx-predict", "ckpt_path=x.ckpt", f"input={tmp_path}/nothing"], "input not found"),
        "predict-corrupt": (["spinectx-predict", "ckpt_path=x.ckpt", f"input={corrupt}"], "unreadable DICOM file"),
        "predict-ckpt": (["spinectx-predict", "ckpt_path=x.ckpt", f"input={tmp_path}"], "checkpoint not found"),
        "eval": (["spinectx-eval", f"ckpt_path={tmp_path}/none.ckpt"], "none.ckpt"),
    }[command]
    if command == "predict-ckpt":
        from tests.test_dicom_robust import known_array, mr_dataset, save

        save(mr_dataset(known_array()), tmp_path / "one.dcm")
        args[-1] = f"input={tmp_path / 'one.dcm'}"
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{args[0]}: error: " in proc.stderr and expected in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


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


@pytest.mark.parametrize("overrides, batch", [
    (["scale=paper"], 32),
    (["scale=paper", "model.backbone=resnet50"], 12),
    (["scale=paper", "method=ccfnet_r50_msc"], 12),
    (["scale=paper", "method=simplebaseline_r50", "model.backbone=resnet18"], 32),
    (["experiment=rsna", "scale=rsna_paper", "model.backbone=resnet50"], 12),
    (["experiment=rsna", "scale=rsna_paper", "model=hrnet"], 32),
])
def test_paper_batch_size_follows_the_backbone(overrides, batch, tmp_path):
    """SPEC §3: batch 32 for ResNet-18, 12 for ResNet-50, whether the backbone comes from method= or model.backbone=."""
    from hydra import compose, initialize_config_dir

    from spinectx.cli import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, f"paths.root_dir={tmp_path}"])
    assert cfg.data.batch_size == batch
