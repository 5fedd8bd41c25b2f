"""What every keypoint codec shares: the grid convention, the output layout and the decoded result.

Conventions (used across spinectx):
- keypoints are (x, y) = (column, row) in *input pixels*, pixel centres at integer coordinates;
- cell (i, j) of a stride-``s`` output grid covers input pixels [j·s, (j+1)·s) × [i·s, (i+1)·s),
  so its centre is at ``(j·s + (s−1)/2, i·s + (s−1)/2)``; the point at input pixel ``x`` sits at
  output coordinate ``u = (x − (s−1)/2) / s`` (in cells);
- a network output is [B, C·K, h, w]: ``C = channels_per_landmark`` blocks of K channels each
  (channel ``b·K + k`` = block ``b`` of landmark ``k``). The first ``loc_blocks`` blocks are the
  codec's localisation maps (the **first** block always the heatmap or heatmap logits); the **last**
  ``n_class_logits`` blocks are the class logits, logit ``j`` of every landmark in class block ``j``
  (:class:`~spinectx.codecs.classes.ClassCodec`: 1 block for the binary head, e.g. 5 for TianChi's
  multiclass head). So ``C = loc_blocks + n_class_logits``, and models (e.g. SCN's product of
  heatmaps, which touches the first block only) and the shared classification loss do not need to
  know which codec or class head they serve.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spinectx.codecs.classes import ClassCodec


@dataclass
class Decoded:
    """Decoded predictions: ``keypoints`` [B, K, 2] (x, y) input pixels, ``score`` [B, K]
    confidence of the location (codec-specific, higher is surer), ``prob`` [B, K] P(abnormal)
    and ``class_prob`` [B, K, C] class probabilities in each group's vocabulary order (C =
    ``landmarks.max_classes``, padding 0; None for the binary head), both from the class logits
    read at the decoded cell (:class:`~spinectx.codecs.classes.ClassCodec`)."""

    keypoints: torch.Tensor
    score: torch.Tensor
    prob: torch.Tensor
    class_prob: torch.Tensor | None = None


class KeypointCodec:
    """Base class: keypoints ⇄ targets on a stride-``stride`` grid.

    Subclasses set ``loc_blocks`` (localisation blocks per landmark) and implement ``encode``
    (keypoints [B, K, 2] input px, visible [B, K], image (H, W) → a targets object with at least
    ``valid`` [B, K] bool and ``peak_index`` [B, K] flat index of the cell holding the point),
    ``decode`` (output → :class:`Decoded`) and ``targets_as_output`` (targets → an output that
    decodes back to them). The model sets ``stride`` and ``classes``; configs do not.

    Args:
        stride: input pixels per output cell.
        classes: the class head (:class:`~spinectx.codecs.classes.ClassCodec`); default the
            binary head (one class logit per landmark).

    ``channels_per_landmark`` = ``loc_blocks`` + ``classes.n_logits`` (an instance attribute; the
    class attribute is the binary layout's count).
    """

    loc_blocks: int = 1
    channels_per_landmark: int = 2

    def __init__(self, stride: int = 4, classes: ClassCodec | None = None):
        if int(stride) <= 0:
            raise ValueError(f"stride must be positive, got {stride}")
        self.stride = int(stride)
        self.classes = ClassCodec(mode="binary") if classes is None else classes
        self.channels_per_landmark = self.loc_blocks + self.classes.n_logits

    @classmethod
    def channels_for(cls, classes: ClassCodec) -> int:
        """Output blocks per landmark of this codec with the class head ``classes``."""
        return cls.loc_blocks + classes.n_logits

    def grid_size(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """Output grid (h, w) for an input of ``image_hw`` pixels; the size must divide."""
        h, w = image_hw
        if h % self.stride or w % self.stride:
            raise ValueError(f"image size {h}×{w} is not a multiple of the stride {self.stride}")
        return h // self.stride, w // self.stride

    def cell_centres(self, n: int, device=None) -> torch.Tensor:
        """Input-pixel coordinate of the centres of ``n`` cells along one axis: [n]."""
        return torch.arange(n, device=device, dtype=torch.float32) * self.stride + (self.stride - 1) / 2

    def to_cells(self, keypoints: torch.Tensor) -> torch.Tensor:
        """Input pixels → output-grid coordinates (cells), same shape."""
        return (keypoints - (self.stride - 1) / 2) / self.stride

    def to_pixels(self, cells: torch.Tensor) -> torch.Tensor:
        """Output-grid coordinates (cells) → input pixels, same shape."""
        return cells * self.stride + (self.stride - 1) / 2

    def valid_points(self, keypoints: torch.Tensor, visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(valid [B, K] bool, keypoints with invalid entries zeroed [B, K, 2] float32)."""
        valid = visible.bool() & torch.isfinite(keypoints).all(-1)
        pts = torch.where(valid[..., None], keypoints.float(), torch.zeros_like(keypoints, dtype=torch.float32))
        return valid, pts

    def peak_index(self, pts: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
        """Flat index [B, K] of the grid cell containing each point, i.e. whose centre is nearest
        (clamped to the grid). Pixel ``x`` spans [x − ½, x + ½), so cell ``j`` spans
        [j·s − ½, (j+1)·s − ½) in input-pixel coordinates."""
        h, w = grid_hw
        row = torch.floor((pts[..., 1] + 0.5) / self.stride).clamp(0, h - 1).long()
        col = torch.floor((pts[..., 0] + 0.5) / self.stride).clamp(0, w - 1).long()
        return row * w + col

    def split(self, output: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """[B, C·K, h, w] → C tensors [B, K, h, w] in layout order."""
        if output.shape[1] % self.channels_per_landmark:
            raise ValueError(
                f"{type(self).__name__}: output has {output.shape[1]} channels, "
                f"not a multiple of {self.channels_per_landmark}"
            )
        return tuple(output.chunk(self.channels_per_landmark, dim=1))

    @staticmethod
    def gather(maps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Value of maps [B, K, h, w] at flat cell index [B, K] → [B, K]."""
        return maps.flatten(2).gather(-1, index[..., None])[..., 0]

    def class_logit(self, output: torch.Tensor) -> torch.Tensor:
        """The last class-logit block [B, K, h, w] (the only one of the binary head)."""
        return self.split(output)[-1]

    def class_maps(self, output: torch.Tensor) -> torch.Tensor:
        """The class-logit blocks as [B, K, n_logits, h, w] (logit ``j`` of landmark ``k`` at
        ``[:, k, j]``)."""
        return torch.stack(self.split(output)[self.loc_blocks:], dim=2)

    def class_logits_at(self, output: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Class logits [B, K, n_logits] (float32) read at flat cell index [B, K] of each landmark."""
        maps = self.class_maps(output).float().flatten(3)  # [B, K, n, h·w]
        return maps.gather(-1, index[..., None, None].expand(-1, -1, maps.shape[2], 1))[..., 0]

    def decode_classes(self, output: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(P(abnormal) [B, K], class_prob [B, K, C] or None) from the class logits at cell ``index`` [B, K]."""
        return self.classes.decode(self.class_logits_at(output, index))

    def class_block(self, targets_map: torch.Tensor, class_logit: torch.Tensor | None) -> torch.Tensor:
        """The class blocks [B, n_logits·K, h, w] of a reference output: ``class_logit`` when
        given (it must have n_logits·K channels), else zeros shaped like ``targets_map`` [B, K, h, w]
        repeated per logit."""
        n = self.classes.n_logits
        if class_logit is None:
            return torch.zeros_like(targets_map).repeat(1, n, 1, 1)
        if class_logit.shape[1] != n * targets_map.shape[1]:
            raise ValueError(f"class_logit has {class_logit.shape[1]} channels; the {self.classes.mode} head needs "
                             f"{n}·K = {n * targets_map.shape[1]}")
        return class_logit

    def encode(self, keypoints: torch.Tensor, visible: torch.Tensor, image_hw: tuple[int, int]):
        raise NotImplementedError

    def decode(self, output: torch.Tensor) -> Decoded:
        raise NotImplementedError

    def targets_as_output(self, targets, class_logit: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError
