"""HeatmapCodec / IntegralCodec and their losses."""

import math

import pytest
import torch

from spinectx.codecs import HeatmapCodec, IntegralCodec
from spinectx.losses import HeatmapLoss, IntegralLoss

SIZE = 128  # input image side, px
GROUPS = [0, 0, 1, 1, 1]  # K = 5 landmarks in two groups


def random_points(b, k, size, margin=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return margin + torch.rand(b, k, 2, generator=g) * (size - 1 - 2 * margin)


def all_visible(b, k):
    return torch.ones(b, k, dtype=torch.bool)


def gaussian_map(h, w, u, v, s):
    """A Gaussian of peak 1 at (u, v) cells with sigma ``s`` cells, built without any codec."""
    rows = torch.arange(h, dtype=torch.float32)[:, None]
    cols = torch.arange(w, dtype=torch.float32)[None, :]
    return torch.exp(-0.5 * (((cols - u) / s) ** 2 + ((rows - v) / s) ** 2))


def labels_for(b, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, k, generator=g) > 0.5).float()


# ---------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("stride", [4, 8])
def test_heatmap_round_trip(stride):
    codec = HeatmapCodec(stride=stride, sigma=8.0)
    pts = random_points(3, 5, SIZE, margin=3 * codec.sigma)
    t = codec.encode(pts, all_visible(3, 5), (SIZE, SIZE))
    assert t.heatmap.shape == (3, 5, SIZE // stride, SIZE // stride)
    decoded = codec.decode(codec.targets_as_output(t))
    assert decoded.keypoints.shape == (3, 5, 2)
    # 0.1 cells; in practice ~1e-4 cells since the log-parabola is exact for a Gaussian
    assert (decoded.keypoints - pts).abs().max() < 0.1 * stride
    assert (decoded.keypoints - pts).abs().max() < 0.01 * stride
    assert torch.all(decoded.score <= 1.0) and torch.all(decoded.score > 0.5)


@pytest.mark.parametrize("stride,beta", [(4, 1.0), (8, 1.0), (4, 2.5)])
def test_integral_round_trip(stride, beta):
    codec = IntegralCodec(stride=stride, sigma=8.0, beta=beta)
    pts = random_points(3, 5, SIZE, margin=4 * codec.sigma)
    t = codec.encode(pts, all_visible(3, 5), (SIZE, SIZE))
    assert t.coords.shape == (3, 5, 2)
    assert torch.allclose(t.coords, codec.to_cells(pts))
    out = codec.targets_as_output(t)
    # softmax(beta · logits) must give back the normalised Gaussian of sigma / stride cells
    _, prob = codec.expectation(out[:, :5])
    s = codec.sigma / stride
    gauss = torch.stack([torch.stack([gaussian_map(SIZE // stride, SIZE // stride, u, v, s) for u, v in row])
                         for row in t.coords.tolist()])
    assert torch.allclose(prob, gauss / gauss.sum((-2, -1), keepdim=True), atol=1e-6)
    decoded = codec.decode(out)
    assert (decoded.keypoints - pts).abs().max() < 0.1 * stride
    assert (decoded.keypoints - pts).abs().max() < 0.01 * stride
    # the probability map is the normalised Gaussian: its peak is below 1 and above a flat map's
    n_cells = (SIZE // stride) ** 2
    assert torch.all(decoded.score < 1.0) and torch.all(decoded.score > 10.0 / n_cells)


def test_heatmap_decode_recovers_an_independent_subcell_gaussian():
    codec = HeatmapCodec(stride=4, sigma=8.0)
    u, v = 10.37, 7.81
    hm = gaussian_map(24, 32, u, v, s=1.7)[None, None]  # sigma deliberately not the codec's
    out = torch.cat([hm, torch.zeros_like(hm)], 1)
    decoded = codec.decode(out)
    expected = codec.to_pixels(torch.tensor([u, v]))
    assert (decoded.keypoints[0, 0] - expected).abs().max() < 0.1 * codec.stride
    # plain argmax would be off by (0.37, 0.19) cells; the refinement must do better
    assert (decoded.keypoints[0, 0] - expected).abs().max() < 0.01 * codec.stride


def test_integral_decode_recovers_an_independent_subcell_gaussian():
    codec = IntegralCodec(stride=4, sigma=8.0)
    u, v = 10.37, 7.81
    logits = gaussian_map(24, 32, u, v, s=1.7).log()[None, None]  # unnormalised log-Gaussian
    out = torch.cat([logits, torch.zeros_like(logits)], 1)
    decoded = codec.decode(out)
    expected = codec.to_pixels(torch.tensor([u, v]))
    assert (decoded.keypoints[0, 0] - expected).abs().max() < 0.1 * codec.stride
    coords, prob = codec.expectation(logits)
    assert torch.allclose(prob.sum((-2, -1)), torch.ones(1, 1))
    assert torch.allclose(coords[0, 0], torch.tensor([u, v]), atol=1e-3)


def test_heatmap_decode_does_not_shift_at_the_border_or_on_a_flat_map():
    codec = HeatmapCodec(stride=4)
    hm = gaussian_map(8, 8, 0.3, 4.2, s=1.0)  # peak in column 0: no left neighbour
    flat = torch.full((8, 8), -1.0)  # a negative map: every log clamps to eps, zero curvature
    flat[3, 4] = -0.5  # the argmax, inside the grid
    out = torch.stack([hm, flat])[None]
    out = torch.cat([out, torch.zeros_like(out)], 1)
    decoded = codec.decode(out)
    assert torch.isfinite(decoded.keypoints).all()
    u = codec.to_cells(decoded.keypoints[0])
    assert u[0, 0].item() == pytest.approx(0.0)  # x not refined at the border
    assert u[0, 1].item() == pytest.approx(4.2, abs=1e-3)  # y still refined
    assert u[1].tolist() == pytest.approx([4.0, 3.0])


# ---------------------------------------------------------------------------- target values


@pytest.mark.parametrize("stride", [4, 8])
def test_heatmap_target_values(stride):
    codec = HeatmapCodec(stride=stride, sigma=8.0)
    # exactly at the centre of cell (row 2, col 3)
    x, y = 3 * stride + (stride - 1) / 2, 2 * stride + (stride - 1) / 2
    t = codec.encode(torch.tensor([[[x, y]]]), all_visible(1, 1), (64, 64))
    assert t.heatmap[0, 0, 2, 3] == pytest.approx(1.0)
    one_cell = math.exp(-0.5 * (stride / codec.sigma) ** 2)
    for r, c in [(2, 4), (2, 2), (1, 3), (3, 3)]:
        assert t.heatmap[0, 0, r, c] == pytest.approx(one_cell, rel=1e-5)
    assert t.heatmap[0, 0, 3, 4] == pytest.approx(one_cell**2, rel=1e-5)
    assert t.heatmap.max() == t.heatmap[0, 0, 2, 3]
    assert t.peak_index[0, 0] == 2 * (64 // stride) + 3


def test_integral_target_values():
    codec = IntegralCodec(stride=4, sigma=8.0)
    t = codec.encode(torch.tensor([[[13.5, 9.5]]]), all_visible(1, 1), (64, 64))
    assert t.coords[0, 0].tolist() == pytest.approx([3.0, 2.0])
    assert t.peak_index[0, 0] == 2 * 16 + 3
    out = codec.targets_as_output(t)
    assert out.shape == (1, 2, 16, 16)
    # log of a normalised Gaussian: exp sums to 1, ratio one cell away is exp(-0.5 (s/sigma)^2)
    assert out[0, 0].exp().sum() == pytest.approx(1.0, rel=1e-5)
    assert (out[0, 0, 2, 3] - out[0, 0, 2, 4]).item() == pytest.approx(0.5 * (4 / 8) ** 2, rel=1e-4)


# ---------------------------------------------------------------------------- invalid landmarks


def _with_invalid():
    pts = torch.tensor([[[40.0, 40.0], [float("nan"), float("nan")], [60.0, 20.0], [30.0, 70.0], [80.0, 80.0]]])
    vis = torch.tensor([[True, False, False, True, True]])  # #1 NaN, #2 finite but not visible
    return pts, vis


def test_heatmap_invalid_landmarks():
    codec = HeatmapCodec(stride=4, sigma=8.0)
    pts, vis = _with_invalid()
    t = codec.encode(pts, vis, (SIZE, SIZE))
    assert t.valid.tolist() == [[True, False, False, True, True]]
    assert torch.isfinite(t.heatmap).all()
    assert t.heatmap[0, 1].abs().sum() == 0 and t.heatmap[0, 2].abs().sum() == 0
    decoded = codec.decode(codec.targets_as_output(t))
    assert torch.isfinite(decoded.keypoints).all()

    loss_fn = HeatmapLoss(GROUPS)
    labels = torch.tensor([[1.0, float("nan"), 0.0, 0.0, 1.0]])
    out = codec.targets_as_output(t).clone()
    base = loss_fn(out, t, labels, codec)
    # garbage in the invalid landmarks' channels changes nothing
    out[:, 1:3] = torch.randn_like(out[:, 1:3]) * 100
    out[:, 5 + 1 : 5 + 3] = torch.randn_like(out[:, 1:3]) * 100
    other = loss_fn(out, t, labels, codec)
    for key in ("loss", "heatmap", "class"):
        assert torch.isfinite(base[key]) and other[key] == pytest.approx(base[key].item())


def test_integral_invalid_landmarks():
    codec = IntegralCodec(stride=4, sigma=8.0)
    pts, vis = _with_invalid()
    t = codec.encode(pts, vis, (SIZE, SIZE))
    assert t.valid.tolist() == [[True, False, False, True, True]]
    assert torch.isfinite(t.coords).all()
    out = codec.targets_as_output(t)
    assert torch.isfinite(out).all() and out[0, 1].abs().sum() == 0 and out[0, 2].abs().sum() == 0
    assert torch.isfinite(codec.decode(out).keypoints).all()

    loss_fn = IntegralLoss(GROUPS)
    labels = torch.tensor([[1.0, float("nan"), 0.0, 0.0, 1.0]])
    out = out.clone()
    base = loss_fn(out, t, labels, codec)
    out[:, 1:3] = torch.randn_like(out[:, 1:3]) * 100
    out[:, 5 + 1 : 5 + 3] = torch.randn_like(out[:, 1:3]) * 100
    other = loss_fn(out, t, labels, codec)
    for key in ("loss", "coord", "class"):
        assert torch.isfinite(base[key]) and other[key] == pytest.approx(base[key].item())


# ---------------------------------------------------------------------------- class logit


@pytest.mark.parametrize("codec", [HeatmapCodec(stride=4), IntegralCodec(stride=4)], ids=repr)
def test_decode_reads_class_logit_at_the_decoded_cell(codec):
    pts = torch.tensor([[[21.0, 101.0], [90.0, 30.0]]])  # well inside their cells
    t = codec.encode(pts, all_visible(1, 2), (SIZE, SIZE))
    logit = torch.full((1, 2, SIZE // 4, SIZE // 4), -5.0)
    logit.view(1, 2, -1)[0, 0, t.peak_index[0, 0]] = 3.0
    logit.view(1, 2, -1)[0, 1, t.peak_index[0, 1]] = -1.0
    decoded = codec.decode(codec.targets_as_output(t, class_logit=logit))
    assert decoded.prob[0, 0] == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item())
    assert decoded.prob[0, 1] == pytest.approx(torch.sigmoid(torch.tensor(-1.0)).item())


def test_integral_decode_reads_the_class_logit_at_a_corner():
    codec = IntegralCodec(stride=4)
    logits = torch.full((1, 1, 8, 8), -30.0)
    logits[0, 0, 7, 7] = 30.0  # all the mass in the corner cell
    cls = torch.full((1, 1, 8, 8), -5.0)
    cls[0, 0, 7, 7] = 2.0
    decoded = codec.decode(torch.cat([logits, cls], 1))
    assert decoded.prob[0, 0] == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item())
    assert decoded.score[0, 0] == pytest.approx(1.0)


# ---------------------------------------------------------------------------- losses


def _setup(codec_cls, loss_cls):
    codec = codec_cls(stride=4, sigma=8.0)
    pts = random_points(2, 5, SIZE, margin=4 * codec.sigma, seed=1)
    t = codec.encode(pts, all_visible(2, 5), (SIZE, SIZE))
    return codec, pts, t, loss_cls(GROUPS), labels_for(2, 5)


def test_heatmap_loss_is_zero_at_the_target_and_grows_away():
    codec, pts, t, loss_fn, labels = _setup(HeatmapCodec, HeatmapLoss)
    at = loss_fn(codec.targets_as_output(t), t, labels, codec)
    assert at["heatmap"].item() == pytest.approx(0.0, abs=1e-10)
    assert set(at) == {"loss", "heatmap", "class"}
    # a target built 1.5 cells away
    shifted = codec.encode(pts + 6.0, all_visible(2, 5), (SIZE, SIZE))
    away = loss_fn(codec.targets_as_output(shifted), t, labels, codec)
    assert away["heatmap"] > 0.1 and away["loss"] > at["loss"]
    # a logit agreeing with the labels lowers the class term
    good = (labels * 2 - 1)[..., None, None].expand_as(t.heatmap) * 5
    better = loss_fn(codec.targets_as_output(t, class_logit=good), t, labels, codec)
    assert better["class"] < at["class"]


def test_integral_loss_is_minimal_at_the_target_and_grows_away():
    codec, pts, t, loss_fn, labels = _setup(IntegralCodec, IntegralLoss)
    at = loss_fn(codec.targets_as_output(t), t, labels, codec)
    assert set(at) == {"loss", "coord", "class"}
    assert at["coord"].item() < 1e-3
    shifted = codec.encode(pts + 6.0, all_visible(2, 5), (SIZE, SIZE))
    away = loss_fn(codec.targets_as_output(shifted), t, labels, codec)
    assert away["coord"].item() == pytest.approx(3.0, abs=1e-2)  # 1.5 cells in x and y
    assert away["loss"] > at["loss"]


@pytest.mark.parametrize("which", ["heatmap", "integral"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_losses_backprop_and_accept_bf16(which, dtype):
    codec_cls, loss_cls = (HeatmapCodec, HeatmapLoss) if which == "heatmap" else (IntegralCodec, IntegralLoss)
    codec, pts, t, loss_fn, labels = _setup(codec_cls, loss_cls)
    g = torch.Generator().manual_seed(3)
    out = (torch.randn(2, 10, SIZE // 4, SIZE // 4, generator=g) * 0.1).to(dtype).requires_grad_()
    losses = loss_fn(out, t, labels, codec)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    assert all(not v.requires_grad for k, v in losses.items() if k != "loss")
    losses["loss"].backward()
    assert out.grad is not None and out.grad.dtype == dtype
    grad = out.grad.float()
    assert torch.isfinite(grad).all()
    assert grad[:, :5].abs().sum() > 0  # localisation block
    assert grad[:, 5:].abs().sum() > 0  # class block
    decoded = codec.decode(out.detach())
    assert decoded.keypoints.dtype == torch.float32 and torch.isfinite(decoded.keypoints).all()


# ---------------------------------------------------------------------------- errors / misc


@pytest.mark.parametrize("codec", [HeatmapCodec(stride=4), IntegralCodec(stride=8)], ids=repr)
def test_bad_sizes_raise(codec):
    with pytest.raises(ValueError, match="multiple of the stride"):
        codec.encode(torch.zeros(1, 1, 2), all_visible(1, 1), (100, 128 + 2))
    with pytest.raises(ValueError, match="not a multiple"):
        codec.decode(torch.zeros(1, 5, 4, 4))


def test_bad_parameters_raise_and_repr():
    with pytest.raises(ValueError):
        HeatmapCodec(sigma=0)
    with pytest.raises(ValueError):
        IntegralCodec(beta=0)
    assert repr(HeatmapCodec(stride=8, sigma=6)) == "HeatmapCodec(stride=8, sigma=6.0)"
    assert repr(IntegralCodec(stride=4, sigma=8, beta=2)) == "IntegralCodec(stride=4, sigma=8.0, beta=2.0)"
    assert HeatmapCodec.channels_per_landmark == IntegralCodec.channels_per_landmark == 2
