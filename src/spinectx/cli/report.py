"""spinectx-report sweep=DIR|[DIR,...] out=DIR (or wandb=ENTITY/PROJECT): the paper's tables and figure from sweeps."""

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
    log.info("%d jobs (%d finished, %d failed or unfinished); wrote %s", summary["jobs"], summary["finished"],
             summary["failed"], ", ".join(summary["written"]))


if __name__ == "__main__":
    main()
