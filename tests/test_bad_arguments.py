"""Bad command-line values and files end every command the same clean way: one
``spinectx-<app>: error: <message>`` line on stderr, exit status 2, no traceback. Covers files that
are not checkpoints (and resuming after one), fold settings, prediction settings, outputs that
are folders, one split given as a string, and a prediction that finds nothing to predict."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spinectx.checkpoint import read_checkpoint
from spinectx.data.errors import CheckpointError, ConfigError
from tests.conftest import TIANCHI_LANDMARKS

BIN = Path(sys.executable).parent


def run_app(main, *args, monkeypatch, capsys) -> tuple[int | None, str]:
    """Run a Hydra app's entry point in this process (as its console script does) → (exit status, stderr)."""
    monkeypatch.setattr(sys, "argv", ["app", *args])
    with pytest.raises(SystemExit) as stopped:
        main()
    return stopped.value.code, capsys.readouterr().err


def assert_clean_error(code, err: str, app: str, *words: str) -> None:
    assert code == 2, err[-3000:]
    line = next((x for x in err.splitlines() if x.startswith(f"{app}: error: ")), None)
    assert line is not None, err[-3000:]
    for word in words:
        assert word in line, (word, line)
    assert "Traceback" not in err


def not_checkpoints(folder: Path) -> dict[str, Path]:
    """Files named .ckpt that are not spinectx checkpoints, by kind."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / f"{name}.ckpt" for name in ("text", "empty", "truncated", "state_dict")}
    files["text"].write_text("epoch=3 score=0.91\n")
    files["empty"].write_bytes(b"")
    torch.save({"state_dict": {"w": torch.zeros(64)}, "hyper_parameters": {}}, folder / "whole.ckpt")
    whole = (folder / "whole.ckpt").read_bytes()
    files["truncated"].write_bytes(whole[: len(whole) // 2])  # a copy cut short (full disk, killed transfer)
    torch.save({"w": torch.zeros(4)}, files["state_dict"])  # a bare state dict: readable, not a checkpoint
    return files


# --------------------------------------------------------------------------------------------
# files that are not checkpoints


def test_files_that_are_not_checkpoints_are_named(tmp_path):
    from spinectx.inference import load_module

    for kind, path in not_checkpoints(tmp_path).items():
        expected = "not a spinectx checkpoint" if kind == "state_dict" else "not a readable checkpoint"
        for read in (read_checkpoint, load_module):
            with pytest.raises(CheckpointError, match=expected) as err:
                read(path)
            assert str(err.value).startswith(f"{path}: "), err.value
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_module(tmp_path / "none.ckpt")


@pytest.mark.parametrize("app", ["train", "predict", "eval"])
def test_every_command_refuses_a_file_that_is_not_a_checkpoint(tmp_path, synthetic_root, app, monkeypatch, capsys):
    from spinectx.cli import eval as eval_cli
    from spinectx.cli import predict, train

    bad = not_checkpoints(tmp_path / "ckpts")["text" if app != "eval" else "truncated"]
    main, args = {
        "train": (train.main, [f"ckpt_path={bad}", "logger=none", "trainer=cpu", f"paths.root_dir={tmp_path}"]),
        "predict": (predict.main, [f"ckpt_path={bad}", f"input={synthetic_root / 'lumbar_train' / 'study0'}",
                                   f"output={tmp_path / 'pred.json'}"]),
        "eval": (eval_cli.main, [f"ckpt_path={bad}", f"paths.root_dir={tmp_path}"]),
    }[app]
    code, err = run_app(main, *args, monkeypatch=monkeypatch, capsys=capsys)
    assert_clean_error(code, err, f"spinectx-{app}", str(bad), "not a readable checkpoint")


def test_a_file_that_is_not_a_checkpoint_fails_cleanly_in_a_real_process(tmp_path, synthetic_root):
    bad = not_checkpoints(tmp_path / "ckpts")["truncated"]
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([str(BIN / "spinectx-predict"), f"ckpt_path={bad}", f"input={synthetic_root / 'lumbar_train'}",
                           f"output={tmp_path / 'pred.json'}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert_clean_error(proc.returncode, proc.stderr, "spinectx-predict", str(bad), "not a readable checkpoint",
                       "PytorchStreamReader")
    assert not (tmp_path / "pred.json").exists()


# --------------------------------------------------------------------------------------------
# resume=true with an unreadable last.ckpt


def fake_checkpoint(path: Path, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "hyper_parameters": {}, "epoch": 0}, path)
    os.utime(path, (mtime, mtime))
    return path


def test_resume_falls_back_to_the_newest_readable_checkpoint(tmp_path, caplog):
    from omegaconf import OmegaConf

    from spinectx.cli.train import resolve_resume

    folder = tmp_path / "run" / "checkpoints"
    older = fake_checkpoint(folder / "epoch000-score0.5000.ckpt", 1_000)
    newer = fake_checkpoint(folder / "epoch003-score0.6000.ckpt", 2_000)
    broken = fake_checkpoint(folder / "epoch005-score0.7000.ckpt", 3_000)
    broken.write_bytes(broken.read_bytes()[:100])  # newest, but truncated
    (folder / "last.ckpt").write_text("")  # killed while writing
    cfg = OmegaConf.create({"resume": True, "ckpt_path": None})
    with caplog.at_level(logging.WARNING, logger="spinectx.train"):
        run_dir, ckpt = resolve_resume(cfg, tmp_path / "run")
    assert run_dir == tmp_path / "run" and ckpt == str(newer)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert str(folder / "last.ckpt") in warning and str(newer) in warning and "not a readable checkpoint" in warning
    # a readable last.ckpt is taken as it is
    fake_checkpoint(folder / "last.ckpt", 4_000)
    assert resolve_resume(cfg, tmp_path / "run")[1] == str(folder / "last.ckpt")
    # nothing readable: a clean error naming the run, never a fresh start that hides the problem
    for path in (folder / "last.ckpt", older, newer):
        path.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot resume: not a readable checkpoint") as err:
        resolve_resume(cfg, tmp_path / "run")
    assert str(folder / "last.ckpt") in str(err.value) and older.name in str(err.value) and str(tmp_path / "run") in str(err.value)


def test_resume_with_no_readable_checkpoint_exits_cleanly(tmp_path, monkeypatch, capsys):
    from spinectx.cli import train

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_text("half")
    code, err = run_app(train.main, "resume=true", "logger=none", "trainer=cpu", f"paths.root_dir={tmp_path}",
                        f"hydra.run.dir={run}", monkeypatch=monkeypatch, capsys=capsys)
    assert_clean_error(code, err, "spinectx-train", str(run / "checkpoints" / "last.ckpt"), "cannot resume")


def test_training_resumes_from_the_best_epoch_when_last_ckpt_is_unreadable(tmp_path, synthetic_root, caplog):
    from test_train import make_cfg

    from spinectx.cli.train import train

    fast = ["+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1", "trainer.check_val_every_n_epoch=1",
            "evaluate=false", "overlay_studies=0", "data.batch_size=2"]
    train(make_cfg(tmp_path, synthetic_root, [*fast, "trainer.max_epochs=1"]))
    folder = tmp_path / "run" / "checkpoints"
    (best,) = folder.glob("epoch000-*.ckpt")
    (folder / "last.ckpt").write_bytes((folder / "last.ckpt").read_bytes()[:2000])  # cut short by a kill
    with caplog.at_level(logging.WARNING, logger="spinectx.train"):
        train(make_cfg(tmp_path, synthetic_root, [*fast, "trainer.max_epochs=2", "resume=true"]))
    assert any(str(best) in r.getMessage() and "last.ckpt" in r.getMessage() for r in caplog.records)
    resumed = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=False)
    assert resumed["epoch"] == 1  # epoch 0 came from the best checkpoint, epoch 1 was trained on
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [0, 1]


# --------------------------------------------------------------------------------------------
# fold, fraction and other data settings


@pytest.mark.parametrize(("setting", "message"), [
    ({"fold": 7}, "data.fold must be in [0, 4)"),
    ({"fold": -1}, "data.fold must be in [0, 4)"),
    ({"fold": "abc"}, "data.fold must be an integer, got 'abc'"),
    ({"fold": 1.5}, "data.fold must be an integer"),
    ({"num_folds": 1}, "data.num_folds must be ≥ 2"),
    ({"fraction": 0}, "data.fraction must be a number in (0.0, 1.0], got 0"),
    ({"fraction": 1.5}, "data.fraction must be a number in (0.0, 1.0]"),
    ({"fraction": float("nan")}, "data.fraction must be a number"),
    ({"batch_size": 0}, "data.batch_size must be an integer ≥ 1"),
    ({"image_size": "big"}, "data.image_size must be an integer"),
    ({"num_workers": -1}, "data.num_workers must be an integer ≥ 0"),
    ({"splits": []}, "data.splits must be split names"),
    ({"splits": None}, "data.splits must be split names"),
], ids=lambda v: str(v) if not isinstance(v, str) else "")
def test_data_settings_are_checked_when_the_datamodule_is_built(tmp_path, setting, message):
    from spinectx.data.datamodule import SpineDataModule

    kwargs = {"root": str(tmp_path), "splits": ["lumbar_train"], "landmarks": TIANCHI_LANDMARKS, **setting}
    with pytest.raises(ConfigError) as err:
        SpineDataModule(**kwargs)
    assert message in str(err.value)
    assert isinstance(err.value, ValueError)  # callers that catch ValueError still do
    one = SpineDataModule(str(tmp_path), "lumbar_train", TIANCHI_LANDMARKS, fold="3", fraction="0.5")
    assert one.splits == ["lumbar_train"] and one.fold == 3 and one.fraction == 0.5


@pytest.mark.parametrize("override", ["data.fold=7", "data.fraction=0", "data.num_folds=1", "data.splits=[]"])
def test_training_refuses_bad_data_settings_cleanly(tmp_path, override, monkeypatch, capsys):
    from spinectx.cli import train

    code, err = run_app(train.main, override, "logger=none", "trainer=cpu", f"paths.root_dir={tmp_path}",
                        monkeypatch=monkeypatch, capsys=capsys)
    assert_clean_error(code, err, "spinectx-train", override.split("=")[0])
    (error_txt,) = (tmp_path / "logs" / "train" / "runs").glob("*/error.txt")  # the traceback stays on record
    assert "ConfigError" in error_txt.read_text()


def test_evaluation_refuses_a_bad_fold_before_loading_the_model(tmp_path, monkeypatch, capsys):
    from spinectx.cli import eval as eval_cli

    code, err = run_app(eval_cli.main, "ckpt_path=none.ckpt", "data.fold=7", f"paths.root_dir={tmp_path}",
                        monkeypatch=monkeypatch, capsys=capsys)
    assert_clean_error(code, err, "spinectx-eval", "data.fold must be in [0, 4)", "got 7")


# --------------------------------------------------------------------------------------------
# prediction settings, nothing to predict


@pytest.mark.parametrize(("override", "message"), [
    ("batch_size=0", "batch_size must be an integer ≥ 1, got 0"),
    ("batch_size=abc", "batch_size must be an integer, got 'abc'"),
    ("threshold=abc", "threshold must be a probability, got 'abc'"),
    ("threshold=1.5", "threshold must be a probability in [0, 1]"),
    ("input_size=0", "input_size must be an integer ≥ 1"),
    ("device=cuda:99", "device=cuda:99"),
    ("device=gpu0", "device must be a torch device"),
    ("tta=maybe", "tta must be true, false or null"),
])
def test_prediction_settings_are_checked_before_any_work(tmp_path, override, message, monkeypatch, capsys):
    from spinectx.cli import predict

    # the input does not exist and the checkpoint is not one: the settings are refused first
    code, err = run_app(predict.main, "ckpt_path=none.ckpt", f"input={tmp_path / 'nowhere'}", override,
                        f"output={tmp_path / 'p.json'}", monkeypatch=monkeypatch, capsys=capsys)
    assert_clean_error(code, err, "spinectx-predict", message)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_prediction_on_cuda_without_cuda_is_refused():
    from spinectx.cli.predict import check_device

    with pytest.raises(ConfigError, match="device=cuda: CUDA is not available on this machine; use device=cpu"):
        check_device("cuda")
    assert check_device("cpu") == "cpu"


def test_nothing_to_predict_exits_2_with_the_first_problems(tmp_path):
    """Once exit 1 with 'nothing predicted' on stdout only."""
    for name in ("a", "b"):
        (tmp_path / "in" / name).mkdir(parents=True)
        (tmp_path / "in" / name / "x.dcm").write_bytes(b"\x00" * 200)
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([str(BIN / "spinectx-predict"), "ckpt_path=none.ckpt", f"input={tmp_path / 'in'}",
                           f"output={tmp_path / 'p.json'}"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert_clean_error(proc.returncode, proc.stderr, "spinectx-predict", f"{tmp_path / 'in'}: nothing predicted: ",
                       str(tmp_path / "in" / "a"), str(tmp_path / "in" / "b"))
    assert not (tmp_path / "p.json").exists()


# --------------------------------------------------------------------------------------------
# outputs that are folders, one split as a string


@pytest.mark.parametrize("app", ["data", "predict", "score"])
def test_an_output_that_is_a_folder_is_refused(tmp_path, synthetic_root, app, monkeypatch, capsys):
    from spinectx.cli import data, predict, score

    folder = tmp_path / "existing"
    folder.mkdir()
    main, args, setting = {
        "data": (data.main, [f"root={synthetic_root}", f"out={folder}"], "out"),
        "predict": (predict.main, ["ckpt_path=x.ckpt", f"input={synthetic_root}", f"output={folder}"], "output"),
        "score": (score.main, [f"pred={tmp_path}/p.json", f"gt={tmp_path}/g.json", f"images={tmp_path}", f"out={folder}"],
                  "out"),
    }[app]
    code, err = run_app(main, *args, monkeypatch=monkeypatch, capsys=capsys)
    assert_clean_error(code, err, f"spinectx-{app}", f"{setting}={folder} is a folder")
    assert list(folder.iterdir()) == []


def test_operating_system_errors_are_bad_input_and_name_the_file(capsys):
    from hydra.errors import InstantiationException

    from spinectx.cli.failure import fail_cleanly

    @fail_cleanly("spinectx-x")
    def writes_into_a_folder():
        open("/")  # noqa: SIM115 - IsADirectoryError

    with pytest.raises(SystemExit) as stopped:
        writes_into_a_folder()
    assert stopped.value.code == 2 and capsys.readouterr().err == "spinectx-x: error: /: Is a directory\n"

    @fail_cleanly("spinectx-x")
    def wrapped():  # what hydra.utils.instantiate does with an error raised in a constructor
        try:
            raise ConfigError("data.fold must be in [0, 4), got 7")
        except ConfigError as exc:
            raise InstantiationException("Error in call to target 'SpineDataModule'") from exc

    with pytest.raises(SystemExit):
        wrapped()
    assert capsys.readouterr().err == "spinectx-x: error: data.fold must be in [0, 4), got 7\n"

    @fail_cleanly("spinectx-x")
    def bug():
        raise KeyError("a bug keeps its traceback")

    with pytest.raises(KeyError):
        bug()


def test_one_split_given_as_a_string_is_that_split(tmp_path, synthetic_root, monkeypatch, capsys):
    from spinectx.cli import data
    from spinectx.cli.data import check_dataset

    as_list = check_dataset(str(synthetic_root), ["lumbar_train"], TIANCHI_LANDMARKS)
    as_string = check_dataset(str(synthetic_root), "lumbar_train", TIANCHI_LANDMARKS)
    assert as_string["splits"] == ["lumbar_train"] and as_string["totals"] == as_list["totals"]
    assert as_string["totals"]["studies"] == 12 and not any("'l'" in p for p in as_string["problems"])
    for bad in ([], None, [""], 3):
        with pytest.raises(ConfigError, match="splits must be split names"):
            check_dataset(str(synthetic_root), bad, TIANCHI_LANDMARKS)
    out = tmp_path / "check.json"
    monkeypatch.setattr(sys, "argv", ["spinectx-data", f"root={synthetic_root}", "splits=lumbar_train", f"out={out}"])
    data.main()
    assert json.loads(out.read_text())["totals"]["studies"] == 12



@pytest.mark.parametrize(("app", "args", "message"), [
    ("synth", ["out={tmp}/ds", "studies=abc"], "studies must be an integer, got 'abc'"),
    ("synth", ["out={tmp}/ds", "studies=0"], "studies must be an integer ≥ 1, got 0"),
    ("synth", ["out={tmp}/ds", "split=a/b"], "split must be a folder name"),
    ("profile", ["out={tmp}/p.csv", "input_size=0"], "input_size must be an integer ≥ 64, got 0"),
    ("profile", ["out={tmp}/p.csv", "input_size=100"], "input_size must be a multiple of 32"),
    ("profile", ["out={tmp}"], "out={tmp} is a folder"),
    ("score", ["pred=p.json", "gt=g.json", "images=.", "threshold_mm=abc"], "threshold_mm must be a positive distance in mm"),
    ("score", ["pred=p.json", "gt=g.json", "images=.", "threshold_mm=-1"], "threshold_mm must be a positive distance"),
    ("eval", ["ckpt_path=none.ckpt", "threshold_mm=0"], "threshold_mm must be a positive distance in mm"),
    ("eval", ["ckpt_path=none.ckpt", "overlay_studies=-2"], "overlay_studies must be an integer ≥ 0"),
    ("train", ["seed=abc", "logger=none"], "seed must be an integer, got 'abc'"),
], ids=lambda v: v if isinstance(v, str) and "=" not in v and " " not in v else None)
def test_other_settings_are_checked_before_any_work(tmp_path, app, args, message, monkeypatch, capsys):
    import importlib

    main = importlib.import_module(f"spinectx.cli.{app}").main
    args = [a.format(tmp=tmp_path) for a in args]
    if app in ("eval", "train"):
        args.append(f"paths.root_dir={tmp_path}")
    monkeypatch.chdir(tmp_path)
    code, err = run_app(main, *args, monkeypatch=monkeypatch, capsys=capsys)
    assert_clean_error(code, err, f"spinectx-{app}", message.format(tmp=tmp_path))
    assert not (tmp_path / "ds").exists() and not (tmp_path / "p.csv").exists()


def test_data_check_without_a_root_names_the_default_root(tmp_path, monkeypatch, capsys):
    """spinectx-data reads data.root (default <SPINECTX_HOME>/data/tianchi) when root= is not given."""
    from spinectx.cli.data import main

    monkeypatch.chdir(tmp_path)
    code, err = run_app(main, f"paths.root_dir={tmp_path}", monkeypatch=monkeypatch, capsys=capsys)
    assert_clean_error(code, err, "spinectx-data", f"{tmp_path}/data/tianchi: dataset root not found")


@pytest.mark.parametrize(("app", "args", "key"), [
    ("eval", [], "ckpt_path"),
    ("score", ["gt=g.json", "images=."], "pred"),
    ("synth", [], "out"),
])
def test_a_mandatory_value_not_given_is_named_without_a_traceback(tmp_path, app, args, key, monkeypatch, capsys):
    """Once Hydra's traceback ending in 'MissingMandatoryValue' with exit status 1."""
    import importlib

    main = importlib.import_module(f"spinectx.cli.{app}").main
    monkeypatch.chdir(tmp_path)
    extra = [f"paths.root_dir={tmp_path}"] if app == "eval" else []
    code, err = run_app(main, *args, *extra, monkeypatch=monkeypatch, capsys=capsys)
    assert_clean_error(code, err, f"spinectx-{app}", f"{key}: missing; give {key}=... on the command line")


# --------------------------------------------------------------------------------------------
# RSNA 2024 settings


def test_an_unknown_rsna_view_names_the_views(tmp_path, monkeypatch, capsys, synthetic_rsna_root):
    from spinectx.cli.data import main

    code, err = run_app(main, "data=rsna2024", f"data.root={synthetic_rsna_root}", "data.view=spinl",
                        f"out={tmp_path / 'check.json'}", f"hydra.run.dir={tmp_path / 'run'}",
                        monkeypatch=monkeypatch, capsys=capsys)
    assert_clean_error(code, err, "spinectx-data", "data.view='spinl'", "spinal", "foraminal", "subarticular")


def test_the_binary_head_on_rsna_is_refused_with_the_reason(tmp_path, monkeypatch, capsys, synthetic_rsna_root):
    from spinectx.cli.train import main

    code, err = run_app(main, "data=rsna2024", f"data.root={synthetic_rsna_root}", "model.class_head=binary",
                        "logger=none", "data.num_workers=0", "data.image_size=64", f"paths.root_dir={tmp_path}",
                        monkeypatch=monkeypatch, capsys=capsys)
    assert_clean_error(code, err, "spinectx-train", "model.class_head=multiclass", "class_head=binary")
