"""spinectx-data root=DIR [splits=[...]] out=FILE.json | data=rsna2024 data.root=DIR out=FILE.json:
check a dataset before training.

TianChi (the default): one record per usable study (uids, pixel spacing [dy, dx] mm, shape
[rows, cols], landmarks {identification: {coord: [x, y], tags}}, problems), the skipped studies,
every problem found, and totals (studies, landmarks per class). RSNA 2024 (``data=rsna2024``): every
labelled point of every study (condition, level, series, instance, file, slice index in its stack,
coord, severity, pixel spacing), the study's problems, totals (see :func:`spinectx.data.rsna.report`).
Prints the totals and the first problems; exits 0 whatever it finds in the studies (it is a report).

``problems`` lists everything, each naming the file or folder: unreadable or duplicate DICOM
files, studies skipped (annotated instance missing, no sagittal series, invalid PixelSpacing,
annotated frame truncated or undecodable, no landmark inside the frame) and, per usable study,
landmarks masked (coordinates outside the image) or points dropped from the annotation.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from spinectx.cli import CONF_DIR
from spinectx.cli.failure import check_output_file, fail_cleanly

log = logging.getLogger("spinectx.data")


def check_dataset(root: str, splits: str | list[str], landmarks_cfg: dict) -> dict:
    """The dataset report as a JSON-ready dict. ``splits``: split names; one name given as a
    string (``splits=lumbar_train``) is that one split.

    Raises:
        ConfigError: ``splits`` empty or not names.
        DataError: the dataset root or a split cannot be read (see ``build_index``).
    """
    from spinectx.data.errors import ConfigError
    from spinectx.data.landmarks import LandmarkSet
    from spinectx.data.records import build_index

    if isinstance(splits, str):
        splits = [splits]
    if not isinstance(splits, (list, tuple)) or not splits or not all(isinstance(s, str) and s for s in splits):
        raise ConfigError(f"splits must be split names such as [lumbar_train], got {splits!r}")
    splits = list(splits)
    landmarks = LandmarkSet.from_config(landmarks_cfg)
    index = build_index(root, splits, landmarks)
    return {
        "root": str(root),
        "splits": splits,
        "landmarks": list(landmarks.names),
        "totals": index.totals(landmarks),
        "studies": [r.to_json(landmarks) for r in index.records],
        "skipped_studies": index.skipped_studies,
        "problems": index.problems + [p for r in index.records for p in r.problems],
    }


def found_splits(root: str | Path) -> list[str]:
    """The TianChi splits under ``root``: names ``S`` with both a folder ``S/`` and ``S_annotation.json``."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name.removesuffix("_annotation.json") for p in root.glob("*_annotation.json")
                  if (root / p.name.removesuffix("_annotation.json")).is_dir())


def dataset_report(cfg: DictConfig) -> dict:
    """The report of the dataset ``cfg.data`` describes (``root=``/``splits=`` override it)."""
    from hydra.utils import instantiate

    from spinectx.data.landmarks import LandmarkSet
    from spinectx.data.records import TianChiReader

    root = cfg.root if cfg.get("root") is not None else cfg.data.root
    landmarks_cfg = OmegaConf.to_container(cfg.data.landmarks, resolve=True)
    if cfg.get("root") is not None and cfg.get("splits") is None and cfg.data.get("view") is None:
        found = found_splits(root)  # root= alone: every TianChi split the folder holds
        if found:
            return check_dataset(str(root), found, landmarks_cfg)
    if cfg.get("splits") is not None or cfg.data.get("reader") is None:
        splits = cfg.splits if cfg.get("splits") is not None else cfg.data.splits
        splits = OmegaConf.to_container(splits, resolve=True) if OmegaConf.is_list(splits) else splits
        return check_dataset(str(root), splits, landmarks_cfg)
    reader = instantiate(cfg.data.reader)
    if isinstance(reader, TianChiReader):
        return check_dataset(str(root), reader.splits, landmarks_cfg)
    return reader.report(str(root), LandmarkSet.from_config(landmarks_cfg))


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="data_check")
@fail_cleanly("spinectx-data")
def main(cfg: DictConfig) -> None:
    out = check_output_file(cfg.out, "out")
    report = dataset_report(cfg)
    with open(out, "w") as fh:
        json.dump(report, fh, indent=2)
    print(json.dumps(report["totals"], indent=2))
    problems = report["problems"] + [p for s in report.get("studies", []) for p in s.get("problems", [])
                                     if "points" in s]  # RSNA reports keep study problems per study
    shown = 20
    for p in problems[:shown]:
        print("problem:", p)
    if len(problems) > shown:
        print(f"... and {len(problems) - shown} more problems in {cfg.out}")
    log.info("wrote %s (%d studies, %d problems)", cfg.out, report["totals"]["studies"], report["totals"]["problems"])


if __name__ == "__main__":
    main()
