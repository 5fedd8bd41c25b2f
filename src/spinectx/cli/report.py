"""spinectx-report sweep=DIR|[DIR,...] out=DIR (or wandb=ENTITY/PROJECT): the paper's tables and figure from sweeps.

spinectx-report-rsna sweep=logs/rsna/sweep out=reports/rsna: the RSNA 2024 cross-validated report
(:mod:`spinectx.rsna_report`)."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from spinectx.cli import CONF_DIR
from spinectx.cli.failure import fail_cleanly

log = logging.getLogger("spinectx.report")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="report")
@fail_cleanly("spinectx-report")
def main(cfg: DictConfig) -> None:
    from spinectx.report import build_report, wandb_jobs

    if cfg.get("wandb"):
        groups = [str(g) for g in cfg.groups] if cfg.get("groups") else None
        summary = build_report(f"W&B {cfg.wandb}", cfg.out, jobs=wandb_jobs(str(cfg.wandb), groups))
    elif cfg.get("sweep"):
        sweep = cfg.sweep if isinstance(cfg.sweep, str) else [str(s) for s in cfg.sweep]
        summary = build_report(sweep, cfg.out)
    else:
        raise SystemExit("spinectx-report: give sweep=DIR|[DIR,...] (job folders) or wandb=ENTITY/PROJECT (online)")
    log.info("%d jobs (%d finished, %d failed or unfinished)%s; wrote %s", summary["jobs"], summary["finished"],
             summary["failed"], f" + {summary['classifier_jobs']} experiment=classifiers jobs" if summary.get("classifier_jobs") else "",
             ", ".join(summary["written"]))


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="report_rsna")
@fail_cleanly("spinectx-report-rsna")
def rsna_main(cfg: DictConfig) -> None:
    from spinectx.cli.predict import check_device
    from spinectx.data.errors import ConfigError
    from spinectx.rsna_report import build_rsna_report

    if cfg.tta is not None and not isinstance(cfg.tta, bool):
        raise ConfigError(f"tta must be true, false or null (as each checkpoint was trained), got {cfg.tta!r}")
    payload = build_rsna_report(cfg.sweep, cfg.out, device=check_device(cfg.device), tta=cfg.tta,
                                data_root=cfg.get("data_root") or None)
    model, prior = payload["model"], payload["prior"]
    log.info("RSNA score %.4f (class prior %.4f) over %d held-out studies of fold(s) %s; wrote %s/summary.md",
             model["score"], prior["score"], payload["studies"], payload["folds"], cfg.out)


if __name__ == "__main__":
    main()
