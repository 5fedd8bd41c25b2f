"""spinectx.report units: reading W&B runs (a stand-in API object) and counting reused cells once."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from spinectx.report import build_report, cell_row, read_job, table_markdown, wandb_jobs, without_copies

METRICS = {"L-Disc": 0.9, "L-Vertebra": 0.8, "C-Disc": 0.7, "C-Vertebra": 0.6, "Score": 0.5}


class FakeApi:
    """What wandb.Api().runs returns, reduced to what the report reads."""

    def __init__(self, runs):
        self._runs = runs
        self.calls = []

    def runs(self, path, filters=None):
        self.calls.append((path, filters))
        groups = (filters or {}).get("group", {}).get("$in")
        return [r for r in self._runs if groups is None or r.group in groups]


def fake_run(i, group, model, backbone, msc, fold, summary, state="finished", flat=False):
    config = {"model": {"name": model, "backbone": backbone, "msc": msc}, "data": {"fold": fold, "fraction": 1.0}}
    if flat:  # W&B may hold the config flattened
        config = {"model.name": model, "model.backbone": backbone, "model.msc": msc, "data.fold": fold}
    return SimpleNamespace(id=f"r{i}", url=f"https://wandb.ai/e/p/runs/r{i}", group=group, config=config,
                           summary=summary, state=state)


def test_wandb_runs_become_table_rows(tmp_path):
    final = {f"final/{k}": v for k, v in METRICS.items()}
    best_only = {f"best/{k}": v + 0.05 for k, v in METRICS.items()}
    runs = [
        fake_run(0, "table1", "ccfnet", "resnet18", True, 0, {**final, "best/Score": 0.99, "complexity/params_M": 4.83}),
        fake_run(1, "table1", "ccfnet", "resnet18", True, 1, best_only, flat=True),
        fake_run(2, "table1", "scn", "resnet18", False, 0, {}, state="crashed"),
        fake_run(3, "other", "ccfnet", "resnet18", False, 0, final),  # not an experiment group
    ]
    api = FakeApi(runs)
    jobs = wandb_jobs("e/p", ["table1", "table2"], api=api)
    assert api.calls == [("e/p", {"group": {"$in": ["table1", "table2"]}})]
    assert len(jobs) == 3
    assert jobs[0].metrics == METRICS  # the held-out evaluation wins over the best epoch
    assert jobs[1].metrics["Score"] == pytest.approx(0.55) and jobs[1].fold == 1
    assert jobs[2].metrics is None and "crashed" in jobs[2].error
    build_report("W&B e/p", tmp_path, jobs=jobs)
    rows = {(r["method"], r["msc"]): r for r in csv.DictReader((tmp_path / "table1.csv").open())}
    ccf = rows[("CCF-Net", "True")]
    assert ccf["runs"] == "2" and float(ccf["Score"]) == pytest.approx(52.5) and float(ccf["Score_std"]) == pytest.approx(3.5355, abs=1e-3)
    assert float(ccf["params_M"]) == 4.83
    assert rows[("SCN", "False")]["status"] == "failed"


def write_job(folder: Path, fraction: float, reused_from: Path | None = None) -> Path:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(
        f"model: {{name: ccfnet, backbone: resnet18, msc: true}}\ndata: {{fold: 0, fraction: {fraction}}}\n")
    payload = {"evaluation": METRICS, **({"reused_from": str(reused_from)} if reused_from else {})}
    (folder / "metrics.json").write_text(json.dumps(payload))
    return folder


def test_a_reused_cell_counts_once_when_its_source_is_reported(tmp_path):
    source = write_job(tmp_path / "table1" / "sweep" / "a", 1.0)
    copy = write_job(tmp_path / "data_fraction" / "sweep" / "b", 1.0, reused_from=source)
    write_job(tmp_path / "data_fraction" / "sweep" / "c", 0.5)
    both = [read_job(source), read_job(copy)]
    assert [j.path for j in without_copies(both)] == [source]
    assert [j.path for j in without_copies([read_job(copy)])] == [copy]  # alone, the copy stands for the cell
    build_report([tmp_path / "table1" / "sweep", tmp_path / "data_fraction" / "sweep"], tmp_path / "out")
    rows = list(csv.DictReader((tmp_path / "out" / "table1.csv").open()))
    assert [r["runs"] for r in rows if r["method"] == "CCF-Net" and r["msc"] == "True"] == ["1"]
    fractions = list(csv.DictReader((tmp_path / "out" / "data_fraction.csv").open()))
    assert [(r["fraction"], r["runs"]) for r in fractions] == [("0.5", "1"), ("1.0", "1")]


def test_report_needs_a_source(tmp_path):
    import subprocess
    import sys

    with pytest.raises(FileNotFoundError, match="not found"):
        build_report(tmp_path / "nope", tmp_path / "out")
    proc = subprocess.run([sys.executable, "-m", "spinectx.cli.report", f"out={tmp_path / 'out'}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "wandb=ENTITY/PROJECT" in proc.stderr + proc.stdout


def test_undefined_metrics_average_over_the_folds_that_define_them(tmp_path):
    """A null metric (an undefined AUC in metrics.json) is left out of its cell's mean, never read as 0."""
    values = [{**METRICS, "C-Vertebra": None}, {**METRICS, "C-Vertebra": 0.4}, {**METRICS, "C-Vertebra": 0.8}]
    for fold, metrics in enumerate(values):
        job = tmp_path / "sweep" / f"f{fold}"
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "config.yaml").write_text(
            f"model: {{name: ccfnet, backbone: resnet18, msc: true}}\ndata: {{fold: {fold}, fraction: 1.0}}\n")
        (job / "metrics.json").write_text(json.dumps({"evaluation": metrics}))
    jobs = [read_job(tmp_path / "sweep" / f"f{i}") for i in range(3)]
    assert all(j.error is None for j in jobs) and math.isnan(jobs[0].metrics["C-Vertebra"])
    build_report(tmp_path / "sweep", tmp_path / "out")
    row = next(r for r in csv.DictReader((tmp_path / "out" / "table1.csv").open()) if r["method"] == "CCF-Net" and r["msc"] == "True")
    assert row["runs"] == "3" and float(row["C-Vertebra"]) == pytest.approx(60.0) and row["C-Vertebra_n"] == "2"
    assert float(row["C-Disc"]) == pytest.approx(70.0) and "C-Disc_n" not in row  # defined in every fold
    assert "60.00 ± 28.28 (2/3)" in (tmp_path / "out" / "table1.md").read_text()

    for job in jobs:  # undefined in every fold: n/a, not 0
        job.metrics["C-Vertebra"] = float("nan")
    row = cell_row(jobs, None, "CCF-Net", "resnet18", True)
    assert row["C-Vertebra"] is None and row["runs"] == 3
    assert "| n/a |" in table_markdown([row], "t")


def test_a_context_head_run_never_fills_a_paper_cell():
    from spinectx.report import METHOD_OF_MODEL, _method_name

    plain = METHOD_OF_MODEL["ccfnet"]
    assert _method_name({"name": "ccfnet"}) == plain == _method_name({"name": "ccfnet", "context": {"kind": "none"}})
    assert _method_name({"name": "ccfnet", "context": {"kind": "bilstm"}}) == f"{plain}+bilstm"
