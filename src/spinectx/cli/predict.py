"""spinectx-predict ckpt_path=CKPT input=DIR output=FILE.json: a submission for unannotated studies.

Per study: the T2 sagittal series (any sagittal series when there is none), its middle slice,
keypoints in that frame's pixels and P(abnormal) per landmark, written in the annotation JSON
format (SPEC §2) with an extra ``"prob"`` per point. Studies that cannot be read are skipped and
listed; the command fails (exit status 2, ``spinectx-predict: error: <input>: nothing predicted:
<the first problems>``) only when nothing could be predicted. Bad settings (``batch_size``,
``threshold``, ``input_size``, ``device``, an ``output`` that is a folder) are refused before any
work starts.
"""

from __future__ import annotations

import logging
import time

import hydra
from omegaconf import DictConfig

from spinectx.cli import CONF_DIR
from spinectx.cli.failure import check_output_file, fail_cleanly

log = logging.getLogger("spinectx.predict")

#: problems quoted in the error line when nothing could be predicted
SHOWN_PROBLEMS = 3


def first_problems(problems: list[str]) -> str:
    """The first ``SHOWN_PROBLEMS`` problems on one line, with the count of the others."""
    if not problems:
        return "no study found"
    rest = len(problems) - SHOWN_PROBLEMS
    return "; ".join(problems[:SHOWN_PROBLEMS]) + (f" (and {rest} more problem(s) listed above)" if rest > 0 else "")


def check_device(value) -> str:
    """``value`` as a torch device string usable on this machine (``cpu``, ``cuda``, ``cuda:1``, ``mps``).

    Raises:
        ConfigError: not a device name, or a device this machine does not have.
    """
    import torch

    from spinectx.data.errors import ConfigError

    try:
        device = torch.device(str(value))
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"device must be a torch device such as cpu, cuda or cuda:1, got {value!r}") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device={value}: CUDA is not available on this machine; use device=cpu")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device={value}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device={value}: MPS is not available on this machine; use device=cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device={value}: spinectx-predict runs on cpu, cuda or mps")
    return str(device)


def check_settings(cfg: DictConfig) -> dict:
    """The prediction settings of ``cfg``, checked before any work: {output, batch_size, threshold,
    input_size (None: the checkpoint's), device, tta (None: the checkpoint's)}.

    Raises:
        ConfigError: a value of the wrong kind or outside its range (the message names the setting).
    """
    from spinectx.data.errors import ConfigError, config_float, config_int

    threshold = config_float("threshold", cfg.threshold, what="a probability")
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold must be a probability in [0, 1], got {cfg.threshold!r}")
    if cfg.tta is not None and not isinstance(cfg.tta, bool):
        raise ConfigError(f"tta must be true, false or null (as the checkpoint was trained), got {cfg.tta!r}")
    return {
        "output": check_output_file(cfg.output, "output"),
        "batch_size": config_int("batch_size", cfg.batch_size, minimum=1),
        "threshold": threshold,
        "input_size": None if cfg.input_size is None else config_int("input_size", cfg.input_size, minimum=1),
        "device": check_device(cfg.device),
        "tta": cfg.tta,
    }


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
@fail_cleanly("spinectx-predict")
def main(cfg: DictConfig) -> None:
    from spinectx.data.errors import DataError
    from spinectx.data.submission import write_submission
    from spinectx.inference import find_targets, load_module, predict_targets

    start = time.perf_counter()
    settings = check_settings(cfg)
    targets, problems = find_targets(cfg.input)  # input problems before the model is loaded
    predictions = []
    if targets:
        module = load_module(cfg.ckpt_path, device=settings["device"], tta=settings["tta"])
        predictions, more = predict_targets(module, targets, settings["batch_size"], settings["input_size"])
        problems += more
    for p in problems:
        log.warning("%s", p)
    if not predictions:
        raise DataError(cfg.input, f"nothing predicted: {first_problems(problems)}")
    path = write_submission(settings["output"], predictions, module.landmarks, threshold=settings["threshold"])
    log.info("%d studies predicted (%d problems, tta=%s) in %.1f s → %s", len(predictions), len(problems),
             module.hparams.tta, time.perf_counter() - start, path)


if __name__ == "__main__":
    main()
