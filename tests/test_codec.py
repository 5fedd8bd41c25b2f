import math

import pytest
import torch

from spinectx.codecs import CoarseFineCodec


def random_points(b, k, size, margin=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return margin + torch.rand(b, k, 2, generator=g) * (size - 1 - 2 * margin)


@pytest.mark.parametrize("stride", [16, 32])
def test_round_trip_is_exact(stride):
    codec = CoarseFineCodec(stride=stride, sigma=16)
    pts = random_points(4, 11, 256)
    vis = torch.ones(4, 11, dtype=torch.bool)
    targets = codec.encode(pts, vis, (256, 256))
    decoded = codec.decode(codec.targets_as_output(targets))
    assert decoded.keypoints.shape == (4, 11, 2)
    assert torch.allclose(decoded.keypoints, pts, atol=1e-4)
    # the target's peak cell is the cell whose centre is nearest the point
    centre = lambda v: torch.round((v - (stride - 1) / 2) / stride).long()  # noqa: E731
    row, col = centre(pts[..., 1]), centre(pts[..., 0])
    assert torch.equal(targets.peak_index, row * (256 // stride) + col)


def test_target_values_follow_the_definition():
    codec = CoarseFineCodec(stride=16, sigma=16)
    # point exactly at the centre of cell (row 2, col 3): x = 3*16 + 7.5, y = 2*16 + 7.5
    pts = torch.tensor([[[55.5, 39.5]]])
    t = codec.encode(pts, torch.ones(1, 1, dtype=torch.bool), (128, 128))
    assert t.heatmap.shape == (1, 1, 8, 8)
    assert t.heatmap[0, 0, 2, 3] == pytest.approx(1.0)
    # one cell (16 px = sigma) to the right: exp(-0.5)
    assert t.heatmap[0, 0, 2, 4] == pytest.approx(math.exp(-0.5), rel=1e-5)
    # offsets from each cell centre to the point, in cells
    assert t.offset_x[0, 0, 2, 4] == pytest.approx(-1.0)
    assert t.offset_y[0, 0, 0, 3] == pytest.approx(2.0)
    # offsets supervised only near the peak (heatmap >= 0.6 * peak): the 4-neighbourhood here
    assert t.offset_mask[0, 0].sum() == 5


def test_invisible_landmarks_get_no_target_and_nan_is_safe():
    codec = CoarseFineCodec(stride=16)
    pts = torch.tensor([[[40.0, 40.0], [float("nan"), float("nan")]]])
    vis = torch.tensor([[True, False]])
    t = codec.encode(pts, vis, (64, 64))
    assert torch.isfinite(t.heatmap).all() and torch.isfinite(t.offset_x).all()
    assert t.heatmap[0, 1].abs().sum() == 0 and not t.offset_mask[0, 1].any()
    assert t.valid.tolist() == [[True, False]]


def test_decode_reads_class_logit_at_the_peak_cell():
    codec = CoarseFineCodec(stride=16)
    pts = torch.tensor([[[20.0, 100.0]]])
    t = codec.encode(pts, torch.ones(1, 1, dtype=torch.bool), (128, 128))
    logit = torch.full_like(t.heatmap, -5.0)
    logit.view(1, 1, -1)[0, 0, t.peak_index[0, 0]] = 3.0
    decoded = codec.decode(codec.targets_as_output(t, class_logit=logit))
    assert decoded.prob[0, 0] == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item())


def test_bad_sizes_raise():
    codec = CoarseFineCodec(stride=16)
    with pytest.raises(ValueError, match="multiple of the stride"):
        codec.encode(torch.zeros(1, 1, 2), torch.ones(1, 1, dtype=torch.bool), (100, 128))
    with pytest.raises(ValueError, match="not a multiple"):
        codec.split(torch.zeros(1, 43, 4, 4))
