"""spinectx-synth out=DIR studies=N seed=S [format=tianchi|rsna2024] [workers=W]: write a synthetic dataset.

``format=tianchi`` (default) writes the TianChi 2020 layout (``OUT/<split>/study<k>/image<j>.dcm`` and
``OUT/<split>_annotation.json``; ``split`` names the folder); ``format=rsna2024`` writes the RSNA 2024
Kaggle training layout (``OUT/train.csv``, ``train_label_coordinates.csv``,
``train_series_descriptions.csv``, ``train_images/``; ``split`` does not apply). ``frequencies``
overrides class frequencies (see ``spinectx.data.synthetic``). The study count and seed fully define
the output, whatever ``workers``.
"""

from __future__ import annotations

import logging
import time

import hydra
from omegaconf import DictConfig, OmegaConf

from spinectx.cli import CONF_DIR
from spinectx.cli.failure import fail_cleanly

log = logging.getLogger("spinectx.synth")

FORMATS = ("tianchi", "rsna2024")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="synth")
@fail_cleanly("spinectx-synth")
def main(cfg: DictConfig) -> None:
    from spinectx.data.errors import ConfigError, config_int
    from spinectx.data.synthetic import generate_dataset, generate_rsna_dataset
    from spinectx.data.synthetic.labels import merge_frequencies
    from spinectx.data.synthetic.rsna_labels import merge_rsna_frequencies

    fmt = cfg.get("format", "tianchi")
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    studies = config_int("studies", cfg.studies, minimum=1)
    seed, workers = config_int("seed", cfg.seed), config_int("workers", cfg.workers, minimum=1)
    frequencies = cfg.get("frequencies")
    if frequencies is not None:
        if not OmegaConf.is_dict(frequencies):
            raise ConfigError(f"frequencies must be a mapping of group → class → share, got {frequencies!r}")
        frequencies = OmegaConf.to_container(frequencies, resolve=True)
        try:
            (merge_frequencies if fmt == "tianchi" else merge_rsna_frequencies)(frequencies)
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"frequencies: {exc.args[0] if exc.args else exc}") from exc
    start = time.perf_counter()
    try:
        if fmt == "tianchi":
            if not isinstance(cfg.split, str) or not cfg.split.strip() or "/" in cfg.split:
                raise ConfigError(f"split must be a folder name such as lumbar_train, got {cfg.split!r}")
            annotation = generate_dataset(cfg.out, studies=studies, seed=seed, split=cfg.split, workers=workers,
                                          frequencies=frequencies)
            log.info("wrote %d studies to %s/%s and %s in %.1f s", studies, cfg.out, cfg.split, annotation,
                     time.perf_counter() - start)
        else:
            if cfg.get("split", "lumbar_train") != "lumbar_train":
                log.warning("split=%s is ignored: format=rsna2024 writes the Kaggle training layout", cfg.split)
            root = generate_rsna_dataset(cfg.out, studies=studies, seed=seed, workers=workers, frequencies=frequencies)
            log.info("wrote %d RSNA 2024 studies to %s in %.1f s", studies, root, time.perf_counter() - start)
    except FileExistsError as exc:  # an output folder holding other files is never overwritten
        raise ConfigError(str(exc)) from exc


if __name__ == "__main__":
    main()
