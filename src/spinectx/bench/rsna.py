"""RSNA 2024 speed (issue 13 §3): study folder → the study's 25 rows, and 2.5-D training samples.

* **Study → 25 rows**: :func:`time_studies` runs
  :func:`~spinectx.rsna_inference.predict_study` with the three views' modules on study folders
  (``<study_id>/<series_id>/*.dcm``) and records seconds per study, the DICOM reads it makes per
  file (:func:`count_dicom_reads`: header-only reads and reads that load the pixel data, by
  wrapping ``pydicom.dcmread`` with :mod:`unittest.mock` for the duration only) and the slice
  predictions (model calls; with flip TTA each is two network passes) per study.
* **Training samples**: :func:`training_throughput` measures a training dataset's augmented
  samples per second in one process with one torch thread, as a DataLoader worker runs (torch
  sets one intra-op thread in each worker; with the default thread pool the float16 → float32
  cast of each cached frame waits on a second thread and the figure would not be a worker's).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock


@dataclass
class DicomReads:
    """``pydicom.dcmread`` calls by file (resolved path): ``headers`` stopped before the pixel
    data, ``pixels`` loaded it."""

    headers: Counter = field(default_factory=Counter)
    pixels: Counter = field(default_factory=Counter)

    def clear(self) -> None:
        self.headers.clear()
        self.pixels.clear()


@contextmanager
def count_dicom_reads() -> Iterator[DicomReads]:
    """Count every ``pydicom.dcmread`` call made inside the block (spinectx reads DICOM only
    through it), per file. A read of a file object or bytes is counted under ``"<stream>"``."""
    import pydicom

    reads = DicomReads()
    original = pydicom.dcmread

    def counting(fp, *args, **kwargs):
        key = str(Path(fp).resolve()) if isinstance(fp, (str, Path)) else "<stream>"
        (reads.headers if kwargs.get("stop_before_pixels") else reads.pixels)[key] += 1
        return original(fp, *args, **kwargs)

    with mock.patch.object(pydicom, "dcmread", side_effect=counting):
        yield reads


@contextmanager
def count_model_calls(modules: Mapping[str, object]) -> Iterator[Counter]:
    """Count ``predict_keypoints`` calls of each module (view → calls) inside the block; the
    slices they carried (a call takes a batch of slices) are counted under ``"<view> slices"``."""
    calls: Counter = Counter()
    patches = []
    for view, module in modules.items():
        original = module.predict_keypoints

        def counting(*args, _view=view, _original=original, **kwargs):
            calls[_view] += 1
            calls[f"{_view} slices"] += int(args[0].shape[0]) if args else 0
            return _original(*args, **kwargs)

        patches.append(mock.patch.object(module, "predict_keypoints", side_effect=counting))
    for p in patches:
        p.start()
    try:
        yield calls
    finally:
        for p in reversed(patches):
            p.stop()


def study_dirs(root: str | Path, limit: int | None = None) -> list[Path]:
    """The study folders under ``root/train_images`` (sorted by name; the first ``limit``).
    Raises FileNotFoundError naming the folder when it holds none."""
    images = Path(root) / "train_images"
    dirs = sorted(p for p in images.iterdir() if p.is_dir()) if images.is_dir() else []
    if not dirs:
        raise FileNotFoundError(f"no study folders under {images} (expected train_images/<study_id>/<series_id>/*.dcm)")
    return dirs[:limit] if limit else dirs


def _one_study(folder: Path, modules: Mapping[str, object], descriptions: Mapping[str, str]) -> dict:
    from spinectx.rsna_inference import predict_study

    with count_dicom_reads() as reads, count_model_calls(modules) as calls:
        start = time.perf_counter()
        result = predict_study(folder, modules, descriptions)
        seconds = time.perf_counter() - start
    files = sorted(str(p.resolve()) for p in folder.rglob("*.dcm"))
    return {
        "study_id": result.study_id, "seconds": seconds, "dicom_files": len(files),
        "frames_decoded": result.pixel_reads, "pixel_reads": sum(reads.pixels.values()),
        "files_with_pixels_read": len(reads.pixels), "header_reads": sum(reads.headers.values()),
        "files_with_header_read": len(reads.headers),
        "max_header_reads_per_file": max(reads.headers.values(), default=0),
        "max_pixel_reads_per_file": max(reads.pixels.values(), default=0),
        "model_calls": {k: v for k, v in calls.items() if not k.endswith(" slices")},
        "slices_predicted": {k.removesuffix(" slices"): v for k, v in calls.items() if k.endswith(" slices")},
        "rows_predicted": len(result.rows), "rows_prior": len(result.reasons),
        "problems": len(result.problems),
    }


def time_studies(folders: Sequence[Path], modules: Mapping[str, object],
                 descriptions: Mapping[str, Mapping[str, str]], warmup: int = 1) -> dict:
    """Predict each study folder once, timed, after ``warmup`` untimed predictions of the first
    (first calls: allocator, kernels, imports). ``descriptions``: study_id → {series_id: text}
    (train_series_descriptions.csv). Seconds are wall-clock per study (headers, decodes, model
    calls, mapping back); ``studies`` holds each study's figures (see :func:`_one_study`)."""
    if not folders:
        raise ValueError("time_studies needs at least one study folder")
    for _ in range(warmup):
        _one_study(folders[0], modules, descriptions.get(folders[0].name, {}))
    per = [_one_study(f, modules, descriptions.get(f.name, {})) for f in folders]
    seconds = [p["seconds"] for p in per]
    calls = [sum(p["model_calls"].values()) for p in per]
    slices = [sum(p["slices_predicted"].values()) for p in per]
    return {
        "studies": len(per), "seconds_median": statistics.median(seconds), "seconds_mean": statistics.fmean(seconds),
        "seconds_max": max(seconds), "model_calls_mean": statistics.fmean(calls),
        "slices_predicted_mean": statistics.fmean(slices),
        "seconds_per_model_call": sum(seconds) / max(sum(calls), 1),
        "pixel_reads_mean": statistics.fmean(p["pixel_reads"] for p in per),
        "pixel_reads_max": max(p["pixel_reads"] for p in per),
        "dicom_files_mean": statistics.fmean(p["dicom_files"] for p in per),
        "dicom_files_min": min(p["dicom_files"] for p in per), "dicom_files_max": max(p["dicom_files"] for p in per),
        "max_header_reads_per_file": max(p["max_header_reads_per_file"] for p in per),
        "max_pixel_reads_per_file": max(p["max_pixel_reads_per_file"] for p in per),
        "pixel_reads_within_files": all(p["pixel_reads"] <= p["dicom_files"] for p in per),
        "headers_of_every_file": all(p["files_with_header_read"] == p["dicom_files"] for p in per),
        "rows_predicted_mean": statistics.fmean(p["rows_predicted"] for p in per),
        "rows_prior_mean": statistics.fmean(p["rows_prior"] for p in per),
        "all_25_rows": all(p["rows_predicted"] + p["rows_prior"] == 25 for p in per),
        "per_study": per,
    }


@contextmanager
def thread_limit(n: int | None) -> Iterator[None]:
    """torch's intra-op thread pool and OpenCV's at ``n`` threads inside the block (1: one core, the
    per-worker figure; None: left as they are). DataLoader workers themselves keep OpenCV's default
    pool: calling ``cv2.setNumThreads`` in a forked worker can deadlock when the parent's pool was
    busy at the fork (seen in a final validation, 2026-12-01)."""
    import cv2
    import torch

    before, cv_before = torch.get_num_threads(), cv2.getNumThreads()
    if n:
        torch.set_num_threads(int(n))
        cv2.setNumThreads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)
        cv2.setNumThreads(cv_before)


def training_throughput(dataset, codec, samples: int, stage_samples: int = 100) -> dict:
    """Augmented training samples per second of ``dataset`` (a SpineDataset with its training
    transform) + the codec's targets, with the frame cache warmed first and one torch thread;
    ``stages_ms``: milliseconds per sample of read / augment / bias field / encode."""
    from spinectx.bench.pipeline import samples_per_second, stage_times, warm_cache

    frames = warm_cache(dataset)
    with thread_limit(1):
        rate = samples_per_second(dataset.__getitem__, codec, samples)
        stages = stage_times(dataset, codec, min(stage_samples, max(samples, 8)))
    shape = tuple(dataset[0]["image"].shape)
    return {"samples_per_s": rate, "stages_ms": stages, "frames_cached": frames, "records": len(dataset.records),
            "sample_shape": list(shape), "augment": repr(dataset.transform)}
