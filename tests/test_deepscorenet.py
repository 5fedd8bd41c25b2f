"""DeepScoreNet (SPEC §7): parameter counts as Keras and PyTorch count them, shapes, Keras "same" max-pool."""

import pytest
import torch

from spinectx.models.deepscorenet import DeepScoreNet, keras_parameter_count, max_pool_same


def test_parameter_counts_match_the_seed():
    counts = keras_parameter_count(DeepScoreNet(in_chans=3, num_classes=3))
    assert counts == {"trainable": 2_784_259, "non_trainable": 3_392, "total": 2_787_651, "torch": 2_784_259}


def test_in_chans_and_num_classes_change_only_the_first_and_last_layer():
    base = keras_parameter_count(DeepScoreNet())["trainable"]
    assert keras_parameter_count(DeepScoreNet(in_chans=1))["trainable"] == base - 2 * 9 * 32
    assert keras_parameter_count(DeepScoreNet(num_classes=5))["trainable"] == base + 2 * (128 + 1)


def test_frozen_parameters_count_as_non_trainable():
    net = DeepScoreNet()
    net.fc.requires_grad_(False)
    counts = keras_parameter_count(net)
    assert counts["trainable"] == 2_784_259 - 387
    assert counts["non_trainable"] == 3_392 + 387
    assert counts["total"] == 2_787_651


def test_output_shape_and_stage_sizes_for_a_32px_crop():
    net = DeepScoreNet().eval()
    sizes = []
    for stage in net.stages:
        stage.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[1:])))
    x = torch.rand(2, 3, 32, 32) * 255  # three neighbouring slices as channels (2.5-D) or a repeated grey crop
    logits = net(x)
    assert logits.shape == (2, 3)
    assert sizes == [(64, 16, 16), (128, 8, 8), (256, 4, 4)]
    feats = net.forward_features(x)
    assert feats.shape == (2, 256) and net.num_features == 256
    assert net.forward_head(feats, pre_logits=True).shape == (2, 128)
    torch.testing.assert_close(net.forward_head(feats), logits)


def test_odd_input_size_keeps_pool_and_shortcut_aligned():
    assert DeepScoreNet().eval()(torch.rand(1, 3, 33, 31)).shape == (1, 3)


def test_max_pool_same_pads_after_on_even_sizes_and_never_wins():
    x = -(torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4) + 1)  # x[i, j] = −(4i + j + 1) < 0
    out = max_pool_same(x)
    # windows rows/cols {0,1,2} and {2,3,(pad)}: maxima at the windows' top-left cells; zero padding would give 0
    expected = torch.tensor([[-1.0, -3.0], [-9.0, -11.0]]).reshape(1, 1, 2, 2)
    torch.testing.assert_close(out, expected)
    y = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    # padding 0 before / 1 after: first window ends at row/col 2 (PyTorch's symmetric padding=1 would give 5)
    torch.testing.assert_close(max_pool_same(y), torch.tensor([[10.0, 11.0], [14.0, 15.0]]).reshape(1, 1, 2, 2))


def test_bad_input_shape_raises():
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        DeepScoreNet()(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="in_chans"):
        DeepScoreNet(in_chans=0)
