"""FocalLoss and the seed's class weights (SPEC §7)."""

import math

import pytest
import torch
import torch.nn.functional as F

from spinectx.losses.focal import FocalLoss, seed_class_weights


def test_gamma_zero_without_factors_is_cross_entropy():
    torch.manual_seed(0)
    logits, target = torch.randn(7, 3), torch.tensor([0, 1, 2, 2, 1, 0, 1])
    torch.testing.assert_close(FocalLoss(gamma=0.0)(logits, target), F.cross_entropy(logits, target))


def test_one_sample_gamma_3_hand_computed():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))  # softmax = [0.5, 0.25, 0.25]
    # target 1: p_t = 0.25 → (0.75)^3 · ln 4 = 0.421875 · 1.3862944 = 0.5848430
    assert FocalLoss(gamma=3.0)(logits, torch.tensor([1])).item() == pytest.approx(0.421875 * math.log(4), rel=1e-6)
    # with α = [0.15, 0.40, 0.45] and w = [1, 5/3, 1]: 0.40 · 5/3 · 0.5848430 = 0.3898953
    loss = FocalLoss(gamma=3.0, alpha=[0.15, 0.40, 0.45], weight=[1.0, 5 / 3, 1.0])(logits, torch.tensor([1]))
    assert loss.item() == pytest.approx(0.40 * 5 / 3 * 0.421875 * math.log(4), rel=1e-6)
    # target 0: (0.5)^3 · ln 2 = 0.0866434
    assert FocalLoss(gamma=3.0)(logits, torch.tensor([0])).item() == pytest.approx(0.125 * math.log(2), rel=1e-6)


def test_mean_is_over_non_ignored_samples_not_over_weights():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]))
    loss = FocalLoss(gamma=3.0, weight=[2.0, 1.0, 1.0])(logits, torch.tensor([0, 1, -1]))
    expected = (2.0 * 0.125 * math.log(2) + 0.421875 * math.log(4)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    all_ignored = FocalLoss()(logits, torch.full((3,), -1))
    assert all_ignored.item() == 0.0


def test_gradient_flows_and_easy_samples_weigh_less():
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.0, 0.0]], requires_grad=True)
    target = torch.tensor([0, 0])
    FocalLoss(gamma=3.0)(logits, target).backward()
    assert logits.grad[0].abs().sum() < 0.01 * logits.grad[1].abs().sum()  # the confident sample is down-weighted


def test_seed_class_weights_for_70_20_10():
    alpha, weight = seed_class_weights([70, 20, 10])
    assert alpha == pytest.approx([0.15, 0.40, 0.45])
    assert weight == pytest.approx([100 / 210, 100 / 60, 100 / 30])
    assert sum(alpha) == pytest.approx(1.0)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="> 0"):
        seed_class_weights([10, 0, 5])
    with pytest.raises(ValueError, match="gamma"):
        FocalLoss(gamma=-1.0)
    with pytest.raises(ValueError, match="different lengths"):
        FocalLoss(alpha=[0.2, 0.8], weight=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"0\.\.2"):
        FocalLoss()(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="3 classes"):
        FocalLoss(alpha=[0.5, 0.5])(torch.zeros(2, 3), torch.tensor([0, 1]))
