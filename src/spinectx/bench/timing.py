"""Timing and memory helpers shared by the benchmarks (wall-clock seconds, bytes)."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable

import psutil


def time_calls(fn: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def summary(times: list[float]) -> dict:
    """Median, mean and min of a list of seconds (the median is what the tables print)."""
    return {"median_s": statistics.median(times), "mean_s": statistics.fmean(times), "min_s": min(times), "n": len(times)}


class PeakRss:
    """Peak resident memory of this process (bytes) while the ``with`` block runs, sampled by a
    thread every ``interval`` seconds (psutil); ``peak`` and ``start`` are set on exit."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.start = self.peak = 0
        self._stop = threading.Event()
        self._proc = psutil.Process()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self.start = self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)
