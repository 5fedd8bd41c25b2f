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
    from spinectx.data.synthetic import generate_dataset

    start = time.perf_counter()
    annotation = generate_dataset(cfg.out, studies=int(cfg.studies), seed=int(cfg.seed), split=str(cfg.split),
                                  workers=int(cfg.workers))
    log.info("wrote %d studies to %s/%s and %s in %.1f s", cfg.studies, cfg.out, cfg.split, annotation,
             time.perf_counter() - start)


if __name__ == "__main__":
    main()
