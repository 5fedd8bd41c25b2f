"""Sequence context over the levels (Qin et al. 2020, SPEC §8): classify each landmark from a
feature vector read at its position, after a Bi-LSTM or a small transformer has let it see the
other levels.

Pieces:

* :func:`sample_landmark_features` — bilinear read-out of a feature map at the landmark positions
  (input pixels) → one feature vector per landmark.
* :func:`spinal_order` — landmark names (``L1``, ``T12-L1``, ``L4/L5``, …) → their indices sorted
  top to bottom along the spine. The landmark set's order is the output-channel order and is
  *not* anatomical for TianChi (its five vertebrae come before its six discs), so the sequence
  models take this order explicitly.
* :class:`LevelContext` — per-landmark vectors [B, K, C] → class logits [B, K, num_classes], with
  ``kind`` = ``none`` (no context), ``bilstm`` or ``transformer``.
* :class:`ContextHead` — both in one module.

Logits come back in the landmark set's order with ``num_classes`` = the class head's ``n_logits``
(:class:`~spinectx.codecs.classes.ClassCodec`), i.e. the layout of
:meth:`~spinectx.codecs.base.KeypointCodec.class_logits_at`, so the existing class loss and
decoder can read them unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

CONTEXT_KINDS = ("none", "bilstm", "transformer")

__all__ = ["CONTEXT_KINDS", "ContextHead", "LevelContext", "sample_landmark_features", "spinal_order"]


def sample_landmark_features(features: torch.Tensor, keypoints: torch.Tensor,
                             input_size: tuple[int, int]) -> torch.Tensor:
    """Read ``features`` at each landmark by bilinear interpolation.

    Convention (the suite's, :mod:`spinectx.codecs.base`): keypoints are (x, y) = (column, row) in
    *input pixels* with pixel centres at integer coordinates; a feature cell ``i`` at stride
    ``s = W / w`` (``H / h`` for y) covers input pixels [s·i, s·i + s), so its centre is input
    pixel s·i + (s − 1)/2 and input pixel ``x`` sits at feature coordinate
    ``x_feat = (x + 0.5) / s − 0.5`` (e.g. stride 4: x = 4i + 1.5 → x_feat = i). Points outside the
    grid read its border cells (as the codecs clamp their peak cell to the grid).

    Args:
        features: [B, C, h, w] feature map (any float dtype).
        keypoints: [B, K, 2] (x, y) in input pixels; a row with a non-finite coordinate (a missing
            landmark) yields a zero vector.
        input_size: (H, W) of the network input in pixels, the frame the keypoints refer to.

    Returns:
        [B, K, C] in the dtype of ``features``. Gradients flow to ``features`` (and to
        ``keypoints`` when they require grad).

    Raises:
        ValueError: tensors of the wrong rank/shape or a non-positive input size.
    """
    if features.dim() != 4:
        raise ValueError(f"features must be [B, C, h, w], got shape {tuple(features.shape)}")
    if keypoints.dim() != 3 or keypoints.shape[-1] != 2 or keypoints.shape[0] != features.shape[0]:
        raise ValueError(f"keypoints must be [B, K, 2] (x, y) with B = {features.shape[0]} as the features, "
                         f"got shape {tuple(keypoints.shape)}")
    height, width = (int(v) for v in input_size)
    if height <= 0 or width <= 0:
        raise ValueError(f"input_size must be positive (H, W) pixels, got {tuple(input_size)}")
    present = torch.isfinite(keypoints).all(-1)  # [B, K]
    points = torch.where(present[..., None], keypoints, torch.zeros_like(keypoints)).float()
    size = torch.tensor([width, height], dtype=points.dtype, device=points.device)
    # grid_sample (align_corners=False) reads feature coordinate u at g = (2u + 1)/w − 1; with
    # u = (x + 0.5)/s − 0.5 and s = W/w this is g = 2(x + 0.5)/W − 1
    grid = 2.0 * (points + 0.5) / size - 1.0  # [B, K, 2] (x, y) normalised
    sampled = F.grid_sample(features, grid[:, None].to(features.dtype), mode="bilinear",
                            padding_mode="border", align_corners=False)  # [B, C, 1, K]
    sampled = sampled[:, :, 0].transpose(1, 2)  # [B, K, C]
    return torch.where(present[..., None], sampled, torch.zeros_like(sampled))


# first vertebra of each region counted down the spine: C1 = 1, T1 = 8, L1 = 20, S1 = 25
_REGION_START = {"C": 1, "T": 8, "L": 20, "S": 25}
_VERTEBRA = re.compile(r"^([CTLS])(\d+)$", re.IGNORECASE)
_DISC = re.compile(r"^([CTLS]\d+)\s*[-/_]\s*([CTLS]\d+)$", re.IGNORECASE)


def _vertebra_number(name: str) -> int | None:
    match = _VERTEBRA.match(name)
    return None if match is None else _REGION_START[match.group(1).upper()] + int(match.group(2)) - 1


def spinal_order(names: Sequence[str]) -> list[int]:
    """Indices of ``names`` sorted top (cranial) to bottom (caudal) along the spine.

    A vertebra ``L3`` ranks at 2·n(L3), a disc ``L3-L4`` / ``L3/L4`` just below its upper
    vertebra (2·n(L3) + 1), where n counts vertebrae from C1. TianChi's landmark set
    ``[L1..L5, T12-L1..L5-S1]`` gives ``[5, 0, 6, 1, 7, 2, 8, 3, 9, 4, 10]``; RSNA's disc levels
    ``[L1/L2..L5/S1]`` are already in order. Ties keep the given order.

    Raises:
        ValueError: a name that is neither a vertebra (``L3``) nor a disc between two vertebrae
            (``L3-L4``, ``L3/L4``), e.g. RSNA's ``left``/``right`` (which have no vertical order:
            use the set's own order there).
    """
    ranks, unknown = [], []
    for name in names:
        text = str(name).strip()
        number = _vertebra_number(text)
        if number is not None:
            ranks.append(2 * number)
            continue
        disc = _DISC.match(text)
        upper = None if disc is None else _vertebra_number(disc.group(1))
        if upper is None:
            unknown.append(name)
            ranks.append(0)
        else:
            ranks.append(2 * upper + 1)
    if unknown:
        raise ValueError(f"spinal_order: cannot place {unknown} along the spine (expected vertebrae like 'L3' or "
                         f"discs like 'L3-L4' / 'L3/L4'); give the order explicitly")
    return sorted(range(len(ranks)), key=lambda k: ranks[k])


def context_settings(cfg: Mapping | None) -> tuple[str, dict]:
    """``model.context`` (``{kind, hidden, layers, heads, dropout}``; None = ``none``) →
    ``(kind, the other settings)``.

    Raises:
        ValueError: an unknown kind or key.
    """
    cfg = dict(cfg or {})
    kind = cfg.pop("kind", "none")
    if kind not in CONTEXT_KINDS:
        raise ValueError(f"model.context.kind must be one of {CONTEXT_KINDS}, got {kind!r}")
    unknown = set(cfg) - {"hidden", "layers", "heads", "dropout"}
    if unknown:
        raise ValueError(f"model.context: unknown key(s) {sorted(unknown)}; expected kind, hidden, layers, heads, dropout")
    return kind, cfg


def landmark_order(names: Sequence[str]) -> list[int] | None:
    """:func:`spinal_order` of ``names``, or None (the set's own order) for sets without a vertical
    order, e.g. RSNA's left/right recesses."""
    try:
        return spinal_order(names)
    except ValueError:
        return None


class LevelContext(nn.Module):
    """Per-landmark feature vectors → class logits, with or without context over the levels.

    Every kind first maps each vector through Linear(in_channels → hidden) → GELU → dropout (no
    normalisation, which would erase the vector's overall magnitude and offset), then:

    * ``none``: adds a learned embedding of the landmark's position in the sequence (so one shared
      classifier still knows which landmark, hence which class vocabulary, it reads) and applies a
      per-landmark linear classifier; no landmark sees another.
    * ``bilstm``: a bidirectional LSTM (``hidden`` units per direction, ``layers`` layers) over the
      sequence, then a per-landmark linear on the concatenated directions (Qin et al. 2020). The
      order is given by the recurrence alone (no position embedding).
    * ``transformer``: adds a learned position embedding, then an ``nn.TransformerEncoder``
      (``layers`` pre-norm layers, ``heads`` heads, feed-forward 2·hidden), then a per-landmark
      linear.

    The sequence is the landmarks in ``order`` (indices into the landmark set, top to bottom along
    the spine; see :func:`spinal_order`); None = the set's own order. Logits are returned in the
    landmark set's order.

    Missing landmarks (``mask`` False) are zeroed before the projection and after it (the Bi-LSTM
    sees a zero input there), and are excluded as attention keys (``src_key_padding_mask``) in the
    transformer, so neither their value (even NaN) nor their presence pattern beyond "missing"
    reaches the others. Their own logits are still computed (finite, meaningless): the loss must
    skip them, as it skips unlabelled landmarks. A sample with every landmark masked attends over
    all (zeroed) positions instead of producing NaN.

    Args:
        in_channels: C, the length of each landmark's feature vector.
        num_classes: logits per landmark (the class head's ``n_logits``: 1 binary, 5 TianChi
            multiclass, 3 RSNA).
        kind: ``none``, ``bilstm`` or ``transformer``.
        hidden: width of the projected vectors (LSTM units per direction; transformer d_model).
        layers: LSTM / transformer layers.
        heads: attention heads (transformer; must divide ``hidden``).
        dropout: dropout after the projection and inside the LSTM (between layers) / transformer.
        max_landmarks: size of the position embedding table (sequences may be shorter).
        order: landmark indices top to bottom (a permutation of 0..K−1), or None.

    Raises:
        ValueError: an unknown kind, non-positive sizes, ``heads`` not dividing ``hidden``, or an
            ``order`` that is not a permutation.
    """

    def __init__(self, in_channels: int, num_classes: int, kind: str = "none", hidden: int = 128, layers: int = 1,
                 heads: int = 4, dropout: float = 0.1, max_landmarks: int = 32, order: Sequence[int] | None = None):
        super().__init__()
        if kind not in CONTEXT_KINDS:
            raise ValueError(f"context kind must be one of {CONTEXT_KINDS}, got {kind!r}")
        for key, value in (("in_channels", in_channels), ("num_classes", num_classes), ("hidden", hidden),
                           ("layers", layers), ("heads", heads), ("max_landmarks", max_landmarks)):
            if int(value) <= 0:
                raise ValueError(f"LevelContext: {key} must be positive, got {value}")
        if kind == "transformer" and hidden % heads:
            raise ValueError(f"LevelContext: heads ({heads}) must divide hidden ({hidden})")
        self.kind = kind
        self.in_channels, self.num_classes = int(in_channels), int(num_classes)
        self.max_landmarks = int(max_landmarks)
        if order is not None:
            order = [int(k) for k in order]
            if sorted(order) != list(range(len(order))):
                raise ValueError(f"LevelContext: order must be a permutation of 0..K-1, got {order}")
            self.register_buffer("order", torch.tensor(order, dtype=torch.long), persistent=False)
            self.register_buffer("inverse", torch.argsort(self.order), persistent=False)
        else:
            self.order = self.inverse = None
        self.project = nn.Sequential(nn.Linear(in_channels, hidden), nn.GELU(), nn.Dropout(dropout))
        self.position = None
        if kind in ("none", "transformer"):
            self.position = nn.Embedding(max_landmarks, hidden)
            nn.init.normal_(self.position.weight, std=0.02)
        if kind == "bilstm":
            self.lstm = nn.LSTM(hidden, hidden, num_layers=layers, batch_first=True, bidirectional=True,
                                dropout=dropout if layers > 1 else 0.0)
            self.classifier = nn.Linear(2 * hidden, num_classes)
        elif kind == "transformer":
            layer = nn.TransformerEncoderLayer(hidden, heads, dim_feedforward=2 * hidden, dropout=dropout,
                                               activation="gelu", batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(hidden), enable_nested_tensor=False)
            self.classifier = nn.Linear(hidden, num_classes)
        else:
            self.classifier = nn.Linear(hidden, num_classes)

    def extra_repr(self) -> str:
        order = None if self.order is None else self.order.tolist()
        return f"kind={self.kind!r}, order={order}"

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """features [B, K, C] (landmark-set order), mask [B, K] bool (True = landmark present) →
        logits [B, K, num_classes] (landmark-set order, float dtype of the computation).

        Raises:
            ValueError: wrong shapes, K ≠ len(order), or K > max_landmarks for the kinds with a
                position embedding.
        """
        if features.dim() != 3 or features.shape[-1] != self.in_channels:
            raise ValueError(f"features must be [B, K, {self.in_channels}], got shape {tuple(features.shape)}")
        b, k, _ = features.shape
        if mask is None:
            mask = torch.ones(b, k, dtype=torch.bool, device=features.device)
        elif tuple(mask.shape) != (b, k):
            raise ValueError(f"mask must be [B, K] = [{b}, {k}], got shape {tuple(mask.shape)}")
        mask = mask.bool()
        if self.order is not None:
            if len(self.order) != k:
                raise ValueError(f"LevelContext: order has {len(self.order)} landmarks, the features {k}")
            features, mask = features[:, self.order], mask[:, self.order]
        if self.position is not None and k > self.max_landmarks:
            raise ValueError(f"LevelContext: {k} landmarks exceed max_landmarks={self.max_landmarks}")

        present = mask[..., None]
        x = self.project(torch.where(present, features, torch.zeros_like(features)))
        x = torch.where(present, x, torch.zeros_like(x))  # [B, K, hidden], zero at missing landmarks
        if self.position is not None:
            x = x + self.position.weight[:k]
        if self.kind == "bilstm":
            x, _ = self.lstm(x)  # [B, K, 2·hidden]: forward direction first, then backward
        elif self.kind == "transformer":
            padding = ~mask
            padding = padding & ~padding.all(1, keepdim=True)  # no sample may hide every key
            x = self.encoder(x, src_key_padding_mask=padding)
        logits = self.classifier(x)
        return logits if self.inverse is None else logits[:, self.inverse]


class ContextHead(nn.Module):
    """:func:`sample_landmark_features` followed by :class:`LevelContext`.

    Args:
        feature_channels: C of the feature map it reads.
        num_classes, kind, **context: as :class:`LevelContext` (``hidden``, ``layers``, ``heads``,
            ``dropout``, ``max_landmarks``, ``order``).
    """

    def __init__(self, feature_channels: int, num_classes: int, kind: str = "none", **context):
        super().__init__()
        self.context = LevelContext(feature_channels, num_classes, kind, **context)

    def forward(self, features: torch.Tensor, keypoints: torch.Tensor, input_size: tuple[int, int],
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """features [B, C, h, w]; keypoints [B, K, 2] (x, y) input pixels (true positions in
        training, decoded ones at inference); input_size (H, W) pixels; mask [B, K] bool or None →
        logits [B, K, num_classes] in the landmark set's order.

        A landmark counts as present where ``mask`` (default all True) holds *and* its keypoint is
        finite; a missing one reads a zero vector and is masked in the context.

        Raises:
            ValueError: as :func:`sample_landmark_features` and :meth:`LevelContext.forward`.
        """
        present = torch.isfinite(keypoints).all(-1)
        if mask is not None:
            if tuple(mask.shape) != tuple(present.shape):
                raise ValueError(f"mask must be [B, K] = {list(present.shape)}, got shape {tuple(mask.shape)}")
            present = present & mask.bool()
        return self.context(sample_landmark_features(features, keypoints, input_size), present)
