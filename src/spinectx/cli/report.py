"""spinectx-report sweep=DIR|[DIR,...] out=DIR: aggregate sweeps into the paper's tables and figure."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from spinectx.cli import CONF_DIR

log = logging.getLogger("spinectx.report")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="report")
def main(cfg: DictConfig) -> None:
    from spinectx.report import build_report

    sweep = cfg.sweep if isinstance(cfg.sweep, str) else [str(s) for s in cfg.sweep]
    summary = build_report(sweep, cfg.out)
    log.info("%d jobs (%d finished, %d failed or unfinished); wrote %s", summary["jobs"], summary["finished"],
             summary["failed"], ", ".join(summary["written"]))


if __name__ == "__main__":
    main()
