"""A short real training run (DataModule with its workers + Lightning), measured from inside.

``python -m spinectx.bench.probe '<json>'`` runs it in a fresh process and prints one JSON line:
seconds per step, the share of each iteration spent waiting for the next batch, and the peak
resident memory (bytes) of the training process, and of it with its DataLoader workers. The JSON
holds ``overrides`` (Hydra overrides of ``conf/train.yaml``), ``steps`` and ``warmup``.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import lightning as L


class DataWait(L.Callback):
    """Per iteration: time waiting between the end of one batch and the start of the next (the
    loader's fetch and Lightning's bookkeeping) and the step itself (forward to optimiser step)."""

    def __init__(self):
        import psutil

        self.waits: list[float] = []
        self.steps: list[float] = []
        self._end: float | None = None
        self._start = 0.0
        self._proc = psutil.Process()
        self.peak_total_rss = 0  # this process + its DataLoader workers, sampled after each step

    def _sample_memory(self) -> None:
        procs = [self._proc, *self._proc.children(recursive=True)]
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except Exception:  # a worker that just exited
                pass
        self.peak_total_rss = max(self.peak_total_rss, total)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()
        if self._end is not None:
            self.waits.append(self._start - self._end)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append(time.perf_counter() - self._start)
        self._sample_memory()
        self._end = time.perf_counter()  # the memory sampling is counted neither as step nor as wait

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._end = None  # the first fetch of an epoch starts the workers: not counted


def run_probe(overrides: list[str], steps: int, warmup: int = 3) -> dict:
    """Train ``warmup + steps + 1`` steps of the composed config; measure the last ``steps`` (each
    with the wait before it, so the first step after warm-up only opens the measurement)."""
    import hydra
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from spinectx.cli import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    model = hydra.utils.instantiate(cfg.model, landmarks=OmegaConf.to_container(cfg.data.landmarks, resolve=True),
                                    input_size=int(cfg.data.image_size))
    clock = DataWait()
    trainer = L.Trainer(accelerator="cpu", devices=1, precision=cfg.trainer.get("precision", "32-true"),
                        max_steps=warmup + steps + 1, max_epochs=-1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0, callbacks=[clock])
    trainer.fit(model, datamodule=datamodule)
    waits, times = clock.waits[warmup:], clock.steps[warmup + 1:]
    n = min(len(waits), len(times))
    wait, step = sum(waits[-n:]), sum(times[-n:])
    return {
        "image_size": int(cfg.data.image_size), "batch_size": int(cfg.data.batch_size),
        "num_workers": int(cfg.data.num_workers), "steps_measured": n,
        "step_s": (wait + step) / n, "compute_s": step / n, "data_wait_s": wait / n,
        "data_wait_share": wait / (wait + step),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_total_rss_bytes": clock.peak_total_rss,  # with the workers (shared pages counted per process)
    }


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    print(json.dumps(run_probe(spec["overrides"], int(spec["steps"]), int(spec.get("warmup", 3)))), flush=True)
