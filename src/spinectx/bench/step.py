"""Training-step benchmarks on one model and fixed batches (seconds per optimisation step).

- :func:`plain_loop`: forward, codec targets + loss, backward, optimiser step, in plain PyTorch
  (optionally under bf16 autocast and in channels-last layout).
- :func:`lightning_loop`: the same module, batches and optimiser in a ``lightning.Trainer``
  (``fit`` with ``max_steps``; no logger, checkpointing or progress bar).
Both time whole iterations (from one step's start to the next's), so everything a loop does
between steps counts.
"""

from __future__ import annotations

import copy
import itertools
import time

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _optimizer(module: L.LightningModule) -> torch.optim.Optimizer:
    config = module.configure_optimizers()
    return config["optimizer"] if isinstance(config, dict) else config


def plain_loop(module: L.LightningModule, batches: list[dict], steps: int, warmup: int = 2,
               precision: str = "32", channels_last: bool | None = None, device: str = "cpu") -> list[float]:
    """Seconds of each of ``steps`` plain-PyTorch training iterations after ``warmup``
    (``channels_last``: None keeps the module's setting; ``device``: "cpu" or "cuda")."""
    dev = torch.device(device)
    module = copy.deepcopy(module).to(dev).train()
    if channels_last is not None:
        module.hparams.channels_last = bool(channels_last)
        module.net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    optimizer = _optimizer(module)
    bf16 = precision.startswith("bf16")
    batches = [_to(b, dev) for b in batches]
    times, source = [], itertools.cycle(batches)
    _sync(dev)
    for i in range(warmup + steps):
        start = time.perf_counter()
        batch = next(source)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            output, features = module.forward_with_features(batch["image"])  # features: context heads only
            loss = module._losses(batch, output, features)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _sync(dev)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


class _Batches(Dataset):
    """Pre-made batches served as they are (``batch_size=None`` in the DataLoader)."""

    def __init__(self, batches: list[dict], length: int):
        self.batches, self.length = batches, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        return self.batches[i % len(self.batches)]


class _IterationClock(L.Callback):
    """Wall time between the starts of consecutive training batches."""

    def __init__(self):
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        _sync(pl_module.device)  # the previous step has really finished (GPU work is asynchronous)
        self.starts.append(time.perf_counter())


def lightning_loop(module: L.LightningModule, batches: list[dict], steps: int, warmup: int = 2,
                   precision: str = "32-true", device: str = "cpu") -> list[float]:
    """Seconds of each of ``steps`` training iterations of ``lightning.Trainer.fit`` after ``warmup``."""
    module = copy.deepcopy(module).train()
    clock = _IterationClock()
    trainer = L.Trainer(accelerator="gpu" if device.startswith("cuda") else "cpu", devices=1, precision=precision, max_steps=warmup + steps + 1, max_epochs=-1,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                        callbacks=[clock])
    # one extra step: iteration i lasts from the start of batch i to the start of batch i + 1
    loader = DataLoader(_Batches(batches, warmup + steps + 1), batch_size=None, shuffle=False, num_workers=0)
    trainer.fit(module, train_dataloaders=loader)
    starts = clock.starts[warmup:]
    return [b - a for a, b in zip(starts[:-1], starts[1:])]


def training_flops(net: torch.nn.Module, size: int, batch: int) -> float:
    """FLOPs of one training step: 3 × (2 × executed MACs of the forward pass) per image (the
    backward pass costs about twice the forward), times the batch."""
    from spinectx.models.complexity import measure

    macs = measure(copy.deepcopy(net).cpu().float(), (size, size), convention="executed").macs_g * 1e9
    return 3 * 2 * macs * batch
