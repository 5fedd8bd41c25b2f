"""spinectx-train: fit a model on one fold, keep the best checkpoint and its metrics.

    spinectx-train [experiment=demo] [model=ccfnet model.backbone=resnet18 model.msc=true]
                   [data=tianchi data.root=DIR data.fold=0 data.fraction=0.5] [trainer.max_epochs=N]
                   [logger=wandb|csv|none] [seed=S] [ckpt_path=last]

Writes into the run directory: ``checkpoints/`` (the best epoch by val/Score, and ``last.ckpt``
rewritten after every training epoch, see ``conf/callbacks/default.yaml``), ``metrics.json`` (best
validation epoch), ``predictions.png`` (held-out studies with true vs predicted landmarks),
``.hydra/`` (``config.yaml``, ``overrides.yaml`` = the job's full command-line overrides).
Sweep experiments name each job folder ``spinectx.cli.job_dirname(<overrides>)``: the overrides
themselves when short and safe, else a short readable form + a hash.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import hydra
import lightning as L
import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from spinectx.cli import CONF_DIR
from spinectx.cli.failure import fail_cleanly
from spinectx.lit.callbacks import (METRIC_KEYS, RSNA_KEYS, MetricsJson, percent, reported_keys, show, table_keys,
                                    write_json_atomic)
from spinectx.models.complexity import complexity_report
from spinectx.viz import draw_predictions

log = logging.getLogger("spinectx.train")


def build_callbacks(cfg: DictConfig, with_logger: bool = True) -> list[L.Callback]:
    """Instantiate ``cfg.callbacks``; callbacks that need a logger are left out without one."""
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c and "_target_" in c]
    if not with_logger:
        callbacks = [c for c in callbacks if not isinstance(c, L.pytorch.callbacks.LearningRateMonitor)]
    return callbacks


def build_loggers(cfg: DictConfig) -> list:
    return [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values() if c and "_target_" in c]


RESUME_KEYS = ("resume", "ckpt_path")


def _job_overrides(run_dir: Path) -> list[str] | None:
    """The command-line overrides a run directory was started with (without resume keys)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return None
    return sorted(o for o in OmegaConf.load(path) if not str(o).split("=")[0].lstrip("+~") in RESUME_KEYS)


def find_previous_run(output_dir: Path) -> Path | None:
    """The newest sibling run directory started with the same overrides (compared through each
    directory's ``.hydra/overrides.yaml``, never its name) that holds a ``checkpoints/last.ckpt``
    (written after every training epoch; what ``resume=true`` continues)."""
    mine = _job_overrides(output_dir)
    if mine is None or not output_dir.parent.is_dir():
        return None
    candidates = [d for d in output_dir.parent.iterdir()
                  if d != output_dir and (d / "checkpoints" / "last.ckpt").is_file() and _job_overrides(d) == mine]
    return max(candidates, key=lambda d: (d / "checkpoints" / "last.ckpt").stat().st_mtime, default=None)


def resume_checkpoint(run_dir: Path) -> str:
    """The checkpoint that continues ``run_dir``: its ``checkpoints/last.ckpt`` when readable;
    else (a file truncated by a kill or a full disk) the newest readable other checkpoint of
    ``checkpoints/`` (e.g. the best epoch's), with a warning naming both files.

    Raises:
        CheckpointError: no checkpoint of ``run_dir/checkpoints`` is readable.
    """
    from spinectx.checkpoint import checkpoint_problem
    from spinectx.data.errors import CheckpointError

    folder = run_dir / "checkpoints"
    last = folder / "last.ckpt"
    problem = checkpoint_problem(last)
    if problem is None:
        return str(last)
    others = sorted((p for p in folder.glob("*.ckpt") if p.name != last.name), key=lambda p: p.stat().st_mtime, reverse=True)
    for other in others:
        if checkpoint_problem(other) is None:
            log.warning("%s: %s; resuming from %s instead (the newest readable checkpoint of this run; the epochs "
                        "after it are trained again)", last, problem, other)
            return str(other)
    tried = f"; the other checkpoints are unreadable too: {[p.name for p in others]}" if others else \
        "; there is no other checkpoint"
    raise CheckpointError(last, f"cannot resume: {problem}{tried} (delete {run_dir} or leave out resume=true to start fresh)")


def resolve_resume(cfg: DictConfig, output_dir: Path) -> tuple[Path, str | None]:
    """(run directory to write into, checkpoint to resume from).

    ``ckpt_path=FILE`` resumes from that file in a new run directory. ``ckpt_path=last`` or
    ``resume=true`` continue the last checkpoint of this run directory, or else of the newest
    earlier run of the same command (same overrides), writing on into that directory; with
    nothing to resume they start fresh. An unreadable ``last.ckpt`` falls back to the run's
    newest readable checkpoint (:func:`resume_checkpoint`).

    Raises:
        FileNotFoundError: ``ckpt_path=FILE`` and no such file.
        CheckpointError: ``ckpt_path=FILE`` is not a readable checkpoint, or no checkpoint of the
            run to resume is.
    """
    from spinectx.checkpoint import checkpoint_problem
    from spinectx.data.errors import CheckpointError

    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path == "last" or cfg.get("resume"):
        for run_dir in (output_dir, find_previous_run(output_dir)):
            if run_dir is not None and (run_dir / "checkpoints" / "last.ckpt").is_file():
                ckpt = resume_checkpoint(run_dir)
                log.info("resuming %s from %s", run_dir, ckpt)
                return run_dir, ckpt
        log.info("resume: no earlier run of this command has a last.ckpt; starting fresh")
        return output_dir, None
    if ckpt_path in (None, "", "null"):
        return output_dir, None
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path: checkpoint file not found: {ckpt_path}")
    problem = checkpoint_problem(ckpt_path)
    if problem is not None:
        raise CheckpointError(ckpt_path, problem)
    return output_dir, str(ckpt_path)


def finished_result(run_dir: Path) -> dict | None:
    """The metrics of a run directory whose job already finished (its ``metrics.json`` holds the
    final evaluation), else None. Sweeps write each cell to a fixed directory, so a rerun of the
    same sweep skips finished cells (and ``resume=true`` continues interrupted ones)."""
    import json

    path = run_dir / "metrics.json"
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return payload if "evaluation" in payload else None


IGNORED_IN_HASH = ("paths", "resume", "ckpt_path", "skip_finished", "logger", "callbacks", "evaluate", "overlay_studies",
                   "task_name", "tags")


def config_hash(cfg: DictConfig) -> str:
    """Fingerprint of what a job computes (the config without paths, logging and resume keys):
    a finished run directory is reused only for the same fingerprint."""
    import hashlib
    import json

    plain = OmegaConf.to_container(cfg, resolve=False)
    for key in IGNORED_IN_HASH:
        plain.pop(key, None)
    return hashlib.sha1(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:16]


def set_aside_stale(run_dir: Path) -> Path:
    """Move a finished run's results, made with another config, into ``stale-<time>/`` so the job
    starts fresh in its directory (a sweep cell rerun after its settings changed)."""
    stale = run_dir / f"stale-{time.strftime('%Y%m%d-%H%M%S')}"
    stale.mkdir(parents=True, exist_ok=True)
    for name in ("checkpoints", "metrics.json", "wandb_id", "predictions.png"):
        if (run_dir / name).exists():
            (run_dir / name).rename(stale / name)
    log.warning("%s finished with another config; its results moved to %s and the job runs again", run_dir, stale)
    return stale


def wandb_run_id(cfg: DictConfig, run_dir: Path) -> str | None:
    """The W&B run id of this run directory: kept in ``wandb_id`` so that a resumed run logs into
    the same W&B run. None when W&B is not configured."""
    if not (cfg.get("logger") or {}).get("wandb"):
        return None
    path = run_dir / "wandb_id"
    if path.is_file():
        return path.read_text().strip()
    run_id = cfg.logger.wandb.get("id") or uuid.uuid4().hex[:12]
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(run_id)
    return run_id


def print_table(metrics: dict, title: str) -> None:
    """The table metrics in % (``n/a`` for an undefined one: NaN or null, e.g. a one-class AUC) and,
    on RSNA data, the competition's log losses beside the class-prior baseline's (``prior_*``)."""
    from rich.console import Console
    from rich.table import Table

    keys = table_keys(metrics) or list(METRIC_KEYS)
    table = Table(title=title)
    for k in keys:
        table.add_column(k, justify="right")
    table.add_row(*[percent(metrics.get(k), digits=2) for k in keys])
    Console().print(table)
    rsna = [k for k in RSNA_KEYS if k in metrics]
    if rsna:
        table = Table(title="RSNA 2024 metric (weighted log loss: lower is better)")
        table.add_column("")
        for k in rsna:
            table.add_column("hit_rate (%)" if k == "hit_rate" else k, justify="right")
        table.add_row("model", *[show(k, metrics.get(k)) for k in rsna])
        if any(f"prior_{k}" in metrics for k in rsna):
            table.add_row("class prior", *[show(k, metrics.get(f"prior_{k}")) for k in rsna])
        Console().print(table)


def finish_wandb(loggers: list, result: dict, cfg: DictConfig | None = None) -> None:
    """Put the best epoch's table metrics into the W&B summary and close the run (so the next
    job of a sweep in the same process starts a new one)."""
    from lightning.pytorch.loggers import WandbLogger

    for lg in loggers:
        if isinstance(lg, WandbLogger):
            lg.experiment.summary.update({f"best/{k}": result[k] for k in reported_keys(result)})
            lg.experiment.summary.update({f"complexity/{k}": v for k, v in result.get("complexity", {}).items()})
            final = result.get("evaluation", {})  # the best checkpoint on the held-out fold (what reports use)
            lg.experiment.summary.update({f"final/{k}": v for k, v in final.items() if k != "checkpoint"})
            if cfg is not None and "Score" in result:
                c = result.get("complexity", {})
                columns = ["method", "backbone", "msc", "fold", "params_M", "flops_G", *METRIC_KEYS]
                row = [cfg.model.name, cfg.model.backbone, bool(cfg.model.msc), int(cfg.data.fold), c.get("params_M"),
                       c.get("flops_G"),  # an undefined metric (null in metrics.json) stays empty
                       *[None if result.get(k) is None else 100 * float(result[k]) for k in METRIC_KEYS]]
                lg.log_table(key="summary", columns=columns, data=[row])
            lg.experiment.finish()


def identical_sweep_cell(log_dir: Path, run_dir: Path, fingerprint: str) -> Path | None:
    """Another sweep cell ``log_dir/<experiment>/sweep/<cell>/`` that finished with the same config
    fingerprint (e.g. the data-fraction sweep's 100 % cell is a Table 1 cell), else None. Cells sit
    at depth one: the experiments name them with ``spinectx.job_dirname``, which never nests."""
    for metrics in sorted(Path(log_dir).glob("*/sweep/*/metrics.json")):
        cell = metrics.parent
        if cell.resolve() == run_dir.resolve():
            continue
        done = finished_result(cell)
        if done is not None and done.get("config_hash") == fingerprint and "reused_from" not in done:
            return cell
    return None


def reuse_cell(source: Path, run_dir: Path) -> dict:
    """Copy a finished cell's results (``metrics.json`` + overlays) into ``run_dir``, recording
    where they came from; the checkpoint stays in ``source``."""
    import json
    import shutil

    run_dir.mkdir(parents=True, exist_ok=True)
    result = {**json.loads((source / "metrics.json").read_text()), "reused_from": str(source)}
    write_json_atomic(run_dir / "metrics.json", result)
    if (source / "predictions.png").is_file():
        shutil.copyfile(source / "predictions.png", run_dir / "predictions.png")
    log.info("identical to the finished cell %s: its results are reused, not recomputed", source)
    return result


def earlier_result(cfg: DictConfig, run_dir: Path, fingerprint: str) -> dict | None:
    """With ``skip_finished``: the result this job already has — its own finished run (same
    fingerprint), or an identical finished cell of another sweep (copied in) — else None. A
    finished run with another fingerprint is set aside so the job runs again."""
    if not cfg.get("skip_finished", True):
        return None
    done = finished_result(run_dir)
    if done is not None:
        if done.get("config_hash") == fingerprint:
            log.info("already finished, skipped (delete %s to run it again)", run_dir)
            return done
        set_aside_stale(run_dir)
    if run_dir.parent.name == "sweep":
        source = identical_sweep_cell(Path(cfg.paths.log_dir), run_dir, fingerprint)
        if source is not None:
            return reuse_cell(source, run_dir)
    return None


def best_checkpoint(trainer: L.Trainer) -> str:
    """The best checkpoint file of the monitored ``ModelCheckpoint`` ("" when there is none): the
    unmonitored ones only keep ``last.ckpt`` and do not count."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    monitored = [cb for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint) and cb.monitor]
    return monitored[0].best_model_path if monitored else ""


def _plain(node) -> dict:
    """A config node as a plain dict (``{}`` for a missing or empty node)."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node or {})


def train(cfg: DictConfig) -> dict:
    """Run one training job from a composed config; returns the best epoch's metrics.

    Raises:
        ConfigError: a bad setting (``seed``, ``overlay_studies``, ``data.*``: see the DataModule).
        CheckpointError, FileNotFoundError: a ``ckpt_path`` or run to resume that cannot be read.
    """
    from spinectx.data.errors import config_int

    started = time.perf_counter()
    if cfg.get("seed") is not None:
        config_int("seed", cfg.seed)
    config_int("overlay_studies", cfg.get("overlay_studies", 8), minimum=0)
    fingerprint = config_hash(cfg)
    run_dir = Path(cfg.paths.output_dir)
    done = earlier_result(cfg, run_dir, fingerprint)
    if done is not None:
        return done
    output_dir, ckpt_path = resolve_resume(cfg, run_dir)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)  # callbacks and loggers resolve their paths from it
        run_id = wandb_run_id(cfg, output_dir)
        if run_id:
            cfg.logger.wandb.id = run_id
            cfg.logger.wandb.resume = "allow"
    if cfg.get("seed") is not None:
        L.seed_everything(int(cfg.seed), workers=True)

    log.info("data: %s", cfg.data.root)
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    model = hydra.utils.instantiate(cfg.model, landmarks=OmegaConf.to_container(cfg.data.landmarks, resolve=True),
                                    input_size=int(cfg.data.image_size), input_slices=int(cfg.data.get("slices") or 1),
                                    metrics=_plain(cfg.data.get("metrics")))
    complexity = (model.complexity(int(cfg.data.image_size)) if hasattr(model, "complexity")
                  else complexity_report(model.net, int(cfg.data.image_size)))
    if getattr(model, "context_head", None) is not None:  # model/context=bilstm|transformer: counted on top
        extra = sum(p.numel() for p in model.context_head.parameters()) / 1e6
        complexity.update(context_params_M=round(extra, 4), params_M=round(complexity["params_M"] + extra, 4))
    where = ("for the crops of one image, stage 2 alone" if hasattr(model, "complexity")
             else "at 512² (paper convention)")
    log.info("%s %s msc=%s: %.2f M params, %.2f G MACs %s", cfg.model.name, cfg.model.backbone, cfg.model.msc,
             complexity["params_M"], complexity["flops_G"], where)
    loggers = build_loggers(cfg)
    callbacks = build_callbacks(cfg, with_logger=bool(loggers))
    for cb in callbacks:
        if isinstance(cb, MetricsJson):
            cb.extra.update(complexity=complexity, config_hash=fingerprint)
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for lg in loggers:
        lg.log_hyperparams({**OmegaConf.to_container(cfg, resolve=True), "complexity": complexity})

    fit_started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    fit_seconds = time.perf_counter() - fit_started
    if trainer.is_global_zero:
        write_split(output_dir / "split.json", datamodule, cfg)

    metrics_file = output_dir / "metrics.json"
    result = {"complexity": complexity, "config_hash": fingerprint}
    if metrics_file.is_file():
        import json

        result = json.loads(metrics_file.read_text())
    result["train_seconds"] = round(fit_seconds, 1)  # this invocation's trainer.fit (a resumed run: the rest only)
    if cfg.get("evaluate"):  # every rank validates (collectives under DDP); rank 0 writes
        ckpt = best_checkpoint(trainer)
        evaluated = trainer.validate(model, datamodule=datamodule, ckpt_path=ckpt or None, verbose=False)
        if evaluated and trainer.is_global_zero:
            final = {k.removeprefix("val/"): float(v) for k, v in evaluated[0].items() if k.startswith("val/")}
            result["evaluation"] = {"checkpoint": ckpt, **{k: final[k] for k in reported_keys(final)}}
            if model.rsna_metric is not None:  # the class-prior baseline on the same held-out samples
                final.update(prior_baseline(datamodule, model))
                result["evaluation"].update({k: v for k, v in final.items() if k.startswith("prior_")})
            write_json_atomic(metrics_file, result)
            print_table(final, f"held-out fold {cfg.data.fold} — {cfg.model.name} {cfg.model.backbone} msc={cfg.model.msc}")
        if trainer.is_global_zero and getattr(model, "stage1", True) is None:
            log.info("no overlays: a crop classifier without model.stage1_ckpt has no points of its own")
        elif trainer.is_global_zero:
            overlay = draw_predictions(model, datamodule.val_set, output_dir / "predictions.png", int(cfg.get("overlay_studies", 8)))
            if overlay:
                log.info("overlays: %s", overlay)
    finish_wandb(loggers, result, cfg)
    if trainer.is_global_zero:
        print_summary(cfg, result, output_dir, time.perf_counter() - started)
    return result


def write_split(path: Path, datamodule, cfg: DictConfig) -> Path:
    """``split.json``: the run's fold, view (RSNA; else null), data root (absolute) and the study ids
    it trained on and held out (what a cross-validated prediction of the held-out studies needs,
    e.g. ``spinectx-report-rsna``)."""
    def studies(dataset) -> list[str]:
        return sorted({str(r.study_uid) for r in dataset.records})

    write_json_atomic(path, {"fold": int(cfg.data.fold), "num_folds": int(cfg.data.num_folds),
                             "view": cfg.data.get("view"), "data_root": str(Path(cfg.data.root).resolve()),
                             "train": studies(datamodule.train_set), "held_out": studies(datamodule.val_set)})
    return path


def prior_baseline(datamodule, model) -> dict:
    """The RSNA metric of the class prior on the held-out samples: every landmark predicted at its
    class frequencies over the training samples (Laplace-smoothed: +1 per class, so a class never
    seen in training does not cost an infinite loss) — what a model that ignores the image gets.
    → ``{"prior_logloss", "prior_rsna_score", ["prior_any_severe"]}``."""
    import torch

    from spinectx.data.dataset import class_prior, record_targets

    landmarks = datamodule.landmarks
    # the module computed it at fit start (it keeps it in its checkpoints)
    stored = model.class_prior if model.class_prior is not None else class_prior(datamodule.train_set.records, landmarks)
    prior = torch.from_numpy(np.asarray(stored, dtype=np.float64)[:, :3])  # [K, 3]
    held_out = torch.from_numpy(np.stack([record_targets(r, landmarks)[1] for r in datamodule.val_set.records]))
    metric = type(model.rsna_metric)(any_severe=model.rsna_metric.any_severe, class_weights=model.rsna_metric.class_weights)
    target = model.severity_targets(held_out)
    # the prior places no point: its hit rate is meaningless and not reported (zero distances keep
    # the metric from warning that it is undefined)
    metric.update(prior.expand(len(held_out), -1, -1).float(), target, torch.zeros(target.shape))
    values = metric.compute()
    out = {"prior_logloss": float(values["logloss"]), "prior_rsna_score": float(values["score"])}
    if "any_severe" in values:
        out["prior_any_severe"] = float(values["any_severe"])
    return out


def print_summary(cfg: DictConfig, result: dict, output_dir: Path, seconds: float) -> None:
    """One concise end-of-run block: what ran, the best epoch, the size, where it all is."""
    from rich.console import Console

    c = result.get("complexity", {})
    key = str(result.get("monitor", "val/Score")).removeprefix("val/")
    best = f"best epoch {result['epoch']}, {key} {show(key, result[key])}" if key in result else "no validation epoch"
    Console().print(
        f"[bold]{cfg.model.name}[/] {cfg.model.backbone} msc={cfg.model.msc} · fold {cfg.data.fold} · {best} · "
        f"{c.get('params_M', float('nan')):.2f} M params, {c.get('flops_G', float('nan')):.2f} G MACs · "
        f"{seconds / 60:.1f} min\nrun directory: {output_dir}"
    )


def record_failure(output_dir: Path, exc: BaseException) -> Path:
    """Write the traceback of a failed job into its run directory (``error.txt``)."""
    import traceback

    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "error.txt"
    path.write_text("".join(traceback.format_exception(exc)))
    return path


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
@fail_cleanly("spinectx-train")  # a single run with bad input: one clean line (error.txt has the traceback)
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        result = train(cfg)
    except Exception as exc:
        path = record_failure(Path(cfg.paths.output_dir), exc)
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            raise
        log.error("job failed (%s: %s); traceback in %s; the sweep goes on", type(exc).__name__, exc, path)
        return None
    score = result.get("Score")
    return float(score) if score is not None and np.isfinite(score) else None


if __name__ == "__main__":
    main()
