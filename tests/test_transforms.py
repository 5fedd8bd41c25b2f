"""Tests of spinectx.data.transforms: geometry alignment, conventions, randomness."""

from __future__ import annotations

import math
import multiprocessing as mp

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from spinectx.data.transforms import (
    RandomPolynomialBiasField,
    RandomRotateShiftZoom,
    SpineTransform,
    bias_field,
    channels_last,
    resize_keypoints,
    to_tensor_sample,
)

# geometry only: every other random change switched off
GEOMETRY_ONLY = dict(intensity=0.0, bias_field_coef=0.0, jitter_mm=0.0)
# nothing random at all (p = 0 switches rotation/shift/zoom/intensity/bias field off)
NOTHING = dict(p=0.0, flip=0.0, jitter_mm=0.0)


def make_sample(image, keypoints, annotated=None, spacing=(0.5, 0.7), **extra):
    keypoints = np.asarray(keypoints, dtype=np.float32)
    k = keypoints.shape[0]
    if annotated is None:
        annotated = np.isfinite(keypoints).all(axis=1)
    sample = {
        "image": np.asarray(image, dtype=np.float32),
        "keypoints": keypoints,
        "annotated": np.asarray(annotated, dtype=bool),
        "labels": np.linspace(0, 1, k).astype(np.float32),
        "tags": np.eye(k, 4, dtype=np.float32),
        "spacing": np.asarray(spacing, dtype=np.float32),
        "study_uid": "1.2.3",
    }
    sample.update(extra)
    return sample


def paint_squares(shape, centres, values, half):
    """Squares of side 2*half+1 centred on integer pixel centres (clipped at the border)."""
    img = np.zeros(shape, dtype=np.float32)
    for (x, y), v in zip(np.asarray(centres).astype(int), values):
        img[max(y - half, 0) : y + half + 1, max(x - half, 0) : x + half + 1] = v
    return img


def paint_gaussians(shape, centres, sigma):
    """Sum of unit Gaussians at (possibly sub-pixel) centres; pixel centres at integers."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    img = np.zeros(shape, dtype=np.float64)
    for x, y in centres:
        img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return img.astype(np.float32)


def local_centroid(img, x, y, radius, threshold):
    """Intensity-weighted centroid (x, y) of pixels > threshold in a window around (x, y)."""
    x0, y0 = int(round(x)), int(round(y))
    win = img[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1]
    yy, xx = np.mgrid[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1]
    wts = np.where(win > threshold, win, 0.0)
    assert wts.sum() > 0, "no blob near the keypoint"
    return float((wts * xx).sum() / wts.sum()), float((wts * yy).sum() / wts.sum())


# --------------------------------------------------------------------------------------------
# output format
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("train", [False, True])
def test_output_keys_shapes_dtypes(train):
    rng = np.random.default_rng(0)
    kp = np.array([[10, 20], [np.nan, np.nan], [50, 60], [5, 90]], dtype=np.float32)
    annotated = np.array([True, False, True, False])
    extra = np.arange(3)
    sample = make_sample(rng.random((120, 100)), kp, annotated, extra_key=extra, slice_index=7)
    out = SpineTransform(64, train=train, seed=0)(sample)

    assert out["image"].dtype == torch.float32 and tuple(out["image"].shape) == (1, 64, 64)
    assert out["keypoints"].dtype == torch.float32 and tuple(out["keypoints"].shape) == (4, 2)
    assert out["annotated"].dtype == torch.bool and out["annotated"].tolist() == annotated.tolist()
    assert out["visible"].dtype == torch.bool and tuple(out["visible"].shape) == (4,)
    assert out["labels"].dtype == torch.float32
    assert torch.equal(out["labels"], torch.from_numpy(sample["labels"]))
    assert out["tags"].dtype == torch.float32 and torch.equal(out["tags"], torch.from_numpy(sample["tags"]))
    assert out["spacing"].dtype == torch.float32 and tuple(out["spacing"].shape) == (2,)
    assert out["study_uid"] == "1.2.3"
    assert out["extra_key"] is extra and out["slice_index"] == 7
    # the missing landmark stays NaN and is neither annotated nor visible; unannotated never visible
    assert torch.isnan(out["keypoints"][1]).all()
    assert not out["visible"][1] and not out["visible"][3]
    assert torch.isfinite(out["keypoints"][[0, 2, 3]]).all()
    # the input sample is not modified
    assert np.isnan(sample["keypoints"][1]).all() and sample["keypoints"][0, 0] == 10


def test_rectangular_size_and_channels_first():
    rng = np.random.default_rng(1)
    sample = make_sample(rng.random((3, 90, 70)), [[10, 10], [60, 80]])
    for train in (False, True):
        out = SpineTransform((48, 32), train=train, seed=1)(sample)
        assert tuple(out["image"].shape) == (3, 48, 32)
    out = SpineTransform((48, 32), train=False)(sample)
    # all channels resized the same way
    ref = SpineTransform((48, 32), train=False)(make_sample(sample["image"][1], sample["keypoints"]))
    assert torch.allclose(out["image"][1], ref["image"][0])


def test_invalid_arguments():
    with pytest.raises(ValueError):
        SpineTransform((10, 10, 10), train=False)
    with pytest.raises(ValueError):
        SpineTransform(64, train=True, p=1.5)
    with pytest.raises(ValueError):
        SpineTransform(64, train=True, scale=(1.0, 0.2))


# --------------------------------------------------------------------------------------------
# eval: deterministic resize with the pixel-centre convention
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "in_shape, size",
    [((300, 240), 100), ((80, 64), 160), ((150, 150), (120, 60)), ((64, 64), 64)],
)
def test_eval_resize_maps_pixel_centres(in_shape, size):
    h, w = in_shape
    sh, sw = (size, size) if isinstance(size, int) else size
    pts = np.array([[w * 0.25 + 0.3, h * 0.2], [w * 0.75, h * 0.5 - 0.4], [w * 0.3 + 0.5, h * 0.8 + 0.2]])
    sigma = 3.0  # smooth blobs: the sampled centroid is then exact to ~1e-3 px
    img = paint_gaussians(in_shape, pts, sigma)
    sample = make_sample(img, pts, spacing=(0.8, 0.6))
    tf = SpineTransform(size, train=False)
    out = tf(sample)
    kp = out["keypoints"].numpy()
    expected = np.stack([(pts[:, 0] + 0.5) * sw / w - 0.5, (pts[:, 1] + 0.5) * sh / h - 0.5], axis=1)
    np.testing.assert_allclose(kp, expected, atol=1e-4)
    np.testing.assert_allclose(kp, resize_keypoints(pts.astype(np.float32), in_shape, (sh, sw)), atol=1e-5)
    # the blob's centroid in the resized image sits on the mapped keypoint (the half-pixel
    # error of the "x * S / W" convention would be 0.33 px here for the shrink, 0.5 px for the
    # enlargement)
    im = out["image"][0].numpy()
    radius = int(3.5 * sigma * max(sh / h, sw / w)) + 2
    for x, y in kp:
        cx, cy = local_centroid(im, x, y, radius=radius, threshold=0.01)
        assert abs(cx - x) < 0.05 and abs(cy - y) < 0.05, (cx, cy, x, y)
    # spacing of the resized frame
    np.testing.assert_allclose(out["spacing"].numpy(), [0.8 * h / sh, 0.6 * w / sw], rtol=1e-6)
    assert out["visible"].all()
    # deterministic
    again = tf(sample)
    assert torch.equal(out["image"], again["image"]) and torch.equal(out["keypoints"], again["keypoints"])


def test_eval_output_does_not_alias_input():
    img = np.ones((32, 32), np.float32)
    out = SpineTransform(32, train=False)(make_sample(img, [[3, 4]]))
    out["image"].mul_(0)
    assert img.min() == 1.0


# --------------------------------------------------------------------------------------------
# train: geometry alignment (the key test)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("frame_scale", [1.0, 0.6, 2.2])
def test_train_geometry_keeps_image_and_keypoints_aligned(frame_scale):
    """Plateaus of distinct values at each landmark: after resize + rotate/shift/zoom + flip,
    the output pixel under keypoint k carries landmark k's value (identity and order) and the
    plateau's centroid lies on the keypoint (sub-pixel alignment). The input frame shrinks
    (x0.8: resized by the warp itself), grows (x1.5: same) or shrinks by more than 2x (x0.36:
    INTER_AREA resize first, then the warp)."""
    h, w, size = round(200 * frame_scale), round(180 * frame_scale), 160
    pts = np.array([[30, 30], [150, 40], [90, 100], [20, 185], [172, 192], [60, 150], [4, 100]], dtype=np.float32)
    pts = np.round(pts * frame_scale)
    values = [0.2, 0.35, 0.5, 0.65, 0.8, 1.0, 0.9]
    # 9x9 plateau (at x1) of value v_k (identity) with a 1-pixel peak of v_k + 0.05 at its centre (local max)
    img = paint_squares((h, w), pts, values, half=round(4 * frame_scale))
    img = img + paint_squares((h, w), pts, [0.05] * len(pts), half=0)
    sample = make_sample(img, pts, spacing=(1.0, 1.0))
    tf = SpineTransform(size, train=True, p=1.0, flip=0.5, seed=7, **GEOMETRY_ONLY)

    checked = np.zeros(len(pts), dtype=int)
    n_invisible = 0
    flipped_seen = set()
    margin, radius = 12, 10
    for _ in range(80):
        out = tf(sample)
        im = out["image"][0].numpy()
        kp = out["keypoints"].numpy()
        vis = out["visible"].numpy()
        assert np.isfinite(kp).all()
        inside = (kp[:, 0] >= 0) & (kp[:, 0] <= size - 1) & (kp[:, 1] >= 0) & (kp[:, 1] <= size - 1)
        np.testing.assert_array_equal(vis, inside)
        n_invisible += int((~vis).sum())
        # landmark 0 is left of landmark 1 in the input; a flip reverses that (zoom/rotation aside)
        flipped_seen.add(bool(kp[0, 0] > kp[1, 0]))
        for k in np.flatnonzero(vis):
            x, y = kp[k]
            if min(x, y) < margin or max(x, y) > size - 1 - margin:
                continue  # plateau may be clipped by the frame
            # identity: the pixel nearest to keypoint k shows landmark k's value (values differ by >= 0.1)
            value = im[int(round(y)), int(round(x))]
            assert values[k] - 0.01 < value < values[k] + 0.06, (k, value, values[k])
            # the local maximum is within 1.5 px, the plateau centroid within 0.5 px
            x0, y0 = int(round(x)), int(round(y))
            win = im[y0 - 3 : y0 + 4, x0 - 3 : x0 + 4]
            my, mx = np.unravel_index(np.argmax(win), win.shape)
            assert math.hypot(mx - 3 + x0 - x, my - 3 + y0 - y) <= 1.5
            cx, cy = local_centroid(im, x, y, radius, threshold=values[k] / 2)
            assert math.hypot(cx - x, cy - y) < 0.5, (k, cx, cy, x, y)
            checked[k] += 1
    assert checked.sum() >= 100 and checked[:3].min() >= 5, checked  # many checks, all of the inner landmarks
    assert n_invisible > 0  # some landmarks left the frame along the way
    assert flipped_seen == {True, False}


@pytest.mark.parametrize("in_shape, size", [((40, 30), (64, 48)), ((90, 70), (60, 50))])
def test_warp_with_output_size_and_no_motion_is_the_resize(in_shape, size):
    """Rotation, shift and zoom switched off: the warp is exactly the pixel-centre resize
    (cv2.resize's bilinear geometry, resize_keypoints for the points)."""
    import albumentations as A
    import cv2

    rng = np.random.default_rng(15)
    img = paint_gaussians(in_shape, [(10.3, 12.7), (20.0, 25.5)], sigma=3.0) + rng.random(in_shape).astype(np.float32) * 0.1
    kps = np.array([[10.3, 12.7], [20.0, 25.5], [0.0, 0.0], [in_shape[1] - 1, in_shape[0] - 1]], dtype=np.float32)
    warp = RandomRotateShiftZoom(p_rotate=0.0, p_shift=0.0, p_zoom=0.0, output_size=size)
    out = A.Compose([warp], keypoint_params=A.KeypointParams(format="xy", remove_invisible=False))(image=img, keypoints=kps)
    assert out["image"].shape == size
    np.testing.assert_allclose(out["keypoints"], resize_keypoints(kps, in_shape, size), atol=1e-4)
    ref = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    inner = (slice(2, -2), slice(2, -2))  # the border pixels differ: constant fill vs replicate
    np.testing.assert_allclose(out["image"][inner], ref[inner], atol=2e-3)


def test_keypoints_outside_the_frame_are_kept():
    # already outside in the input: kept and mapped, never visible
    pts = np.array([[-5, 10], [20, 30], [40, 70]], dtype=np.float32)
    sample = make_sample(np.zeros((50, 40)), pts)
    out = SpineTransform(80, train=False)(sample)
    kp = out["keypoints"].numpy()
    np.testing.assert_allclose(kp[0], [(-5 + 0.5) * 2 - 0.5, (10 + 0.5) * 1.6 - 0.5], atol=1e-5)
    assert out["visible"].tolist() == [False, True, False]  # y = 112.3 > 79 for the third

    # pushed out by a large shift: finite, outside, not visible, order kept
    tf = SpineTransform(64, train=True, p=1.0, rotate=0.0, shift=(0.45, 0.45), scale=(0.0, 0.0), flip=0.0,
                        intensity=0.0, bias_field_coef=0.0, jitter_mm=0.0, seed=3)
    pts = np.array([[3, 3], [60, 5], [30, 32], [5, 60]], dtype=np.float32)
    sample = make_sample(np.zeros((64, 64)), pts)
    n_out = 0
    for _ in range(40):
        out = tf(sample)
        kp = out["keypoints"].numpy()
        assert np.isfinite(kp).all()
        # a pure shift moves every landmark by the same vector: order and identity are kept
        d = kp - pts
        np.testing.assert_allclose(d, np.broadcast_to(d[0], d.shape), atol=1e-3)
        outside = (kp < 0).any(axis=1) | (kp > 63).any(axis=1)
        assert not out["visible"][outside].any()
        assert out["visible"][~outside].all()
        n_out += int(outside.sum())
    assert n_out > 0


def test_missing_landmarks_stay_nan_under_all_augmentations():
    rng = np.random.default_rng(2)
    pts = np.array([[20, 20], [np.nan, np.nan], [60, 70], [np.nan, np.nan]], dtype=np.float32)
    sample = make_sample(rng.random((96, 96)), pts)
    tf = SpineTransform(64, train=True, p=1.0, seed=5)
    for _ in range(20):
        out = tf(sample)
        kp = out["keypoints"]
        assert torch.isnan(kp[[1, 3]]).all() and torch.isfinite(kp[[0, 2]]).all()
        assert out["annotated"].tolist() == [True, False, True, False]
        assert not out["visible"][1] and not out["visible"][3]


# --------------------------------------------------------------------------------------------
# train: individual components
# --------------------------------------------------------------------------------------------
def test_flip_only_maps_x_to_w_minus_1_minus_x():
    rng = np.random.default_rng(3)
    img = rng.random((100, 80)).astype(np.float32)
    pts = np.array([[0, 0], [10.25, 50.5], [79, 99], [np.nan, np.nan]], dtype=np.float32)
    sample = make_sample(img, pts)
    size = 64
    ref = SpineTransform(size, train=False)(sample)
    out = SpineTransform(size, train=True, p=0.0, flip=1.0, jitter_mm=0.0, seed=0)(sample)
    exp = ref["keypoints"].clone()
    exp[:, 0] = size - 1 - exp[:, 0]
    torch.testing.assert_close(out["keypoints"], exp, equal_nan=True)
    assert torch.equal(out["image"], torch.flip(ref["image"], dims=[-1]))
    assert out["visible"].tolist() == ref["visible"].tolist()


def test_rotation_matrix_matches_albumentations_convention():
    # 90 degrees about the centre of a 5x5 frame permutes the pixel grid exactly
    m = RandomRotateShiftZoom.build_matrix((5, 5), 90.0, (0.0, 0.0), (1.0, 1.0))
    np.testing.assert_allclose(m @ [2, 2, 1], [2, 2, 1], atol=1e-12)
    np.testing.assert_allclose(m @ [0, 0, 1], [0, 4, 1], atol=1e-12)


def test_spacing_follows_resize_not_zoom():
    sample = make_sample(np.zeros((200, 100)), [[10, 10]], spacing=(0.5, 0.8))
    for train in (False, True):
        out = SpineTransform((50, 40), train=train, p=1.0, seed=1)(sample)
        np.testing.assert_allclose(out["spacing"].numpy(), [0.5 * 200 / 50, 0.8 * 100 / 40], rtol=1e-6)


def test_jitter_bounded_in_mm_and_only_annotated():
    pts = np.array([[30, 30], [60, 40], [45, 70], [np.nan, np.nan]], dtype=np.float32)
    annotated = np.array([True, True, False, False])
    sample = make_sample(np.zeros((120, 90)), pts, annotated, spacing=(0.5, 0.25))
    size = 60
    ref = SpineTransform(size, train=False)(sample)["keypoints"].numpy()
    # resized spacing (dy, dx) = (1.0, 0.375) mm/px → ±1.5 mm = ±1.5 px in y, ±4 px in x
    tf = SpineTransform(size, train=True, p=0.0, flip=0.0, jitter_mm=1.5, seed=11)
    moves = []
    for _ in range(200):
        kp = tf(sample)["keypoints"].numpy()
        np.testing.assert_array_equal(kp[2], ref[2])  # not annotated: not moved
        assert np.isnan(kp[3]).all()
        moves.append(kp[:2] - ref[:2])
    moves = np.abs(np.stack(moves))
    assert moves[..., 0].max() <= 4.0 + 1e-4 and moves[..., 1].max() <= 1.5 + 1e-4
    assert moves[..., 0].max() > 3.5 and moves[..., 1].max() > 1.3  # the range is used


def test_intensity_scaling_range():
    img = np.full((40, 40), 0.5, np.float32)
    tf = SpineTransform(40, train=True, p=0.0, flip=0.0, jitter_mm=0.0, seed=0)
    tf_int = SpineTransform(40, train=True, p=1.0, rotate=0.0, shift=(0, 0), scale=(0, 0), flip=0.0,
                            bias_field_coef=0.0, jitter_mm=0.0, intensity=0.3, seed=0)
    assert torch.equal(tf(make_sample(img, [[1, 1]]))["image"], torch.from_numpy(img)[None])
    # the in-place intensity/bias steps work on the pipeline's own copy, never on the input
    tf_all = SpineTransform(40, train=True, p=1.0, rotate=0.0, shift=(0, 0), scale=(0, 0), flip=0.0, seed=0)
    out = tf_all(make_sample(img, [[1, 1]]))["image"]
    assert (img == 0.5).all() and not torch.allclose(out, torch.full_like(out, 0.5))
    factors = []
    for _ in range(100):
        out = tf_int(make_sample(img, [[1, 1]]))["image"]
        assert torch.allclose(out, out.flatten()[0].expand_as(out))  # global scaling
        factors.append(float(out.flatten()[0]) / 0.5)
    assert 0.7 - 1e-5 <= min(factors) < 0.75 and 1.25 < max(factors) <= 1.3 + 1e-5


def test_probability_gates_are_independent():
    """Intensity and flip decisions must not be tied together (a Compose-wide seed would)."""
    img = np.zeros((32, 32), np.float32)
    img[:, :16] = 0.5
    tf = SpineTransform(32, train=True, p=0.5, rotate=0.0, shift=(0, 0), scale=(0, 0), bias_field_coef=0.0,
                        jitter_mm=0.0, intensity=0.3, flip=0.5, seed=123)
    combos = set()
    n_int = 0
    for _ in range(200):
        out = tf(make_sample(img, [[4, 4]]))
        flipped = bool(out["keypoints"][0, 0] > 16)
        scaled = not math.isclose(float(out["image"].max()), 0.5, rel_tol=1e-6)
        combos.add((flipped, scaled))
        n_int += scaled
    assert combos == {(False, False), (False, True), (True, False), (True, True)}
    assert 70 < n_int < 130


# --------------------------------------------------------------------------------------------
# bias field
# --------------------------------------------------------------------------------------------
def _exact_log_field(coefs, order, shape):
    h, w = shape
    u = (np.arange(w) + 0.5) / w * 2 - 1
    v = (np.arange(h) + 0.5) / h * 2 - 1
    xx, yy = np.meshgrid(u, v)
    exps = [(i, j) for i in range(order + 1) for j in range(order + 1 - i)]
    return sum(c * xx**i * yy**j for c, (i, j) in zip(coefs, exps))


def test_bias_field_positive_smooth_and_accurate():
    rng = np.random.default_rng(4)
    shape = (200, 150)
    for _ in range(20):
        coefs = rng.uniform(-0.5, 0.5, 10)
        field = bias_field(coefs, 3, shape)
        assert field.shape == shape and field.dtype == np.float32
        assert np.isfinite(field).all() and (field > 0).all()
        log_f = np.log(field)
        # |d poly / du| <= 0.5 * sum(i) = 5 per unit of u, i.e. 10 / W per pixel
        assert np.abs(np.diff(log_f, axis=1)).max() <= 10.0 / shape[1] * 1.05
        assert np.abs(np.diff(log_f, axis=0)).max() <= 10.0 / shape[0] * 1.05
        # coarse-grid + bilinear upsampling stays close to the exact polynomial
        np.testing.assert_allclose(log_f, _exact_log_field(coefs, 3, shape), atol=0.015)
    # non-trivial: a random field is not constant
    assert np.log(field).std() > 0.01


def test_bias_field_transform_never_negative_or_nan():
    rng = np.random.default_rng(5)
    img = rng.random((64, 64)).astype(np.float32) * 1.1
    img[:10] = 0.0
    t = RandomPolynomialBiasField(order=3, coefficient=0.5, p=1.0)
    t.set_random_seed(0)
    spreads = []
    img_before = img.copy()
    for _ in range(30):
        out = t(image=img)["image"]
        np.testing.assert_array_equal(img, img_before)  # inplace=False by default
        assert out.dtype == np.float32 and out.shape == img.shape
        assert np.isfinite(out).all() and (out >= 0).all()
        assert (out[:10] == 0).all()
        # exactly image x smooth field, in float: nothing clipped or wrapped around
        coefs = t.params["coefficients"]
        assert coefs.shape == (10,) and np.abs(coefs).max() <= 0.5
        np.testing.assert_allclose(out, img * bias_field(coefs, 3, img.shape), rtol=1e-6)
        spreads.append(float(np.log(bias_field(coefs, 3, img.shape)).std()))
    assert max(spreads) > 0.05  # the field does vary across the frame
    # a bright frame may end up above 1: kept as is
    bright = t(image=np.full((64, 64), 1.0, np.float32))["image"]
    np.testing.assert_allclose(bright, bias_field(t.params["coefficients"], 3, (64, 64)), rtol=1e-6)


@pytest.mark.parametrize("channels", [1, 3, 5])
@pytest.mark.parametrize("inplace", [False, True])
def test_bias_field_multiplies_every_channel_by_the_same_field(channels, inplace):
    rng = np.random.default_rng(12)
    img = rng.random((40, 30, channels)).astype(np.float32)
    before = img.copy()
    t = RandomPolynomialBiasField(order=3, coefficient=0.5, inplace=inplace, p=1.0)
    t.set_random_seed(3)
    out = t(image=img)["image"]
    field = bias_field(t.params["coefficients"], 3, (40, 30))
    assert out.shape == (40, 30, channels) and out.dtype == np.float32
    np.testing.assert_allclose(out, before * field[:, :, None], rtol=1e-6)
    if not inplace:
        np.testing.assert_array_equal(img, before)


def test_channels_last_round_trip_and_errors():
    rng = np.random.default_rng(13)
    for c in (1, 3, 7):
        chw = rng.random((c, 9, 11)).astype(np.float32)
        hwc = channels_last(chw)
        assert hwc.shape == (9, 11, c) and hwc.flags.c_contiguous and hwc.dtype == np.float32
        np.testing.assert_array_equal(np.moveaxis(hwc, -1, 0), chw)
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        channels_last(np.zeros((4, 4), np.float32))


def test_slices_of_a_stack_get_the_same_augmentation():
    """2.5-D: every channel gets the draws a 1-channel sample with the same seed gets."""
    rng = np.random.default_rng(14)
    stack = rng.random((3, 60, 50)).astype(np.float32)
    kps = [[10.0, 12.0], [30.0, 40.0]]
    for seed in range(4):
        out = SpineTransform((48, 40), train=True, seed=seed)(make_sample(stack, kps))
        for c in range(3):
            ref = SpineTransform((48, 40), train=True, seed=seed)(make_sample(stack[c], kps))
            torch.testing.assert_close(out["image"][c], ref["image"][0], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(out["keypoints"], ref["keypoints"])


# --------------------------------------------------------------------------------------------
# randomness
# --------------------------------------------------------------------------------------------
def _train_outputs(tf, sample, n):
    return [tf(sample) for _ in range(n)]


def test_seed_reproducibility():
    rng = np.random.default_rng(6)
    sample = make_sample(rng.random((80, 70)), [[10, 12], [50, 60], [np.nan, np.nan]])
    a = _train_outputs(SpineTransform(48, train=True, seed=42), sample, 4)
    b = _train_outputs(SpineTransform(48, train=True, seed=42), sample, 4)
    c = _train_outputs(SpineTransform(48, train=True, seed=43), sample, 4)
    for oa, ob in zip(a, b):
        assert torch.equal(oa["image"], ob["image"])
        torch.testing.assert_close(oa["keypoints"], ob["keypoints"], equal_nan=True, rtol=0, atol=0)
    assert any(not torch.equal(oa["image"], oc["image"]) for oa, oc in zip(a, c))
    # successive calls differ, and reseed restarts the stream
    assert not torch.equal(a[0]["image"], a[1]["image"])
    tf = SpineTransform(48, train=True, seed=42)
    first = tf(sample)
    tf(sample)
    tf.reseed(42)
    assert torch.equal(tf(sample)["image"], first["image"])


class _RepeatDataset(Dataset):
    def __init__(self, sample, transform, n):
        self.sample, self.transform, self.n = sample, transform, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        out = self.transform(self.sample)
        return out["keypoints"]


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs the fork start method")
@pytest.mark.parametrize("seed", [None, 9])
def test_dataloader_workers_get_different_streams(seed):
    sample = make_sample(np.zeros((40, 40)), [[10, 10], [30, 25]])
    tf = SpineTransform(40, train=True, p=1.0, seed=seed)
    tf(sample)  # used once in the main process before the workers start
    torch.manual_seed(0)
    loader = DataLoader(_RepeatDataset(sample, tf, 4), batch_size=1, num_workers=2,
                        multiprocessing_context="fork")
    run1 = [b[0] for b in loader]
    # worker 0 serves items 0 and 2, worker 1 items 1 and 3
    assert not torch.allclose(run1[0], run1[1]) and not torch.allclose(run1[2], run1[3])
    # a new epoch (new workers) draws new augmentations
    run2 = [b[0] for b in loader]
    assert not torch.allclose(run1[0], run2[0])
    # reproducible under a seeded torch
    torch.manual_seed(0)
    run3 = [b[0] for b in DataLoader(_RepeatDataset(sample, tf, 4), batch_size=1, num_workers=2,
                                     multiprocessing_context="fork")]
    for x, y in zip(run1, run3):
        assert torch.equal(x, y)


def test_to_tensor_sample_standalone():
    sample = {
        "image": np.zeros((10, 12), np.float32),
        "keypoints": np.array([[0, 0], [11, 9], [11.5, 3], [np.nan, np.nan]], np.float32),
        "spacing": [1.0, 2.0],
        "study_uid": "u",
    }
    out = to_tensor_sample(sample)
    assert tuple(out["image"].shape) == (1, 10, 12)
    assert out["annotated"].tolist() == [True, True, True, False]
    assert out["visible"].tolist() == [True, True, False, False]
    assert out["spacing"].dtype == torch.float32 and out["study_uid"] == "u"
