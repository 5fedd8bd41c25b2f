"""Inference throughput: study folders in the challenge layout → submission JSON, seconds per study.

The path is that of ``spinectx-predict``: index each study from DICOM headers only, pick the T2
sagittal series' middle slice, decode that one frame, predict (with the checkpoint's flip
averaging), map back to frame pixels and write the JSON. Pixel decodes are counted by wrapping
``pydicom.dcmread``: a read that does not stop before the pixel data counts as one.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def count_pixel_reads():
    """Count ``pydicom.dcmread`` calls (through spinectx's DICOM module) that load pixel data."""
    import spinectx.data.dicom as dicom

    counts = {"headers": 0, "pixels": 0}
    original = dicom.pydicom.dcmread

    def counting(*args, **kwargs):
        counts["headers" if kwargs.get("stop_before_pixels") else "pixels"] += 1
        return original(*args, **kwargs)

    dicom.pydicom.dcmread = counting
    try:
        yield counts
    finally:
        dicom.pydicom.dcmread = original


def predict_folder(module, folder: Path, output: Path, batch_size: int = 1) -> dict:
    """Predict every study under ``folder`` into ``output``; timings in seconds."""
    from spinectx.data.submission import write_submission
    from spinectx.inference import find_targets, predict_targets

    with count_pixel_reads() as counts:
        start = time.perf_counter()
        targets, problems = find_targets(folder)
        indexed = time.perf_counter()
        predictions, more = predict_targets(module, targets, batch_size)
        predicted = time.perf_counter()
        write_submission(output, predictions, module.landmarks)
        done = time.perf_counter()
    n = len(predictions)
    files = sum(1 for _ in Path(folder).rglob("*.dcm"))
    return {
        "studies": n, "dicom_files": files, "problems": len(problems) + len(more),
        "seconds_per_study": (done - start) / n, "index_s_per_study": (indexed - start) / n,
        "predict_s_per_study": (predicted - indexed) / n, "write_s": done - predicted,
        "pixel_reads_per_study": counts["pixels"] / n, "header_reads_per_study": counts["headers"] / n,
        "tta": bool(module.hparams.tta),
    }
