"""Torch dataset over study records: loads the annotated frame (or a neighbour), builds the
sample dict and applies a dict-in/dict-out transform."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from spinectx.data.cache import FrameCache
from spinectx.data.dicom import FrameRef
from spinectx.data.errors import DataError
from spinectx.data.landmarks import LandmarkSet
from spinectx.data.records import StudyRecord

log = logging.getLogger(__name__)


def record_targets(record: StudyRecord, landmarks: LandmarkSet) -> tuple[np.ndarray, np.ndarray]:
    """labels [K] (abnormal 0/1, NaN unknown) and tags [K, C] multi-hot of one record."""
    labels = np.full(len(landmarks), np.nan, dtype=np.float32)
    tags = np.zeros((len(landmarks), landmarks.max_classes), dtype=np.float32)
    for k, name in enumerate(landmarks.names):
        labels[k], tags[k] = landmarks.encode_tags(name, record.tags[k])
    return labels, tags


def window_indices(centre: int, count: int, slices: int) -> list[int]:
    """The 2.5-D input's slice indices: ``slices`` (odd) indices centred on ``centre`` in a stack of
    ``count`` slices, clamped at the stack's ends (``window_indices(0, 10, 3) == [0, 0, 1]``).
    Training (:class:`SpineDataset`) and prediction (:func:`spinectx.inference.stack_input`) share it."""
    half, last = slices // 2, count - 1
    return [min(max(centre + d, 0), last) for d in range(-half, half + 1)]


def class_prior(records: list[StudyRecord], landmarks: LandmarkSet, pseudo_count: float = 1.0) -> np.ndarray:
    """Class frequencies of each landmark over ``records`` → [K, C] (C = ``landmarks.max_classes``,
    the group's vocabulary order; columns past a group's classes are 0): (count + ``pseudo_count``)
    normalised over the group's classes (Laplace smoothing: a class never seen does not get 0).
    Untagged landmarks do not count. What a model that ignores the image predicts; the RSNA
    class-prior baseline and the fallback rows of a submission."""
    counts = np.zeros((len(landmarks), landmarks.max_classes), dtype=np.float64)
    for r in records:
        counts += record_targets(r, landmarks)[1]
    valid = np.zeros_like(counts, dtype=bool)
    for k, g in enumerate(landmarks.group_of):
        valid[k, : len(landmarks.groups[g].classes)] = True
    counts = np.where(valid, counts + pseudo_count, 0.0)
    return counts / counts.sum(-1, keepdims=True)


class SpineDataset(Dataset):
    """Samples of annotated studies.

    Each item is the transform applied to the raw sample dict
    ``{image [H, W] (or [S, H, W] with ``slices`` = S > 1) float32 ~[0,1], keypoints [K, 2] (x, y)
    px (NaN = missing), annotated [K], labels [K], tags [K, C], spacing [2] (dy, dx) mm, study_uid,
    sample_id}``.

    Args:
        records: studies to serve; the dataset has ``len(records) * num_rep`` items (an epoch
            passes over the studies ``num_rep`` times).
        neighbour_p: probability of loading the slice just before or after the annotated one
            (SPEC §3 augmentation; landmarks keep their in-plane coordinates). A neighbour that
            cannot be decoded, or whose size differs from the annotated frame's, is replaced by
            the annotated frame (a warning names the file once; the file is not tried again).
        slices: 2.5-D input: the centre slice and its ``(slices − 1) / 2`` neighbours on each side
            in the stack, as channels in slice order (1 = the frame alone; an odd number). At the
            ends of a stack, and for a neighbour that cannot be used, the centre slice is repeated.
            With ``neighbour_p`` the whole window moves with the centre.
            The annotated frame itself was checked by ``build_index``; if it fails here after all
            (e.g. changed on disk since), the DicomError naming it propagates.
    """

    def __init__(
        self,
        records: Sequence[StudyRecord],
        landmarks: LandmarkSet,
        transform: Callable[[dict], dict] | None,
        cache: FrameCache,
        num_rep: int = 1,
        neighbour_p: float = 0.0,
        slices: int = 1,
    ):
        self.records = list(records)
        self.landmarks = landmarks
        self.transform = transform
        self.cache = cache
        self.num_rep = max(1, int(num_rep))
        self.neighbour_p = float(neighbour_p)
        self.slices = int(slices)
        if self.slices < 1 or self.slices % 2 == 0:
            raise ValueError(f"slices must be an odd number ≥ 1 (the frame and as many neighbours on each side), got {slices}")
        self._targets = [record_targets(r, landmarks) for r in self.records]
        self._bad_neighbours: set[FrameRef] = set()  # per process: each DataLoader worker keeps its own

    def __len__(self) -> int:
        return len(self.records) * self.num_rep

    def _centre(self, record: StudyRecord) -> int:
        index = record.slice_index
        if self.neighbour_p > 0 and torch.rand(()) < self.neighbour_p:
            step = -1 if torch.rand(()) < 0.5 else 1
            if 0 <= index + step < len(record.slices):
                index += step
        return index

    def _load_slice(self, record: StudyRecord, ref: FrameRef, fallback: np.ndarray | None) -> np.ndarray:
        """The image of ``ref``, or ``fallback`` (else the annotated frame) when it cannot be
        used: undecodable, or of another size than the annotated frame."""
        if ref != record.frame_ref and ref not in self._bad_neighbours:
            try:
                image = self.cache.load(ref)
            except (DataError, OSError) as exc:
                reason = str(exc)
            else:
                if image.shape == tuple(record.shape):
                    return image
                reason = (
                    f"{ref}: size {image.shape[0]}×{image.shape[1]} differs from the annotated frame's "
                    f"{record.shape[0]}×{record.shape[1]}"
                )
            self._bad_neighbours.add(ref)
            log.warning("neighbour slice unusable (%s); using the annotated frame %s instead", reason, record.frame_ref)
        if ref != record.frame_ref and fallback is not None:
            return fallback
        return self.cache.load(record.frame_ref)

    def _load_image(self, record: StudyRecord) -> np.ndarray:
        centre = self._centre(record)
        image = self._load_slice(record, record.slices[centre], None)
        if self.slices == 1:
            return image
        channels = [image if j == centre else self._load_slice(record, record.slices[j], image)
                    for j in window_indices(centre, len(record.slices), self.slices)]
        return np.stack(channels)

    def raw_sample(self, i: int, image: np.ndarray | None = None) -> dict:
        """Item ``i`` before the transform; ``image`` replaces the frame this dataset would load
        (e.g. a frame decoded another way)."""
        record = self.records[i % len(self.records)]
        image = self._load_image(record) if image is None else image
        labels, tags = self._targets[i % len(self.records)]
        return {
            "image": image,
            "keypoints": record.keypoints.copy(),
            "annotated": np.isfinite(record.keypoints).all(-1),
            "labels": labels.copy(),
            "tags": tags.copy(),
            "spacing": np.asarray(record.pixel_spacing, dtype=np.float32),
            "study_uid": record.study_uid,
            "sample_id": record.sample_id,
        }

    def __getitem__(self, i: int) -> dict:
        sample = self.raw_sample(i)
        return self.transform(sample) if self.transform is not None else sample
