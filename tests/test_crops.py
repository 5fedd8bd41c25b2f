"""Crops centred on points: exact copies, zero padding at borders, mm sizes on anisotropic spacing, batching."""

import pytest
import torch
import torch.nn.functional as F

from spinectx.data.crops import crop_around, crop_batch


def _image(c=2, h=40, w=50, seed=0):
    return torch.rand(c, h, w, generator=torch.Generator().manual_seed(seed)) * 255


def _ramps(h=80, w=80):
    """Channel 0 = row index y, channel 1 = column index x (bilinear sampling reproduces them exactly)."""
    rows = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
    cols = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w)
    return torch.stack([rows, cols])


def test_integer_centre_with_size_equal_to_output_is_an_exact_copy():
    img = _image()
    crop = crop_around(img, (20, 18), size_px=32, out_size=32)
    assert crop.shape == (2, 32, 32)
    assert torch.equal(crop, img[:, 18 - 16:18 + 16, 20 - 16:20 + 16])  # the seed's slice; point at pixel (16, 16)
    odd = crop_around(img[0], (25, 20), size_px=5, out_size=5)  # 2-D image → [1, out, out]; odd size is centred
    assert torch.equal(odd, img[:1, 18:23, 23:28])


def test_point_near_the_border_gives_zeros_outside_the_image():
    img = _image()
    crop = crop_around(img, (3, 2), size_px=32)  # covers rows −14..17, columns −13..18
    assert torch.equal(crop[:, :14], torch.zeros(2, 14, 32))
    assert torch.equal(crop[:, :, :13], torch.zeros(2, 32, 13))
    assert torch.equal(crop[:, 14:, 13:], img[:, 0:18, 0:19])
    corner = crop_around(img, (49, 39), size_px=32)  # bottom-right pixel at crop (16, 16)
    assert torch.equal(corner[:, :17, :17], img[:, 23:40, 33:50])
    assert corner[:, 17:].abs().sum() == 0 and corner[:, :, 17:].abs().sum() == 0


def test_point_over_the_border_interpolates_against_zero_and_far_outside_is_blank():
    img = _image()
    half_out = crop_around(img, (-0.5, 20), size_px=32)  # half a pixel left of column 0
    torch.testing.assert_close(half_out[:, :, 16], 0.5 * img[:, 4:36, 0])
    assert torch.equal(half_out[:, :, :16], torch.zeros(2, 32, 16))
    assert crop_around(img, (-40, 100), size_px=32).abs().sum() == 0


def test_mm_crop_on_anisotropic_spacing_covers_twice_as_many_rows_as_columns():
    img = _ramps()
    crop = crop_around(img, (40, 40), size_mm=16.0, spacing=(0.5, 1.0), out_size=32)  # 32 rows × 16 columns
    i = torch.arange(32, dtype=torch.float32)
    torch.testing.assert_close(crop[0], (40 + (i - 16) * 1.0)[:, None].expand(32, 32))  # rows 24..55, step 1
    torch.testing.assert_close(crop[1], (40 + (i - 16) * 0.5)[None, :].expand(32, 32))  # columns 32..47.5, step ½
    row_extent = crop[0].max() - crop[0].min()
    col_extent = crop[1].max() - crop[1].min()
    assert row_extent == pytest.approx(2 * col_extent)
    torch.testing.assert_close(crop, crop_around(img, (40, 40), size_px=(32, 16), out_size=32))
    # rectangular mm window: 20 mm tall, 10 mm wide on isotropic 0.5 mm → 40 × 20 px
    tall = crop_around(img, (40, 40), size_mm=(20.0, 10.0), spacing=(0.5, 0.5), out_size=8)
    torch.testing.assert_close(tall[0, :, 0], 40 + (torch.arange(8.0) - 4) * 5.0)
    torch.testing.assert_close(tall[1, 0], 40 + (torch.arange(8.0) - 4) * 2.5)


def test_batch_equals_single_crops():
    images = torch.stack([_image(3, 40, 50, seed=1), _image(3, 40, 50, seed=2)])
    centers = torch.tensor([[[10.3, 5.7], [0.0, 0.0], [49.9, 39.2]], [[25.0, 20.0], [-3.2, 41.0], [30.5, 12.25]]])
    spacing = torch.tensor([[0.5, 1.0], [0.8, 0.8]])
    out = crop_batch(images, centers, size_mm=12.0, spacing=spacing, out_size=16)
    assert out.shape == (2, 3, 3, 16, 16)
    for b in range(2):
        for k in range(3):
            single = crop_around(images[b], centers[b, k], size_mm=12.0, spacing=tuple(spacing[b].tolist()),
                                 out_size=16)
            assert torch.equal(out[b, k], single)


def test_agrees_with_grid_sample_between_pixels():
    img = _image(2, 40, 50, seed=3)
    center, size, out = (17.3, 22.6), 24.0, 16
    crop = crop_around(img, center, size_px=size, out_size=out)
    pos = torch.arange(out, dtype=torch.float64) - out // 2
    xs, ys = center[0] + pos * size / out, center[1] + pos * size / out
    gx, gy = (2 * xs + 1) / 50 - 1, (2 * ys + 1) / 40 - 1  # pixel centres at integers ↔ align_corners=False
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)[None].float()
    ref = F.grid_sample(img[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    torch.testing.assert_close(crop, ref, atol=0.02, rtol=0)


def test_integer_images_become_float():
    img = torch.arange(64, dtype=torch.uint8).reshape(8, 8)
    crop = crop_around(img, (4, 4), size_px=4, out_size=4)
    assert crop.dtype == torch.float32 and torch.equal(crop[0], img[2:6, 2:6].float())


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"size_px": 32, "size_mm": 16.0, "spacing": (1.0, 1.0)}, "exactly one"),
    ({}, "exactly one"),
    ({"size_mm": 16.0}, "spacing"),
    ({"size_mm": 16.0, "spacing": (0.0, 1.0)}, "spacing must be finite and > 0"),
    ({"size_px": -4}, "size_px must be finite and > 0"),
    ({"size_px": 32, "out_size": 0}, "out_size"),
])
def test_bad_sizes_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        crop_around(_image(), (10, 10), **kwargs)


def test_bad_centres_and_images_raise():
    with pytest.raises(ValueError, match="finite"):
        crop_around(_image(), (float("nan"), 10), size_px=32)
    with pytest.raises(ValueError, match="finite"):
        crop_batch(_image()[None], torch.tensor([[[1.0, float("inf")]]]), size_px=32)
    with pytest.raises(ValueError, match=r"\(x, y\)"):
        crop_around(_image(), (1.0, 2.0, 3.0), size_px=32)
    with pytest.raises(ValueError, match=r"\[C, H, W\]"):
        crop_around(torch.zeros(1, 2, 8, 8), (1, 1), size_px=4)
