"""Sequence context over levels (SPEC §8, issue 14 §2): landmark feature sampling follows the suite's
pixel convention, the Bi-LSTM / transformer really pass information between levels in spinal order,
and missing landmarks neither leak nor produce NaN."""

import pytest
import torch

from spinectx.codecs import HeatmapCodec
from spinectx.models.context import ContextHead, LevelContext, sample_landmark_features, spinal_order

TIANCHI_NAMES = ["L1", "L2", "L3", "L4", "L5", "T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
SMALL = dict(hidden=16, heads=2, dropout=0.1)


def index_maps(h: int, w: int) -> torch.Tensor:
    """[1, 2, h, w]: channel 0 = column index, channel 1 = row index."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    return torch.stack([xs, ys])[None]


def context(kind: str, k: int = 11, c: int = 8, n: int = 3, **kw) -> LevelContext:
    torch.manual_seed(0)
    return LevelContext(c, n, kind, **{**SMALL, **kw}).eval()


# ---------------------------------------------------------------- sampling
@pytest.mark.parametrize("stride", [4, 16])
def test_sampling_reads_cell_centres(stride):
    h, w = 5, 7
    feats = index_maps(h, w)
    i = torch.tensor([0.0, 3.0, 6.0, 2.0])  # columns
    j = torch.tensor([0.0, 1.0, 4.0, 2.0])  # rows
    centre = (stride - 1) / 2  # stride 4: x = 4i + 1.5 → i
    keypoints = torch.stack([stride * i + centre, stride * j + centre], -1)[None]
    out = sample_landmark_features(feats, keypoints, (h * stride, w * stride))
    assert out.shape == (1, 4, 2)
    torch.testing.assert_close(out[0, :, 0], i)
    torch.testing.assert_close(out[0, :, 1], j)


def test_sampling_is_bilinear_between_centres_and_matches_the_codec_convention():
    feats = index_maps(8, 6)  # stride 4 → input 32 × 24
    keypoints = torch.tensor([[[4 * 2 + 1.5 + 2.0, 4 * 3 + 1.5 + 1.0], [5.0, 20.25]]])  # x, y
    out = sample_landmark_features(feats, keypoints, (32, 24))
    torch.testing.assert_close(out[0, 0], torch.tensor([2.5, 3.25]))
    # interior points land where the codecs put them (u = (x − (s−1)/2) / s)
    torch.manual_seed(0)
    inside = torch.rand(2, 9, 2) * torch.tensor([24 - 4.0, 32 - 4.0]) + 1.5
    out = sample_landmark_features(feats.expand(2, -1, -1, -1), inside, (32, 24))
    torch.testing.assert_close(out, HeatmapCodec(stride=4).to_cells(inside))


def test_sampling_clamps_outside_points_to_the_border_and_zeros_missing_ones():
    feats = index_maps(4, 4) + 1.0  # values 1..4, so a zero can only come from a missing landmark
    keypoints = torch.tensor([[[-10.0, 5.5], [float("nan"), 3.0], [100.0, float("inf")], [1.5, 13.5]]])
    out = sample_landmark_features(feats, keypoints, (16, 16))
    torch.testing.assert_close(out[0, 0], torch.tensor([1.0, 2.0]))  # x clamped to column 0, y at row 1
    torch.testing.assert_close(out[0, 1], torch.zeros(2))
    torch.testing.assert_close(out[0, 2], torch.zeros(2))
    torch.testing.assert_close(out[0, 3], torch.tensor([1.0, 4.0]))
    assert torch.isfinite(out).all()


def test_sampling_gradients_reach_the_features_near_the_points_only():
    feats = torch.randn(2, 3, 8, 8, requires_grad=True)
    keypoints = torch.tensor([[[5.5, 5.5], [float("nan"), 0.0]], [[21.5, 9.5], [13.5, 29.5]]])  # stride 4
    sample_landmark_features(feats, keypoints, (32, 32)).sum().backward()
    touched = feats.grad.abs().sum(1) > 0  # [B, h, w]
    expected = torch.zeros(2, 8, 8, dtype=torch.bool)
    expected[0, 1, 1] = True  # (5.5, 5.5) is the centre of cell (1, 1)
    expected[1, 2, 5] = expected[1, 7, 3] = True
    assert torch.equal(touched, expected)


def test_sampling_rejects_bad_shapes():
    feats = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match="keypoints must be"):
        sample_landmark_features(feats, torch.zeros(2, 5, 3), (16, 16))
    with pytest.raises(ValueError, match="keypoints must be"):
        sample_landmark_features(feats, torch.zeros(1, 5, 2), (16, 16))
    with pytest.raises(ValueError, match="features must be"):
        sample_landmark_features(feats[0], torch.zeros(2, 5, 2), (16, 16))
    with pytest.raises(ValueError, match="input_size"):
        sample_landmark_features(feats, torch.zeros(2, 5, 2), (0, 16))


# ---------------------------------------------------------------- spinal order
def test_spinal_order_interleaves_tianchi_vertebrae_and_discs():
    order = spinal_order(TIANCHI_NAMES)
    assert [TIANCHI_NAMES[k] for k in order] == ["T12-L1", "L1", "L1-L2", "L2", "L2-L3", "L3", "L3-L4", "L4",
                                                  "L4-L5", "L5", "L5-S1"]
    assert spinal_order(["L5/S1", "L1/L2", "L3/L4"]) == [1, 2, 0]
    with pytest.raises(ValueError, match="left"):
        spinal_order(["left", "right"])


# ---------------------------------------------------------------- context flows
@pytest.mark.parametrize("kind", ["none", "bilstm", "transformer"])
def test_a_neighbours_feature_reaches_a_landmark_only_with_context(kind):
    model = context(kind)
    x = torch.randn(2, 11, 8)
    base = model(x)
    j = 5
    changed = x.clone()
    changed[0, j] += torch.randn(8)
    out = model(changed)
    assert not torch.allclose(out[0, j], base[0, j])  # its own logits always move
    for neighbour in (j - 1, j + 1):
        moved = not torch.allclose(out[0, neighbour], base[0, neighbour], atol=1e-6, rtol=0)
        assert moved == (kind != "none"), f"{kind}: neighbour {neighbour} moved={moved}"
    torch.testing.assert_close(out[1], base[1], atol=0, rtol=0)  # samples never mix


def test_bilstm_runs_along_the_sequence_in_both_directions():
    """The forward half of the LSTM output at step t sees steps ≤ t only, the backward half steps ≥ t:
    fails if the landmarks were fed per-landmark, shuffled, or along the batch axis."""
    model = context("bilstm")
    states = []
    model.lstm.register_forward_hook(lambda m, i, o: states.append(o[0].detach()))
    x = torch.randn(2, 11, 8)
    changed = x.clone()
    changed[:, 4] += torch.randn(8)
    model(x), model(changed)
    moved = (states[1] - states[0]).abs().amax(0) > 1e-6  # [K, 2·hidden]
    hidden = 16
    forward, backward = moved[:, :hidden].any(1), moved[:, hidden:].any(1)
    assert forward.tolist() == [k >= 4 for k in range(11)]
    assert backward.tolist() == [k <= 4 for k in range(11)]


def test_bilstm_output_depends_on_the_direction_of_the_sequence():
    model = context("bilstm")
    x = torch.randn(2, 11, 8)
    reversed_out = model(x.flip(1)).flip(1)
    assert not torch.allclose(reversed_out, model(x), atol=1e-4)


def test_order_feeds_tianchi_landmarks_top_to_bottom_and_returns_set_order():
    order = spinal_order(TIANCHI_NAMES)
    model = context("bilstm", order=order)
    plain = context("bilstm")  # same seed → same weights, set order as sequence
    x = torch.randn(2, 11, 8)
    torch.testing.assert_close(model(x), plain(x[:, order])[:, torch.argsort(torch.tensor(order))])
    # the forward direction at L1 (index 0, 2nd from the top) sees T12-L1 (index 5) but not L2 (index 1)
    states = []
    model.lstm.register_forward_hook(lambda m, i, o: states.append(o[0].detach()))
    changed = x.clone()
    changed[:, 1] += torch.randn(8)  # L2, 4th from the top
    model(x), model(changed)
    forward_moved = ((states[1] - states[0])[..., :16].abs().amax((0, 2)) > 1e-6).tolist()
    assert forward_moved == [step >= 3 for step in range(11)]


# ---------------------------------------------------------------- missing landmarks
@pytest.mark.parametrize("kind", ["bilstm", "transformer"])
@pytest.mark.parametrize("train", [False, True])
def test_a_masked_landmark_does_not_leak_and_gives_no_nan(kind, train):
    model = context(kind)
    model.train(train)
    x = torch.randn(2, 11, 8)
    mask = torch.ones(2, 11, dtype=torch.bool)
    mask[0, 3] = False
    a, b = x.clone(), x.clone()
    a[0, 3] = float("nan")
    b[0, 3] = 1e4
    torch.manual_seed(1)
    out_a = model(a, mask)
    torch.manual_seed(1)
    out_b = model(b, mask)
    assert torch.isfinite(out_a).all() and torch.isfinite(out_b).all()
    torch.testing.assert_close(out_a, out_b, atol=0, rtol=0)


def test_transformer_excludes_masked_keys_even_if_all_are_masked():
    model = context("transformer")
    x = torch.randn(2, 5, 8)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[1] = True
    out = model(x, mask)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1], model(x[1:])[0])  # unaffected by the other sample
    # the others do not attend to a masked landmark at all: not even its position embedding reaches them
    half = torch.ones(2, 5, dtype=torch.bool)
    half[:, 2] = False
    before = model(x, half)
    with torch.no_grad():
        model.position.weight[2] += torch.randn(16)
    after = model(x, half)
    keep = [0, 1, 3, 4]
    torch.testing.assert_close(after[:, keep], before[:, keep])
    assert not torch.allclose(after[:, 2], before[:, 2])  # (its own output does change)


# ---------------------------------------------------------------- shapes and the head
@pytest.mark.parametrize("kind", ["none", "bilstm", "transformer"])
@pytest.mark.parametrize("k,n", [(11, 5), (5, 3), (2, 3)], ids=["tianchi", "rsna_spinal", "subarticular"])
def test_context_head_shapes_and_gradients(kind, k, n):
    torch.manual_seed(0)
    head = ContextHead(6, n, kind, **SMALL)
    feats = torch.randn(2, 6, 8, 8, requires_grad=True)
    keypoints = torch.rand(2, k, 2) * 32
    keypoints[1, 0] = float("nan")  # a missing landmark
    logits = head(feats, keypoints, (32, 32))
    assert logits.shape == (2, k, n)
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    assert feats.grad.abs().sum() > 0
    assert all(p.grad is not None for p in head.parameters() if p.requires_grad)


def test_context_head_masks_missing_keypoints():
    torch.manual_seed(0)
    head = ContextHead(6, 3, "transformer", **SMALL).eval()
    feats = torch.randn(1, 6, 8, 8)
    keypoints = torch.rand(1, 5, 2) * 32
    missing = keypoints.clone()
    missing[0, 2] = float("nan")
    masked = head(feats, keypoints, (32, 32), mask=torch.tensor([[True, True, False, True, True]]))
    torch.testing.assert_close(head(feats, missing, (32, 32)), masked)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="kind"):
        LevelContext(8, 3, "gru")
    with pytest.raises(ValueError, match="heads"):
        LevelContext(8, 3, "transformer", hidden=10, heads=4)
    with pytest.raises(ValueError, match="permutation"):
        LevelContext(8, 3, "bilstm", order=[0, 0, 1])
    model = LevelContext(8, 3, "transformer", hidden=8, heads=2, max_landmarks=4)
    with pytest.raises(ValueError, match="max_landmarks"):
        model(torch.zeros(1, 5, 8))
    with pytest.raises(ValueError, match="features must be"):
        model(torch.zeros(1, 3, 7))
    with pytest.raises(ValueError, match="mask must be"):
        model(torch.zeros(1, 3, 8), torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="order has"):
        LevelContext(8, 3, "bilstm", order=[1, 0])(torch.zeros(1, 3, 8))
