"""Parameter and multiply-accumulate (MAC) counts of a network for one input size.

Both are measured by running one forward pass with hooks, so only modules that the forward pass
actually calls count (a backbone's unused stages or heads add nothing).

MACs come in two conventions:
- ``paper``: what the paper's tables report as "FLOPs" — thop's counting over the released code:
  a convolution costs output elements × (input channels / groups) × kernel area, *also for
  transposed convolutions* (thop counts them on the output grid, i.e. stride² times their real
  cost), batch norm 2 per element, linear in × out per row, activations/pooling/interpolation 0,
  and the MSC's dense atrous block recomputes every branch (the released code does).
- ``executed``: what this implementation really computes: transposed convs on the input grid,
  shared atrous branches, batch norm free (foldable), convolution and linear MACs only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from spinectx.models.msc import DenseAtrousBlock

CONVENTIONS = ("paper", "executed")


@dataclass(frozen=True)
class Complexity:
    """``params``: parameters of the modules used in forward; ``macs``: multiply-accumulates of
    one forward pass (batch 1) in ``convention``; ``input_hw``: (H, W) in pixels."""

    params: int
    macs: int
    convention: str
    input_hw: tuple[int, int]

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    @property
    def macs_g(self) -> float:
        return self.macs / 1e9


def _module_macs(module: nn.Module, inp: torch.Tensor, out: torch.Tensor, convention: str) -> int:
    if isinstance(module, nn.ConvTranspose2d):
        kernel = module.weight.shape[2] * module.weight.shape[3]
        if convention == "paper":
            return out.numel() * (inp.shape[1] // module.groups) * kernel
        return inp.numel() * (module.out_channels // module.groups) * kernel
    if isinstance(module, nn.Conv2d):
        kernel = module.weight.shape[2] * module.weight.shape[3]
        return out.numel() * (inp.shape[1] // module.groups) * kernel
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return 2 * inp.numel() if convention == "paper" else 0
    return 0


@contextmanager
def _released_msc(model: nn.Module, convention: str) -> Iterator[None]:
    """Under ``paper``, run every dense atrous block unshared while counting; restore afterwards."""
    blocks = [m for m in model.modules() if isinstance(m, DenseAtrousBlock)]
    saved = [b.share_branches for b in blocks]
    try:
        for b in blocks:
            b.share_branches = convention != "paper"
        yield
    finally:
        for b, s in zip(blocks, saved):
            b.share_branches = s


@torch.no_grad()
def measure(model: nn.Module, input_hw: tuple[int, int] = (512, 512), in_channels: int = 1,
            convention: str = "paper") -> Complexity:
    """Count parameters used in forward and MACs of one [1, in_channels, H, W] forward pass."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    macs = 0
    used: set[int] = set()
    params = 0

    def hook(module: nn.Module, inputs: tuple, output) -> None:
        nonlocal macs, params
        if id(module) not in used:
            used.add(id(module))
            params += sum(p.numel() for p in module.parameters(recurse=False))
        if inputs and isinstance(inputs[0], torch.Tensor) and isinstance(output, torch.Tensor):
            macs += _module_macs(module, inputs[0], output, convention)

    was_training = model.training
    model.eval()
    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        device = next(model.parameters()).device
        with _released_msc(model, convention):
            model(torch.zeros(1, in_channels, *input_hw, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return Complexity(params=params, macs=int(macs), convention=convention, input_hw=tuple(input_hw))


def complexity_report(net: nn.Module, train_size: int | None = None, paper_size: int = 512) -> dict[str, float]:
    """What every training run records about its network: params (M) and MACs (G) at the paper's
    input size in both conventions, and the executed MACs at the training input size."""
    paper = measure(net, (paper_size, paper_size), convention="paper")
    report = {
        "params_M": round(paper.params_m, 4),
        "flops_G": round(paper.macs_g, 3),
        "executed_flops_G": round(measure(net, (paper_size, paper_size), convention="executed").macs_g, 3),
        "input_size": paper_size,
    }
    if train_size and train_size != paper_size:
        report["train_input_size"] = int(train_size)
        report["train_executed_flops_G"] = round(measure(net, (train_size, train_size), convention="executed").macs_g, 3)
    return report
