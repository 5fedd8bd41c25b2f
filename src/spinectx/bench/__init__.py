"""Benchmarks behind ``make bench`` (``spinectx-bench``): each prints a figure beside its reference.

- :mod:`~spinectx.bench.pipeline`: augmented training samples/s per worker (cache read + SPEC §3
  augmentation + target encoding) vs re-decoding the DICOM with pydicom for every sample.
- :mod:`~spinectx.bench.step`: Lightning Trainer vs a plain PyTorch loop on the same model and
  batches; fp32 vs bf16-mixed vs bf16-mixed + channels_last.
- :mod:`~spinectx.bench.inference`: study folder → submission JSON, seconds per study.
- :mod:`~spinectx.bench.rsna`: RSNA 2024 study folder → its 25 rows (seconds, DICOM reads per file,
  model calls per study) and 2.5-D training samples/s per worker.
- :mod:`~spinectx.bench.probe`: a short real training run in its own process: step time, share of
  the step spent waiting for data, peak memory (the scaling points and the data-wait figure).
"""
