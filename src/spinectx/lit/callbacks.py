"""Callbacks: ``metrics.json`` of the best validation epoch, written as soon as it is known."""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path

import lightning as L

from spinectx.data.submission import write_json_atomic as _write_json

log = logging.getLogger("spinectx")

METRIC_KEYS = ("L-Disc", "L-Vertebra", "C-Disc", "C-Vertebra", "Score")
#: the RSNA 2024 view metrics (SPEC §6): weighted log losses (lower is better) and the hit rate
RSNA_KEYS = ("logloss", "any_severe", "rsna_score", "hit_rate")
_LOSS_KEYS = ("logloss", "any_severe", "rsna_score")


def table_keys(metrics) -> list[str]:
    """The table metric's keys present in ``metrics``: ``L-<Group>`` for every group, then
    ``C-<Group>``, then ``Score`` (TianChi: :data:`METRIC_KEYS`; RSNA spinal: L-Spinal, C-Spinal,
    Score)."""
    def of(prefix: str) -> list[str]:  # TianChi's order first, any other group after, by name
        known = [k for k in METRIC_KEYS if k.startswith(prefix) and k in metrics]
        return known + sorted(k for k in metrics if k.startswith(prefix) and k not in known)

    return [*of("L-"), *of("C-"), *(["Score"] if "Score" in metrics else [])]


def reported_keys(metrics) -> list[str]:
    """The table-metric and RSNA keys present in ``metrics``, in display order."""
    return [*table_keys(metrics), *(k for k in RSNA_KEYS if k in metrics)]


def show(key: str, value) -> str:
    """One metric for a table: log losses with 3 decimals, fractions as percentages, ``n/a`` when
    undefined."""
    if key in _LOSS_KEYS:
        return "n/a" if value is None or not math.isfinite(float(value)) else f"{float(value):.3f}"
    return percent(value)


def write_json_atomic(path: str | Path, payload: dict) -> None:
    """Write indented, strict JSON via a temporary file + rename, so readers never see a partial
    file. NaN / ±inf (an undefined metric) are written as null."""
    _write_json(path, payload, indent=2)


def percent(value, digits: int = 1) -> str:
    """A fraction in [0, 1] as a percentage with ``digits`` decimals; ``n/a`` for an undefined
    metric (None or NaN, e.g. an AUC over one class)."""
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    return f"{100 * float(value):.{digits}f}"


class MetricsJson(L.Callback):
    """Track validation metrics per epoch; keep ``metrics.json`` = the best epoch so far.

    ``metrics.json`` holds the best epoch's ``val/*`` table metrics (fractions in [0, 1]) and, on
    RSNA data, its competition metrics (:data:`RSNA_KEYS`) without the prefix, its ``epoch``, the
    ``monitor`` used (``mode`` max or min), and the per-epoch ``history``. It is
    rewritten after every validation epoch of ``fit``, so a crash never loses finished epochs.
    The history is part of the callback state and survives a resume from checkpoint.

    An undefined metric (NaN, e.g. ``C-<Group>`` when the located landmarks hold one class) is
    written as null. An epoch whose monitored value is NaN is never the best one (Lightning's
    ``ModelCheckpoint`` likewise ranks a NaN monitor below every number).
    """

    def __init__(self, path: str, monitor: str = "val/Score", mode: str = "max", extra: dict | None = None):
        self.path = Path(path)
        self.monitor = monitor
        self.key = monitor.removeprefix("val/")  # the monitored metric's name in metrics.json
        self.mode = mode
        self.extra = dict(extra or {})
        self.history: list[dict] = []
        self.best: dict | None = None

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        best = self.best[self.key]
        return value > best if self.mode == "max" else value < best

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or not trainer.is_global_zero:
            return
        metrics = {k.removeprefix("val/"): float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if self.key not in metrics:
            return
        entry = {"epoch": int(trainer.current_epoch), "step": int(trainer.global_step), **metrics}
        self.history.append(entry)
        value = metrics[self.key]
        if not math.isnan(value) and self._better(value):
            self.best = entry
        self.write()
        shown = "  ".join(f"{k} {show(k, metrics[k])}" for k in reported_keys(metrics))
        best = f"{show(self.key, self.best[self.key])} at epoch {self.best['epoch']}" if self.best else "none yet (undefined)"
        log.info("epoch %d: %s (best %s %s)", entry["epoch"], shown, self.monitor, best)

    def write(self) -> None:
        if self.best is None:
            return
        payload = {k: self.best[k] for k in reported_keys(self.best)}
        payload.update({"epoch": self.best["epoch"], "step": self.best["step"], "monitor": self.monitor})
        payload.update(self.extra)
        payload["history"] = self.history
        write_json_atomic(self.path, payload)

    def state_dict(self) -> dict:
        return {"history": self.history, "best": self.best}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict.get("history", []))
        self.best = state_dict.get("best")


class OverlayImages(L.Callback):
    """After every ``every_n_epochs``-th validation epoch, draw the first ``studies`` held-out
    studies (true vs predicted landmarks, P(abnormal)) and log the figure to W&B as
    ``val/overlays``. Does nothing without a W&B logger or on ranks other than 0."""

    def __init__(self, studies: int = 4, every_n_epochs: int = 1):
        self.studies = int(studies)
        self.every_n_epochs = max(1, int(every_n_epochs))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from lightning.pytorch.loggers import WandbLogger

        from spinectx.viz import draw_predictions

        if trainer.sanity_checking or not trainer.is_global_zero or trainer.state.fn != "fit":
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        dataset = getattr(trainer.datamodule, "val_set", None)
        if not wandb_loggers or dataset is None or self.studies <= 0:
            return
        with tempfile.TemporaryDirectory() as tmp:
            path = draw_predictions(pl_module, dataset, Path(tmp) / "overlays.png", self.studies)
            if path is None:
                return
            for lg in wandb_loggers:
                lg.log_image(key="val/overlays", images=[str(path)], caption=[f"epoch {trainer.current_epoch}"],
                             step=trainer.global_step)
