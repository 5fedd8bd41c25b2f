"""spinectx-train: fit a model on one fold, keep the best checkpoint and its metrics.

    spinectx-train [experiment=demo] [model=ccfnet model.backbone=resnet18 model.msc=true]
                   [data=tianchi data.root=DIR data.fold=0 data.fraction=0.5] [trainer.max_epochs=N]
                   [logger=wandb|csv|none] [seed=S] [ckpt_path=last]

Writes into the run directory: ``checkpoints/`` (best + last), ``metrics.json`` (best validation
epoch), ``predictions.png`` (held-out studies with true vs predicted landmarks), ``.hydra/``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import hydra
import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from spinectx.cli import CONF_DIR
from spinectx.lit.callbacks import METRIC_KEYS, MetricsJson, write_json_atomic
from spinectx.models.complexity import complexity_report

log = logging.getLogger("spinectx.train")


def build_callbacks(cfg: DictConfig, with_logger: bool = True) -> list[L.Callback]:
    """Instantiate ``cfg.callbacks``; callbacks that need a logger are left out without one."""
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c and "_target_" in c]
    if not with_logger:
        callbacks = [c for c in callbacks if not isinstance(c, L.pytorch.callbacks.LearningRateMonitor)]
    return callbacks


def build_loggers(cfg: DictConfig) -> list:
    return [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values() if c and "_target_" in c]


def resolve_ckpt_path(ckpt_path: str | None, output_dir: Path) -> str | None:
    """``last`` → the run directory's ``checkpoints/last.ckpt`` when it exists (else start fresh)."""
    if ckpt_path in (None, "", "null"):
        return None
    if ckpt_path == "last":
        last = output_dir / "checkpoints" / "last.ckpt"
        return str(last) if last.is_file() else None
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path: checkpoint file not found: {ckpt_path}")
    return ckpt_path


def print_table(metrics: dict, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for k in METRIC_KEYS:
        table.add_column(k, justify="right")
    table.add_row(*[f"{100 * float(metrics[k]):.2f}" for k in METRIC_KEYS])
    Console().print(table)


def draw_overlays(module, datamodule, path: Path, n: int) -> Path | None:
    """Predict the first ``n`` held-out studies and save true vs predicted landmarks."""
    from spinectx.viz import overlay_grid

    dataset = datamodule.val_set
    if dataset is None or len(dataset) == 0 or n <= 0:
        return None
    module.eval()
    samples = [dataset[i] for i in range(min(n, len(dataset)))]
    image = torch.stack([s["image"] for s in samples]).to(module.device)
    decoded = module.predict_keypoints(image)
    return overlay_grid(
        images=[s["image"][0].numpy() for s in samples],
        truth=[s["keypoints"].numpy() for s in samples],
        pred=decoded.keypoints.cpu().numpy(),
        prob=decoded.prob.cpu().numpy(),
        labels=[s["labels"].numpy() for s in samples],
        names=module.landmarks.names,
        titles=[s["study_uid"][-24:] for s in samples],
        path=path,
    )


def finish_wandb(loggers: list, result: dict) -> None:
    """Put the best epoch's table metrics into the W&B summary and close the run (so the next
    job of a sweep in the same process starts a new one)."""
    from lightning.pytorch.loggers import WandbLogger

    for lg in loggers:
        if isinstance(lg, WandbLogger):
            lg.experiment.summary.update({f"best/{k}": result[k] for k in METRIC_KEYS if k in result})
            lg.experiment.summary.update({f"complexity/{k}": v for k, v in result.get("complexity", {}).items()})
            lg.experiment.finish()


def train(cfg: DictConfig) -> dict:
    """Run one training job from a composed config; returns the best epoch's metrics."""
    output_dir = Path(cfg.paths.output_dir)
    if cfg.get("seed") is not None:
        L.seed_everything(int(cfg.seed), workers=True)

    log.info("data: %s", cfg.data.root)
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    model = hydra.utils.instantiate(cfg.model, landmarks=OmegaConf.to_container(cfg.data.landmarks, resolve=True))
    complexity = complexity_report(model.net, int(cfg.data.image_size))
    log.info("%s %s msc=%s: %.2f M params, %.2f G MACs at 512² (paper convention)", cfg.model.name,
             cfg.model.backbone, cfg.model.msc, complexity["params_M"], complexity["flops_G"])
    loggers = build_loggers(cfg)
    callbacks = build_callbacks(cfg, with_logger=bool(loggers))
    for cb in callbacks:
        if isinstance(cb, MetricsJson):
            cb.extra["complexity"] = complexity
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for lg in loggers:
        lg.log_hyperparams({**OmegaConf.to_container(cfg, resolve=True), "complexity": complexity})

    trainer.fit(model, datamodule=datamodule, ckpt_path=resolve_ckpt_path(cfg.get("ckpt_path"), output_dir))

    metrics_file = output_dir / "metrics.json"
    result = {"complexity": complexity}
    if metrics_file.is_file():
        import json

        result = json.loads(metrics_file.read_text())
    if cfg.get("evaluate") and trainer.is_global_zero:
        ckpt = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        evaluated = trainer.validate(model, datamodule=datamodule, ckpt_path=ckpt or None, verbose=False)
        if evaluated:
            final = {k.removeprefix("val/"): float(v) for k, v in evaluated[0].items() if k.startswith("val/")}
            result["evaluation"] = {"checkpoint": ckpt, **{k: final[k] for k in METRIC_KEYS if k in final}}
            write_json_atomic(metrics_file, result)
            print_table(final, f"held-out fold {cfg.data.fold} — {cfg.model.name} {cfg.model.backbone} msc={cfg.model.msc}")
        overlay = draw_overlays(model, datamodule, output_dir / "predictions.png", int(cfg.get("overlay_studies", 8)))
        if overlay:
            log.info("overlays: %s", overlay)
    finish_wandb(loggers, result)
    log.info("run directory: %s", output_dir)
    return result


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    result = train(cfg)
    score = result.get("Score")
    return float(score) if score is not None and np.isfinite(score) else None


if __name__ == "__main__":
    main()
