"""What a researcher does around training: evaluate, predict, score; DDP; resume after a kill;
reproducibility; sweeps that survive a failing job; channels-last / compiled runs."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

import spinectx
from spinectx.cli.train import train
from test_train import make_cfg

SRC = Path(spinectx.__file__).resolve().parents[1]
TABLE = ("L-Disc", "L-Vertebra", "C-Disc", "C-Vertebra", "Score")


def module_cmd(module: str, *args) -> list[str]:
    return [sys.executable, "-m", module, *args]


def env(**extra) -> dict:
    """The subprocess environment: offline, this checkout's sources, and no inherited W&B service
    (an in-process W&B run earlier in the session would otherwise be shared, as one user's
    shells never share it)."""
    base = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    return {**base, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(SRC), **extra}


def run(module: str, *args, cwd, timeout=600, **extra_env) -> subprocess.CompletedProcess:
    proc = subprocess.run(module_cmd(module, *args), cwd=cwd, env=env(**extra_env), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


def data_args(root) -> list[str]:
    return [f"data.root={root}", "data.synthetic=null", "data.num_workers=0", "data.batch_size=4"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_root):
    """A CCF-Net trained for 2 short epochs at 64 px: (run dir, metrics.json)."""
    tmp = tmp_path_factory.mktemp("trained")
    cfg = make_cfg(tmp, synthetic_root, ["trainer.max_epochs=2", "overlay_studies=0"])
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    return run_dir, json.loads((run_dir / "metrics.json").read_text())


def test_eval_reproduces_training_metrics_and_writes_its_reports(tmp_path, synthetic_root, trained):
    run_dir, metrics = trained
    ckpt = metrics["evaluation"]["checkpoint"]
    out = tmp_path / "eval"
    run("spinectx.cli.eval", f"ckpt_path={ckpt}", *data_args(synthetic_root), "trainer=cpu", f"paths.root_dir={tmp_path}",
        f"hydra.run.dir={out}", "overlay_studies=3", cwd=tmp_path)
    result = json.loads((out / "metrics.json").read_text())
    for k in TABLE:
        assert result[k] == pytest.approx(metrics["evaluation"][k], abs=1e-6)
    assert result["input_size"] == 64 and result["studies"] == 3
    assert 0.0 <= result["challenge"]["macro_f1"] <= 1.0
    assert set(result["challenge"]["rows"]) >= {"wrong", "not_hit"}
    # the level prior beside the model, over the same located points as the C- metrics
    for title in ("Vertebra", "Disc"):
        group = result["level_prior"][title]
        if group["model_auc"] is not None and result[f"C-{title}"] is not None:
            assert group["model_auc"] == pytest.approx(result[f"C-{title}"], abs=1e-6)
    rows = list(csv.DictReader((out / "per_landmark.csv").open()))
    assert [r["identification"] for r in rows][:2] == ["L1", "L2"] and len(rows) == 11
    assert all(0.0 < float(r["level_prior_p_abnormal"]) < 1.0 for r in rows)
    assert all(0.0 <= float(r["hit_rate"]) <= 1.0 for r in rows)
    for png in ("confusion.png", "overlays.png"):
        assert (out / png).stat().st_size > 5_000

    # the whole split instead of the held-out fold
    run("spinectx.cli.eval", f"ckpt_path={ckpt}", *data_args(synthetic_root), "trainer=cpu", "all_studies=true",
        f"paths.root_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'all'}", "overlay_studies=0", cwd=tmp_path)
    assert json.loads((tmp_path / "all" / "metrics.json").read_text())["studies"] == 12


def test_ddp_on_two_cpu_processes_gives_the_single_process_metric(tmp_path, synthetic_root, trained):
    """3 held-out studies over 2 gloo processes (2 + 1, no padding): same table metric."""
    _, metrics = trained
    ckpt = metrics["evaluation"]["checkpoint"]
    results = {}
    for trainer in ("cpu", "ddp_cpu"):
        out = tmp_path / trainer
        run("spinectx.cli.eval", f"ckpt_path={ckpt}", *data_args(synthetic_root), f"trainer={trainer}",
            f"paths.root_dir={tmp_path}", f"hydra.run.dir={out}", "overlay_studies=0", cwd=tmp_path)
        results[trainer] = json.loads((out / "metrics.json").read_text())
    for k in TABLE:
        assert results["ddp_cpu"][k] == pytest.approx(results["cpu"][k], abs=1e-6)
    # and training itself runs under DDP (2 processes, sync BatchNorm)
    run("spinectx.cli.train", "trainer=ddp_cpu", *data_args(synthetic_root), "data.image_size=64", "logger=none",
        "+trainer.limit_train_batches=2", "trainer.max_epochs=1", "overlay_studies=0", "callbacks.progress_bar=null",
        f"paths.root_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'ddp_train'}", cwd=tmp_path)
    assert json.loads((tmp_path / "ddp_train" / "metrics.json").read_text())["epoch"] == 0


def test_predict_writes_a_submission_that_scores(tmp_path, synthetic_root, trained):
    _, metrics = trained
    ckpt = metrics["evaluation"]["checkpoint"]
    split = synthetic_root / "lumbar_train"
    out = tmp_path / "pred.json"
    run("spinectx.cli.predict", f"ckpt_path={ckpt}", f"input={split}", f"output={out}", cwd=tmp_path)
    submission = json.loads(out.read_text())
    assert len(submission) == 12
    points = submission[0]["data"][0]["annotation"][0]["data"]["point"]
    assert len(points) == 11 and all(0.0 <= p["prob"] <= 1.0 for p in points)
    assert {"identification", "vertebra"} <= set(points[0]["tag"]) or {"identification", "disc"} <= set(points[0]["tag"])

    # it scores against the annotation, with spacing read from the DICOM files
    report = tmp_path / "score.json"
    run("spinectx.cli.score", f"pred={out}", f"gt={synthetic_root / 'lumbar_train_annotation.json'}",
        f"images={split}", f"out={report}", cwd=tmp_path)
    scored = json.loads(report.read_text())
    assert scored["studies"] == 12 and 0.0 <= scored["Score"] <= 1.0

    # one study folder, one series folder, one file; without flip averaging the points move
    study = sorted(p for p in split.iterdir() if p.is_dir())[0]
    run("spinectx.cli.predict", f"ckpt_path={ckpt}", f"input={study}", f"output={tmp_path / 'one.json'}", cwd=tmp_path)
    one = json.loads((tmp_path / "one.json").read_text())[0]
    instance = one["data"][0]["instanceUid"]
    from spinectx.data.study import index_study

    series = index_study(study).inference_stack()
    (tmp_path / "series").mkdir()
    for h in series.slices:
        (tmp_path / "series" / Path(h.path).name).symlink_to(h.path)
    frame = next(h.path for h in series.slices if h.instance_uid == instance)
    def points(entry, z=True):  # a lone file has no slice index: compare without it
        return [{k: v for k, v in p.items() if z or k != "zIndex"} for p in entry["data"][0]["annotation"][0]["data"]["point"]]

    for name, source in (("series.json", tmp_path / "series"), ("file.json", frame)):
        run("spinectx.cli.predict", f"ckpt_path={ckpt}", f"input={source}", f"output={tmp_path / name}", cwd=tmp_path)
        again = json.loads((tmp_path / name).read_text())[0]
        assert again["data"][0]["instanceUid"] == instance
        assert points(again, z=name == "series.json") == points(one, z=name == "series.json")
    run("spinectx.cli.predict", f"ckpt_path={ckpt}", f"input={frame}", f"output={tmp_path / 'notta.json'}", "tta=false",
        cwd=tmp_path)
    no_tta = json.loads((tmp_path / "notta.json").read_text())[0]["data"][0]["annotation"][0]["data"]["point"]
    assert no_tta != one["data"][0]["annotation"][0]["data"]["point"]


@pytest.mark.slow  # ~60 s; SIGKILL + resume is in the fast suite (score that does not improve); this adds the W&B run id
def test_killed_run_resumes_where_it_stopped_with_the_same_wandb_run(tmp_path, synthetic_root):
    args = ["logger=wandb", "trainer=cpu", *data_args(synthetic_root), "data.image_size=64", "data.batch_size=2",
            "data.num_rep=6", "trainer.max_epochs=3", "overlay_studies=0", "callbacks.progress_bar=null",
            "evaluate=false", f"paths.root_dir={tmp_path}"]
    first = subprocess.Popen(module_cmd("spinectx.cli.train", *args), cwd=tmp_path, env=env(WANDB_MODE="offline"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = tmp_path / "logs" / "train" / "runs"
    deadline = time.time() + 300
    while time.time() < deadline and not list(runs.glob("*/checkpoints/last.ckpt")):
        assert first.poll() is None, "training ended before it could be killed"
        time.sleep(0.2)
    time.sleep(1.0)  # into the second epoch
    first.send_signal(signal.SIGKILL)
    first.wait()
    (run_dir,) = runs.iterdir()
    killed_at = json.loads((run_dir / "metrics.json").read_text())["history"]
    done = stored_epoch(run_dir / "checkpoints" / "last.ckpt")  # last.ckpt follows every epoch
    assert done in (0, 1) and [h["epoch"] for h in killed_at][: done + 1] == list(range(done + 1))
    time.sleep(1.1)  # the next run directory gets another timestamp

    run("spinectx.cli.train", *args, "resume=true", cwd=tmp_path, WANDB_MODE="offline")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [0, 1, 2]  # the epoch count went on
    assert metrics["history"][: done + 1] == killed_at[: done + 1]
    run_id = (run_dir / "wandb_id").read_text().strip()
    offline_runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 2 and all(p.name.endswith(run_id) for p in offline_runs)


def stored_epoch(ckpt: Path) -> int | None:
    """The epoch a Lightning checkpoint was saved in (None while it does not exist or is being
    replaced)."""
    try:
        return int(torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True)["epoch"])
    except (OSError, RuntimeError, EOFError, KeyError, ValueError):
        return None


def csv_epochs(run_dir: Path) -> list[list[int]]:
    """The training epochs each process wrote to ``csv/version_*/metrics.csv`` (CSVLogger, one
    version per process; a killed process may not have flushed its rows)."""
    versions = sorted((run_dir / "csv").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    epochs = []
    for version in versions:
        rows = list(csv.DictReader((version / "metrics.csv").open())) if (version / "metrics.csv").is_file() else []
        epochs.append([int(r["epoch"]) for r in rows if r.get("train/loss_epoch")])
    return epochs


def test_killed_run_whose_score_does_not_improve_resumes_at_the_next_epoch(tmp_path, synthetic_root):
    """No learning (lr 0), validated every epoch: the Score never improves after epoch 0. SIGKILL
    after epoch k >= 1 finished; with ``resume=true`` training goes on at epoch k + 1 (last.ckpt is
    written after every training epoch, not only when the Score improves): the finished epochs are
    not trained again, the history goes on, and the total is max_epochs."""
    epochs = 4
    args = ["logger=csv", "trainer=cpu", *data_args(synthetic_root), "data.image_size=64", "data.batch_size=2",
            "data.num_rep=1", f"trainer.max_epochs={epochs}", "trainer.check_val_every_n_epoch=1",
            "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1", "model.optimizer.lr=0",
            "model.scheduler.eta_min=0", "overlay_studies=0", "callbacks.progress_bar=null", "evaluate=false",
            f"paths.root_dir={tmp_path}"]
    first = subprocess.Popen(module_cmd("spinectx.cli.train", *args), cwd=tmp_path, env=env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = tmp_path / "logs" / "train" / "runs"
    deadline = time.time() + 300
    while time.time() < deadline:
        assert first.poll() is None, "training ended before it could be killed"
        ckpts = list(runs.glob("*/checkpoints/last.ckpt"))
        if ckpts and (stored_epoch(ckpts[0]) or 0) >= 1:
            break
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    (run_dir,) = runs.iterdir()
    done = stored_epoch(run_dir / "checkpoints" / "last.ckpt")
    assert 1 <= done < epochs - 1, f"killed after epoch {done}"
    killed_at = json.loads((run_dir / "metrics.json").read_text())["history"]
    time.sleep(1.1)  # the next run directory gets another timestamp

    run("spinectx.cli.train", *args, "resume=true", cwd=tmp_path)
    assert csv_epochs(run_dir)[-1] == list(range(done + 1, epochs))  # the resumed process: only the rest
    assert stored_epoch(run_dir / "checkpoints" / "last.ckpt") == epochs - 1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epoch"] == 0 and [h["epoch"] for h in metrics["history"]] == list(range(epochs))
    assert metrics["history"][: done + 1] == killed_at[: done + 1]  # the history went on
    (best,) = (run_dir / "checkpoints").glob("epoch*.ckpt")  # the monitored checkpoint: epoch 0 only
    assert best.name.startswith("epoch000-")


class StopAtEpoch(L.Callback):
    """Crash (as a kill would) when epoch ``epoch`` starts."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError(f"stopped at the start of epoch {self.epoch}")


def test_run_validated_only_at_the_end_resumes_at_the_epoch_after_a_crash(tmp_path, synthetic_root):
    """Validation only after the last epoch (as the demo and smoke schedules): a run that dies as
    epoch 2 starts has left last.ckpt of epoch 1 (before, only the end of fit wrote one), and
    ``resume=true`` trains epochs 2-3 only. In-process, with a crash instead of a kill: the files
    left behind are the same."""
    common = ["logger=csv", "trainer.max_epochs=4", "trainer.check_val_every_n_epoch=4", "+trainer.limit_train_batches=2",
              "+trainer.limit_val_batches=1", "evaluate=false", "overlay_studies=0"]
    crash = make_cfg(tmp_path, synthetic_root, [*common, "+callbacks.stop._target_=test_workflow.StopAtEpoch",
                                                "+callbacks.stop.epoch=2"])
    with pytest.raises(RuntimeError, match="start of epoch 2"):
        train(crash)
    run_dir = Path(crash.paths.output_dir)
    assert stored_epoch(run_dir / "checkpoints" / "last.ckpt") == 1 and not (run_dir / "metrics.json").exists()
    train(make_cfg(tmp_path, synthetic_root, [*common, "resume=true"]))
    assert csv_epochs(run_dir) == [[0, 1], [2, 3]]  # each process: its own epochs
    assert stored_epoch(run_dir / "checkpoints" / "last.ckpt") == 3
    assert [h["epoch"] for h in json.loads((run_dir / "metrics.json").read_text())["history"]] == [3]


def test_same_seed_same_metrics(tmp_path, synthetic_root):
    payloads = []
    for name in ("a", "b"):
        cfg = make_cfg(tmp_path / name, synthetic_root, ["trainer.max_epochs=2", "overlay_studies=0", "seed=5"])
        train(cfg)
        payload = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
        payload["evaluation"].pop("checkpoint")
        assert payload.pop("train_seconds") > 0  # wall time: the one entry that may differ
        payloads.append(payload)
    assert payloads[0] == payloads[1]


def test_a_failing_sweep_job_leaves_its_error_and_the_others_run(tmp_path, synthetic_root):
    sweep = tmp_path / "sweep"
    run("spinectx.cli.train", "--multirun", "data.image_size=72,64", "logger=none", "trainer=cpu", *data_args(synthetic_root),
        "trainer.max_epochs=1", "+trainer.limit_train_batches=2", "overlay_studies=0", "callbacks.progress_bar=null",
        "evaluate=false", f"paths.root_dir={tmp_path}", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert "not a multiple" in (sweep / "0" / "error.txt").read_text()  # 72 px does not fit the stride-16 grid
    assert not (sweep / "1" / "error.txt").exists()
    assert json.loads((sweep / "1" / "metrics.json").read_text())["epoch"] == 0


def test_channels_last_and_compiled_runs_give_plain_checkpoints(tmp_path, synthetic_root):
    from spinectx.lit import LandmarkModule

    cfg = make_cfg(tmp_path, synthetic_root, ["trainer.max_epochs=1", "+trainer.limit_train_batches=2", "evaluate=false",
                                              "model.channels_last=true", "model.compile=true",
                                              "+model.compile_kwargs.backend=eager"])
    train(cfg)
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    assert not any("_orig_mod" in k for k in state)
    image = torch.rand(2, 1, 64, 64)
    outputs = []
    for kwargs in ({}, {"compile": False, "channels_last": False}):
        module = LandmarkModule.load_from_checkpoint(ckpt, map_location="cpu", **kwargs).eval()
        with torch.no_grad():
            outputs.append(module(image))
    assert torch.allclose(outputs[0], outputs[1], atol=1e-5)


@pytest.mark.slow  # ~70 s; skipping finished cells is in the fast suite (the many-overrides sweep); this adds set-aside of stale cells
def test_rerun_sweep_skips_finished_cells(tmp_path, synthetic_root):
    sweep = tmp_path / "sweep"
    args = ["--multirun", "data.fold=0,1", "logger=none", "trainer=cpu", *data_args(synthetic_root), "data.image_size=64",
            "trainer.max_epochs=1", "+trainer.limit_train_batches=2", "overlay_studies=0", "callbacks.progress_bar=null",
            f"paths.root_dir={tmp_path}", f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=fold${data.fold}"]
    run("spinectx.cli.train", *args, cwd=tmp_path)
    before = {d.name: (d / "metrics.json").stat().st_mtime_ns for d in sweep.iterdir() if d.is_dir()}
    assert sorted(before) == ["fold0", "fold1"]
    (sweep / "fold1" / "metrics.json").unlink()  # as if cell 1 had not finished
    proc = run("spinectx.cli.train", *args, cwd=tmp_path)
    assert "already finished, skipped" in proc.stdout + proc.stderr
    assert (sweep / "fold0" / "metrics.json").stat().st_mtime_ns == before["fold0"]  # untouched
    assert "evaluation" in json.loads((sweep / "fold1" / "metrics.json").read_text())  # redone
    # the same cells with other settings are not reused: the old results are set aside
    run("spinectx.cli.train", *args, "+trainer.limit_val_batches=1", cwd=tmp_path)
    assert (sweep / "fold0" / "metrics.json").stat().st_mtime_ns != before["fold0"]
    assert len(list((sweep / "fold0").glob("stale-*/metrics.json"))) == 1


def test_ablation_experiments_compose(tmp_path, synthetic_root):
    cfg = make_cfg(tmp_path, synthetic_root, ["experiment=table2", "method=hrnet_w32", "scale=paper"])
    assert (cfg.model.name, cfg.model.backbone, cfg.model.msc) == ("hrnet", "hrnet_w32", False)
    assert (cfg.trainer.max_epochs, cfg.data.num_folds) == (60, 4)  # (make_cfg shrinks size and passes)
    from hydra import compose, initialize_config_dir

    from spinectx.cli import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        batch = {m: compose("train", overrides=["experiment=table2", f"method={m}", "scale=paper"]).data.batch_size
                 for m in ("hrnet_w32", "simplebaseline_r50_msc", "ccfnet_r50")}
    assert batch == {"hrnet_w32": 32, "simplebaseline_r50_msc": 12, "ccfnet_r50": 12}  # the release's batches
    cfg = make_cfg(tmp_path, synthetic_root, ["experiment=table1", "method=scn_r18_msc"])
    assert (cfg.model.name, cfg.model.msc, cfg.logger.wandb.group, cfg.resume) == ("scn", True, "table1", True)
    assert (cfg.trainer.max_epochs, cfg.data.num_folds) == (4, 4)  # scale=smoke by default


@pytest.mark.parametrize("scale, folds", [("smoke", "0"), ("paper", "0,1,2,3")])
def test_the_scale_decides_which_folds_a_sweep_runs(scale, folds):
    from hydra import compose, initialize_config_dir

    from spinectx.cli import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=data_fraction", f"scale={scale}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert str(params["data.fold"]) == folds
    assert params["data.fraction"] == "0.1,0.25,0.5,0.75,1.0" and len(params["method"].split(",")) == 4


def test_an_identical_cell_of_another_sweep_is_reused(tmp_path, synthetic_root):
    """The data-fraction sweep's 100 % cell reuses the finished Table 1 cell, also with the data root
    (an absolute path, as ``make reproduce DATA_ROOT=...`` passes it) on the command line."""
    args = ["--multirun", "method=ccfnet_r18_msc", "logger=none", "trainer=cpu", *data_args(synthetic_root),
            "data.image_size=64", "data.num_rep=1", "trainer.max_epochs=1", "+trainer.limit_train_batches=2",
            "overlay_studies=0", "callbacks.progress_bar=null", f"paths.root_dir={tmp_path}"]
    run("spinectx.cli.train", *args, "experiment=table1", cwd=tmp_path)
    (source,) = [d for d in (tmp_path / "logs" / "table1" / "sweep").iterdir() if d.is_dir()]
    assert f"data.root={synthetic_root}" in OmegaConf.load(source / ".hydra" / "overrides.yaml")  # one folder per cell
    proc = run("spinectx.cli.train", *args, "experiment=data_fraction", "data.fraction=1.0", cwd=tmp_path)
    assert "its results are reused" in proc.stdout + proc.stderr
    (cell,) = [d for d in (tmp_path / "logs" / "data_fraction" / "sweep").iterdir() if d.is_dir()]
    reused = json.loads((cell / "metrics.json").read_text())
    assert reused.pop("reused_from") == str(source)
    assert reused == json.loads((source / "metrics.json").read_text())
    assert not (cell / "checkpoints").exists()  # nothing was trained
    # another setting is another cell: it trains
    run("spinectx.cli.train", *args, "experiment=data_fraction", "data.fraction=0.5", cwd=tmp_path)
    cells = [d for d in (tmp_path / "logs" / "data_fraction" / "sweep").iterdir() if d.is_dir()]
    assert len(cells) == 2 and len([d for d in cells if (d / "checkpoints").is_dir()]) == 1


# the ~13 ordinary overrides of a narrowed sweep; joined they pass the 255 bytes of a file name
MANY_OVERRIDES = ["data.augment.p=0.3", "data.augment.rotate=10.0", "data.augment.flip=0.5", "data.augment.intensity=0.3",
                  "data.augment.bias_field_coef=0.2", "data.augment.neighbour_p=0.2", "data.num_rep=1", "data.seed=0",
                  "trainer.log_every_n_steps=1", "trainer.max_epochs=1", "+trainer.limit_train_batches=2",
                  "+trainer.limit_val_batches=1", "seed=7"]


def test_job_dirname_is_a_bounded_safe_folder_name(tmp_path):
    import hashlib
    import re

    from spinectx.cli import JOB_DIRNAME_MAX, job_dirname

    for short in ("data.fold=0,method=ccfnet_r18_msc", "+trainer.limit_train_batches=2,data.fraction=0.5"):
        assert job_dirname(short) == short  # the folders of earlier sweeps keep their names
    long = ",".join(sorted([*MANY_OVERRIDES, "data.fold=0", "data.root=/data/challenge/tianchi", "experiment=table1",
                            "method=ccfnet_r18_msc"]))
    assert len(long) > 255
    name = job_dirname(long)
    assert name == job_dirname(long) and len(name.encode()) <= JOB_DIRNAME_MAX <= 120
    assert name.endswith("-" + hashlib.sha1(long.encode()).hexdigest()[:12]) and "/" not in name
    assert re.fullmatch(r"[A-Za-z0-9_+~@,=-][A-Za-z0-9._+~@,=-]*", name)
    assert "method=ccfnet_r18_msc" in name and "data.fold=0" in name  # short items stay readable
    # a path: '/' replaced, a hash added (an earlier name could not have had it: it nested folders)
    assert job_dirname("data.root=/a/b,method=x") == "data.root=_a_b,method=x-" + hashlib.sha1(
        b"data.root=/a/b,method=x").hexdigest()[:12]
    # distinct overrides, distinct names; each one a single folder the file system takes
    variants = [long.replace("tianchi", f"tianchi{i}") for i in range(300)] + [
        f"a=/{i}" for i in range(300)] + ["x=" + "y" * n for n in range(100, 400)] + ["", "tags=[a,b]", "../..", "x=a b"]
    names = [job_dirname(v) for v in variants]
    assert len(set(names)) == len(variants) and job_dirname("") == "no-overrides"
    for n in names:
        assert 0 < len(n.encode()) <= JOB_DIRNAME_MAX and n not in (".", "..")
        (tmp_path / n).mkdir()
    assert len([d for d in tmp_path.iterdir() if d.is_dir()]) == len(variants)


def test_job_dirname_keeps_the_sweep_axes_and_short_keys_readable():
    """~13 overrides, an absolute data.root and several top-level settings: the short form once
    kept deep or long items while the fold (and the method) fell out, so cells differed only by
    hash. Paths go first, then the longest keys; method, fold and fraction always stay."""
    from spinectx.cli import job_dirname

    extra = ["experiment=data_fraction", "method=simplebaseline_r18_msc", "logger=none", "trainer=cpu",
             "overlay_studies=0", "skip_finished=true", "data.fraction=0.25", "data.root=/home/user/data/tianchi_spine",
             "paths.root_dir=/scratch/user/spinectx"]
    names = {fold: job_dirname(",".join(sorted([*MANY_OVERRIDES, *extra, f"data.fold={fold}"]))) for fold in range(4)}
    for fold, name in names.items():
        assert f"data.fold={fold}" in name and "method=simplebaseline_r18_msc" in name and "data.fraction=0.25" in name
        assert "tianchi_spine" not in name and "scratch" not in name  # path-valued items dropped first
        assert "data.augment.bias_field_coef" not in name  # a long key before short ones
        assert "logger=none" in name and "seed=7" in name
    assert len(set(names.values())) == 4
    # a name never starts with '-' or '.', even when the overrides do
    for odd in ("-x=1", ".x=1", "--help", "..", ".hidden=1,a=2", "-" * 300):
        name = job_dirname(odd)
        assert name[0] not in "-." and "/" not in name and 0 < len(name) <= 120, (odd, name)
    assert job_dirname("-x=1").startswith("x=1-") and job_dirname("-x=1") != job_dirname("x=1")
    assert job_dirname("x=1") == "x=1"  # a safe name stays as it was


@pytest.mark.parametrize("experiment", ["table1", "table2", "data_fraction"])
@pytest.mark.parametrize("launcher", ["basic", "local", "slurm"])
def test_every_sweep_experiment_names_its_cells_with_job_dirname(experiment, launcher):
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from spinectx.cli import CONF_DIR, job_dirname

    overrides = [f"experiment={experiment}", "method=ccfnet_r18_msc", "data=tianchi", "data.root=/data/tianchi",
                 "data.fold=0", *MANY_OVERRIDES]
    if launcher != "basic":
        overrides.append(f"hydra/launcher={launcher}")
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", return_hydra_config=True, overrides=overrides)
    HydraConfig.instance().set_config(cfg)  # what Hydra does before it names the job folder
    try:
        subdir = OmegaConf.select(cfg, "hydra.sweep.subdir")
        sweep_dir = OmegaConf.select(cfg, "hydra.sweep.dir")
    finally:
        HydraConfig.instance().cfg = None
    assert subdir == job_dirname(cfg.hydra.job.override_dirname) and "/" not in subdir and len(subdir) <= 120
    assert "data.root=/data/tianchi" in cfg.hydra.job.override_dirname  # a path: the name gets a hash
    assert subdir.startswith("data.fold=0,") and subdir[-13] == "-" and int(subdir[-12:], 16) >= 0
    assert sweep_dir.endswith(f"/{experiment}/sweep")


def test_a_sweep_with_many_overrides_and_a_path_writes_flat_cells_and_a_rerun_skips_them(tmp_path, synthetic_root):
    """The README's 'narrow any axis' with 13 ordinary overrides and absolute paths (data root,
    root dir): once a ``File name too long`` before any job ran. Now every cell is one folder of the
    sweep, its full overrides in ``.hydra/overrides.yaml``; a rerun (here through the joblib
    launcher, whose workers need the resolver too) skips the finished cells."""
    args = ["--multirun", "experiment=table1", "method=ccfnet_r18_msc,simplebaseline_r18_msc", "logger=none",
            "trainer=cpu", *data_args(synthetic_root), "data.image_size=64", *MANY_OVERRIDES, "overlay_studies=0",
            "callbacks.progress_bar=null", f"paths.root_dir={tmp_path}"]
    run("spinectx.cli.train", *args, cwd=tmp_path)
    sweep = tmp_path / "logs" / "table1" / "sweep"
    cells = sorted(d for d in sweep.iterdir() if d.is_dir())
    assert len(cells) == 2
    for cell in cells:
        assert len(cell.name.encode()) <= 120 and "evaluation" in json.loads((cell / "metrics.json").read_text())
        overrides = [str(o) for o in OmegaConf.load(cell / ".hydra" / "overrides.yaml")]
        assert f"data.root={synthetic_root}" in overrides and len(overrides) >= 13 + 7
    finished = {c.name: (c / "metrics.json").stat().st_mtime_ns for c in cells}
    run("spinectx.cli.train", *args, "hydra/launcher=local", "hydra.launcher.n_jobs=1", cwd=tmp_path)
    assert sorted(d.name for d in sweep.iterdir() if d.is_dir()) == sorted(finished)
    assert {c.name: (c / "metrics.json").stat().st_mtime_ns for c in cells} == finished  # skipped, not rerun
    assert all("already finished, skipped" in (c / "train.log").read_text() for c in cells)
    from spinectx.report import find_jobs  # and the report finds both cells

    jobs = find_jobs(sweep)
    assert sorted(j.method for j in jobs) == ["CCF-Net", "SimpleBaseline"] and all(j.metrics for j in jobs)


def test_tiny_sweep_then_report(tmp_path, synthetic_root, monkeypatch):
    """2 methods × 2 fractions × 1 fold, a few steps each, one deliberately failing extra job."""
    sweep = tmp_path / "sweep"
    common = ["logger=none", "trainer=cpu", *data_args(synthetic_root), "data.image_size=64", "trainer.max_epochs=1",
              "+trainer.limit_train_batches=2", "overlay_studies=2", "callbacks.progress_bar=null",
              f"paths.root_dir={tmp_path}", f"hydra.sweep.dir={sweep}"]
    run("spinectx.cli.train", "--multirun", "method=ccfnet_r18_msc,simplebaseline_r18_msc", "data.fraction=0.5,1.0",
        "data.fold=0", *common, cwd=tmp_path)
    run("spinectx.cli.train", "--multirun", "method=scn_r18_msc", "data.fold=0", *common, "data.image_size=72",
        "hydra.sweep.subdir=failing", cwd=tmp_path)  # 72 px: not a multiple of SCN's stride 16
    out = tmp_path / "report"
    run("spinectx.cli.report", f"sweep={sweep}", f"out={out}", cwd=tmp_path)
    rows = {(r["method"], r["msc"]): r for r in csv.DictReader((out / "table1.csv").open())}
    assert len(rows) == 6  # every cell of Table 1, finished or not
    assert rows[("CCF-Net", "True")]["runs"] == "1" and rows[("SimpleBaseline", "True")]["runs"] == "1"
    assert rows[("SCN", "True")]["status"] == "failed" and rows[("SCN", "False")]["status"] == "missing"
    assert 0.0 <= float(rows[("CCF-Net", "True")]["Score"]) <= 100.0
    assert float(rows[("CCF-Net", "True")]["paper_Score"]) == 80.50
    md = (out / "table1.md").read_text()
    assert "| CCF-Net | resnet18 | ✓ | 4.83 |" in md and "missing" in md
    assert not (out / "table2.md").exists()  # no job for Table 2
    fractions = list(csv.DictReader((out / "data_fraction.csv").open()))
    assert sorted((r["method"], r["fraction"]) for r in fractions if r["runs"] == "1") == [
        ("CCF-Net", "0.5"), ("CCF-Net", "1.0"), ("SimpleBaseline", "0.5"), ("SimpleBaseline", "1.0")]
    assert (out / "data_fraction.png").stat().st_size > 10_000
    report = (out / "report.md").read_text()
    assert "5 jobs: 4 finished, 1 failed" in report

    # the results notebook shows the tables, the figure and overlays of this sweep
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("REPORT_DIR", str(out))
    monkeypatch.setenv("SWEEP_DIR", str(sweep))
    nb = nbformat.read(SRC.parent / "notebooks" / "results.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 3  # figure + 2 overlays
    assert any("CCF-Net" in o.get("data", {}).get("text/markdown", "") for o in outputs)


def test_slurm_launcher_config_composes_for_multinode_ddp(tmp_path, synthetic_root):
    from hydra import compose, initialize_config_dir

    from spinectx.cli import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", return_hydra_config=True, overrides=[
            "experiment=table1", "hydra/launcher=slurm", "hydra.launcher.nodes=2", "hydra.launcher.gpus_per_node=4",
            "hydra.launcher.tasks_per_node=4", "trainer=ddp", "trainer.num_nodes=2", "trainer.devices=4"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.nodes * launcher.tasks_per_node == cfg.trainer.num_nodes * cfg.trainer.devices == 8
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.sync_batchnorm
    # and the command line prints the job config with it
    proc = run("spinectx.cli.train", "experiment=table1", "hydra/launcher=slurm", "--cfg", "hydra", cwd=tmp_path)
    assert "submitit" in proc.stdout
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        local = compose("train", return_hydra_config=True, overrides=["hydra/launcher=local"]).hydra.launcher
    assert local._target_.endswith("JoblibLauncher") and local.n_jobs == 2
