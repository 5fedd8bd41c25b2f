"""spinectx-predict: a submission for unannotated studies.

TianChi (one checkpoint): ``spinectx-predict ckpt_path=CKPT input=DIR output=FILE.json``.

RSNA 2024 (one checkpoint per view): ``spinectx-predict ckpt_path='{spinal: A.ckpt, foraminal:
B.ckpt, subarticular: C.ckpt}' input=DIR/test_images series=DIR/test_series_descriptions.csv
output=submission.csv [tta=true]`` writes the competition's CSV (25 rows per study, sorted,
normalised; :func:`spinectx.rsna_inference.predict_studies`), its sidecar
``submission.problems.json`` (rows that took the checkpoint's training prior, with the reason) and
``points`` (default ``predictions.json`` beside the CSV: the point behind each row). ``input`` may be
one study folder. A view left out of ``ckpt_path`` leaves its rows to the uniform prior (listed).

Two-stage (``classifier_ckpt=`` beside ``ckpt_path``, per view for RSNA): stage 1's points, stage 2's
classes. A classifier cropping mm windows (``model.crop.size_mm``) gets each input's pixel spacing,
the image's PixelSpacing scaled by its resize to the input size (:func:`spinectx.inference.input_spacing`);
an image without a usable PixelSpacing is then not predicted (listed; RSNA: its rows take the prior).

TianChi mode:
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
    output = cfg.output if cfg.output is not None else ("submission.csv" if is_rsna(cfg) else "predictions.json")
    if is_rsna(cfg) and not str(output).lower().endswith(".csv"):
        raise ConfigError(f"output={output}: an RSNA prediction (ckpt_path per view) writes the competition's CSV; "
                          "give output=FILE.csv")
    return {
        "output": check_output_file(output, "output"),
        "batch_size": config_int("batch_size", cfg.batch_size, minimum=1),
        "threshold": threshold,
        "input_size": None if cfg.input_size is None else config_int("input_size", cfg.input_size, minimum=1),
        "device": check_device(cfg.device),
        "tta": cfg.tta,
    }




def is_rsna(cfg: DictConfig) -> bool:
    """RSNA mode: ``ckpt_path`` maps views to checkpoints."""
    from omegaconf import DictConfig as Node

    return isinstance(cfg.ckpt_path, (Node, dict))


def rsna_checkpoints(node, key: str = "ckpt_path") -> dict[str, str]:
    """``ckpt_path`` (or ``classifier_ckpt``) of RSNA mode → {view: checkpoint path}.

    Raises:
        ConfigError: not a view → path mapping, an unknown view, or none given.
    """
    from omegaconf import DictConfig as Node

    from spinectx.data.errors import ConfigError
    from spinectx.data.rsna import VIEWS

    if not isinstance(node, (Node, dict)):
        raise ConfigError(f"{key}={node}: RSNA prediction takes one checkpoint per view, e.g. '{{spinal: A.ckpt}}'")
    paths = {str(k): str(v) for k, v in dict(node).items() if v is not None}
    unknown = sorted(set(paths) - set(VIEWS))
    if unknown:
        raise ConfigError(f"{key}: unknown view(s) {unknown}; the views are {list(VIEWS)}")
    if not paths:
        raise ConfigError(f"{key}: give at least one view's checkpoint, e.g. '{{spinal: A.ckpt}}'")
    return paths


def refuse_rsna_checkpoint(cfg: DictConfig) -> None:
    """TianChi mode given one RSNA view checkpoint (or ``series=``): say how RSNA prediction is called.

    Raises:
        ConfigError: ``series=`` without a per-view ``ckpt_path``, or ``ckpt_path`` is an RSNA checkpoint.
    """
    from pathlib import Path

    import torch

    from spinectx.data.errors import ConfigError

    usage = "give ckpt_path='{spinal: A.ckpt, foraminal: B.ckpt, subarticular: C.ckpt}' (one checkpoint per view)"
    path = Path(str(cfg.ckpt_path))
    view = None
    if path.is_file():
        try:
            hparams = torch.load(path, map_location="cpu", weights_only=False, mmap=True).get("hyper_parameters", {})
            view = ((hparams.get("metrics") or {}).get("rsna") or {}).get("view")
        except Exception:  # noqa: BLE001 - an unreadable file is load_module's to report, by name
            view = None
    if view:
        raise ConfigError(f"ckpt_path={path} is an RSNA 2024 {view} checkpoint: {usage}")
    if cfg.get("series"):
        raise ConfigError(f"series= is for RSNA 2024 prediction: {usage}")
    if cfg.get("classifier_ckpt") is not None and not isinstance(cfg.classifier_ckpt, str):
        raise ConfigError(f"classifier_ckpt={cfg.classifier_ckpt}: one checkpoint path beside one ckpt_path; a "
                          "per-view mapping is for RSNA 2024, with ckpt_path a per-view mapping too")


def predict_rsna(cfg: DictConfig, settings: dict) -> None:
    """RSNA mode of :func:`main` (module docstring)."""
    from pathlib import Path

    from spinectx.data.errors import ConfigError, DataError
    from spinectx.data.rsna_submission import write_submission
    from spinectx.inference import load_module
    from spinectx.rsna_inference import predict_studies, study_folders, write_points

    start = time.perf_counter()
    checkpoints = rsna_checkpoints(cfg.ckpt_path)
    classifiers = rsna_checkpoints(cfg.classifier_ckpt, "classifier_ckpt") if cfg.get("classifier_ckpt") else {}
    if set(classifiers) - set(checkpoints):
        raise ConfigError(f"classifier_ckpt: view(s) {sorted(set(classifiers) - set(checkpoints))} have no stage-1 "
                          "checkpoint in ckpt_path")
    study_folders(cfg.input)  # input problems before the models are loaded
    if cfg.get("series") and not Path(cfg.series).is_file():
        raise DataError(cfg.series, "series= must be the series descriptions CSV file (no such file)")
    if cfg.get("points") and Path(cfg.points).is_dir():
        raise ConfigError(f"points={cfg.points} is a folder; give the JSON file the points go to "
                          f"(e.g. {cfg.points}/predictions.json)")
    modules = {}
    for view, path in checkpoints.items():
        module = load_module(path, device=settings["device"], tta=settings["tta"], classifier_ckpt=classifiers.get(view))
        trained = (dict(module.hparams.get("metrics") or {}).get("rsna") or {}).get("view")
        if module.rsna_metric is None or trained is None:
            raise DataError(path, f"given as the {view} checkpoint but not trained on RSNA 2024 (data=rsna2024…)")
        if trained != view:
            raise DataError(path, f"given as the {view} checkpoint but trained on the {trained} view")
        modules[view] = module

    def progress(i, n, study):
        log.info("study %d/%d: %s", i + 1, n, study)

    prediction = predict_studies(cfg.input, modules, cfg.get("series"), progress=progress)
    for p in prediction.problems:
        log.warning("%s", p)
    csv_path, sidecar = write_submission(prediction.submission, prediction.from_prior, settings["output"])
    points = Path(cfg.points) if cfg.get("points") else csv_path.with_name("predictions.json")
    write_points(points, prediction, input=str(Path(cfg.input).resolve()),
                 series=str(Path(cfg.series).resolve()) if cfg.get("series") else None,
                 checkpoints={v: str(Path(p).resolve()) for v, p in checkpoints.items()},
                 tta={v: bool(m.hparams.tta) for v, m in modules.items()})
    reads = [r.pixel_reads for r in prediction.studies]
    log.info("%d studies, %d rows (%d from the prior), %.1f pixel reads per study, in %.1f s → %s, %s, %s",
             len(prediction.studies), len(prediction.submission), len(prediction.from_prior),
             sum(reads) / max(len(reads), 1), time.perf_counter() - start, csv_path, sidecar, points)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
@fail_cleanly("spinectx-predict")
def main(cfg: DictConfig) -> None:
    from spinectx.data.errors import DataError
    from spinectx.data.submission import write_submission
    from spinectx.inference import find_targets, load_module, predict_targets

    start = time.perf_counter()
    settings = check_settings(cfg)
    if is_rsna(cfg):
        return predict_rsna(cfg, settings)
    refuse_rsna_checkpoint(cfg)
    targets, problems = find_targets(cfg.input)  # input problems before the model is loaded
    predictions = []
    if targets:
        module = load_module(cfg.ckpt_path, device=settings["device"], tta=settings["tta"],
                             classifier_ckpt=cfg.get("classifier_ckpt"))
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
