"""spinectx-synth out=DIR studies=N seed=S: write a synthetic dataset in the TianChi layout."""

from __future__ import annotations

import logging
import time

import hydra
from omegaconf import DictConfig

from spinectx.cli import CONF_DIR
from spinectx.cli.failure import fail_cleanly

log = logging.getLogger("spinectx.synth")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="synth")
@fail_cleanly("spinectx-synth")
def main(cfg: DictConfig) -> None:
    from spinectx.data.errors import ConfigError, config_int
    from spinectx.data.synthetic import generate_dataset

    studies = config_int("studies", cfg.studies, minimum=1)
    seed, workers = config_int("seed", cfg.seed), config_int("workers", cfg.workers, minimum=1)
    if not isinstance(cfg.split, str) or not cfg.split.strip() or "/" in cfg.split:
        raise ConfigError(f"split must be a folder name such as lumbar_train, got {cfg.split!r}")
    start = time.perf_counter()
    annotation = generate_dataset(cfg.out, studies=studies, seed=seed, split=cfg.split, workers=workers)
    log.info("wrote %d studies to %s/%s and %s in %.1f s", cfg.studies, cfg.out, cfg.split, annotation,
             time.perf_counter() - start)


if __name__ == "__main__":
    main()
