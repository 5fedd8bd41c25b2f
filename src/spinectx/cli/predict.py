"""spinectx-predict ckpt_path=CKPT input=DIR output=FILE.json: a submission for unannotated studies.

Per study: the T2 sagittal series (any sagittal series when there is none), its middle slice,
keypoints in that frame's pixels and P(abnormal) per landmark, written in the annotation JSON
format (SPEC §2) with an extra ``"prob"`` per point. Studies that cannot be read are skipped and
listed; the command fails only when nothing could be predicted.
"""

from __future__ import annotations

import logging
import sys
import time

import hydra
from omegaconf import DictConfig

from spinectx.cli import CONF_DIR
from spinectx.cli.failure import fail_cleanly

log = logging.getLogger("spinectx.predict")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
@fail_cleanly("spinectx-predict")
def main(cfg: DictConfig) -> None:
    from spinectx.data.submission import write_submission
    from spinectx.inference import find_targets, load_module, predict_targets

    start = time.perf_counter()
    targets, problems = find_targets(cfg.input)  # input problems before the model is loaded
    module = load_module(cfg.ckpt_path, device=cfg.device, tta=cfg.tta)
    predictions, more = predict_targets(module, targets, int(cfg.batch_size), cfg.input_size)
    problems += more
    for p in problems:
        log.warning("%s", p)
    if not predictions:
        log.error("nothing predicted from %s", cfg.input)
        sys.exit(1)
    path = write_submission(cfg.output, predictions, module.landmarks, threshold=float(cfg.threshold))
    log.info("%d studies predicted (%d problems, tta=%s) in %.1f s → %s", len(predictions), len(problems),
             module.hparams.tta, time.perf_counter() - start, path)


if __name__ == "__main__":
    main()
