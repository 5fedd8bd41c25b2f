"""Prediction on unannotated studies: checkpoint → frames → keypoints in original pixels + P(abnormal).

A frame is prepared exactly as validation prepares it (intensity normalisation, resize of the
whole frame to the checkpoint's square input size), the network runs (with horizontal-flip
averaging when ``tta``), and the keypoints are mapped back to the frame's own pixels with the
inverse of the resize: ``x = (x' + 0.5) · W / S − 0.5`` (and likewise for y).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spinectx.data.cache import normalise_intensity
from spinectx.data.dataset import window_indices
from spinectx.data.dicom import FrameRef, read_frame, read_headers
from spinectx.data.errors import DataError
from spinectx.data.records import layout_problem
from spinectx.data.study import Stack, StudyIndex, group_stacks, index_folder, plane_of, unique_studies
from spinectx.data.submission import StudyPrediction
from spinectx.data.transforms import resize_image

log = logging.getLogger(__name__)


def load_module(ckpt_path: str | Path, device: str | torch.device = "cpu", tta: bool | None = None,
                classifier_ckpt: str | Path | None = None):
    """A :class:`~spinectx.lit.LandmarkModule` rebuilt from its checkpoint alone, in eval mode.
    ``tta`` overrides the checkpoint's flip-averaging setting when not None. With
    ``classifier_ckpt`` (a stage-2 crop classifier, ``model=two_stage``), the two-stage pair:
    ``ckpt_path``'s points, the classifier's classes (:func:`~spinectx.lit.load_two_stage`).

    Raises:
        FileNotFoundError: no file at ``ckpt_path`` (or ``classifier_ckpt``).
        CheckpointError: a file that is not a readable spinectx checkpoint (text, truncated,
            empty, a bare state dict); the message names the file.
        ValueError: ``classifier_ckpt`` is not a crop classifier or does not fit stage 1;
            ``ckpt_path`` is a crop classifier (ConfigError, saying to pass it as ``classifier_ckpt``).
    """
    from spinectx.checkpoint import read_checkpoint
    from spinectx.lit.module import LandmarkModule

    if classifier_ckpt:
        from spinectx.lit.crop_module import load_two_stage

        return load_two_stage(ckpt_path, classifier_ckpt, device=device, tta=tta)

    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        module = LandmarkModule.load_from_checkpoint(path, map_location=device)
    except Exception:
        content = read_checkpoint(path)  # raises CheckpointError when the file itself is the problem
        if "crop_net" in (content.get("hyper_parameters") or {}):
            from spinectx.data.errors import ConfigError

            raise ConfigError(f"{path} is a stage-2 crop classifier (model=two_stage), not a localiser: give it as "
                              "classifier_ckpt= beside a localiser's checkpoint (ckpt_path= / model.stage1_ckpt=)") from None
        raise  # a readable checkpoint that still fails to load: not an input problem we can name
    if tta is not None:
        module.hparams.tta = bool(tta)
    return module.eval()


def frame_to_input(frame: np.ndarray, size: int) -> torch.Tensor:
    """Raw frame float [H, W] → network input [1, S, S] (normalised, resized)."""
    return torch.from_numpy(resize_image(normalise_intensity(frame.astype(np.float32)), (size, size)))[None]


def stack_input(slices, index: int, size: int, channels: int = 1,
                read=read_frame) -> tuple[torch.Tensor, tuple[int, int], list[str]]:
    """Network input of slice ``index`` of a stack (``slices``: FrameRefs in slice order) →
    (input [channels, S, S], the slice's frame shape (H, W), notes).

    ``channels`` = 1 gives the slice alone; 3 (2.5-D) the slice and its neighbour on each side in
    slice order, clamped at the stack's ends — each normalised and resized exactly as validation
    prepares it (:class:`~spinectx.data.dataset.SpineDataset` with ``slices=channels``). A
    neighbour that does not decode, or has another size, is replaced by the slice (with a note).
    ``read`` decodes one FrameRef (e.g. a per-study memo, so that each slice is decoded once).

    Raises:
        DataError: the slice itself does not decode (naming its file).
        ValueError: ``channels`` is not odd and ≥ 1, or ``index`` is outside the stack.
    """
    if channels < 1 or channels % 2 == 0:
        raise ValueError(f"channels must be an odd number ≥ 1, got {channels}")
    if not 0 <= index < len(slices):
        raise ValueError(f"slice index {index} outside a stack of {len(slices)} slices")
    centre = read(slices[index])
    planes, notes = [], []
    for j in window_indices(index, len(slices), channels):
        frame = centre
        if j != index:
            try:
                frame = read(slices[j])
            except DataError as exc:
                notes.append(f"neighbour slice unusable ({exc}); the slice {slices[index]} is used instead")
                frame = centre
            if frame.shape != centre.shape:
                notes.append(f"{slices[j]}: size {frame.shape[0]}×{frame.shape[1]} differs from the slice's; "
                             f"the slice {slices[index]} is used instead")
                frame = centre
        planes.append(frame_to_input(frame, size)[0])
    return torch.stack(planes), tuple(centre.shape), notes


def input_spacing(pixel_spacing, frame_hw: tuple[int, int], size: int, where: str | Path = "") -> torch.Tensor:
    """mm per pixel of the network input: the frame's PixelSpacing (dy, dx) mm scaled by the resize
    of its [H, W] frame to ``size`` × ``size`` → float32 [2] (dy · H / S, dx · W / S), as the
    validation transform gives a sample's ``spacing``.

    Raises:
        DataError: ``pixel_spacing`` missing, not two numbers, not finite or not > 0 (naming
            ``where``, the file).
    """
    values = np.asarray(pixel_spacing if pixel_spacing is not None else (), dtype=np.float64).reshape(-1)
    if values.size != 2 or not np.isfinite(values).all() or not (values > 0).all():
        raise DataError(where, f"PixelSpacing (0028,0030) is {pixel_spacing!r}, not two positive numbers (mm): "
                               "a classifier with crops in mm needs it")
    h, w = frame_hw
    return torch.tensor([values[0] * h / size, values[1] * w / size], dtype=torch.float32)


def input_to_frame(keypoints: np.ndarray, frame_hw: tuple[int, int], size: int) -> np.ndarray:
    """Keypoints [K, 2] (x, y) in input pixels → pixels of the [H, W] frame (inverse resize)."""
    h, w = frame_hw
    scale = np.array([w / size, h / size], dtype=np.float64)
    return ((keypoints.astype(np.float64) + 0.5) * scale - 0.5).astype(np.float32)


@dataclass
class Target:
    """One image to predict: its file (and frame of a multi-frame file), the UIDs to write, and
    its ``z_index`` — the frame number for a multi-frame file, else the slice index in its stack
    (what a submission's ``zIndex`` holds)."""

    path: str
    study_uid: str
    series_uid: str
    instance_uid: str
    z_index: int | None
    frame: int | None = None
    spares: tuple[FrameRef, ...] = ()  # other files holding the same image, tried when this one fails
    pixel_spacing: tuple[float, float] | None = None  # (dy, dx) mm of the frame, from its header

    @property
    def ref(self) -> FrameRef:
        return FrameRef(self.path, self.frame)


def _target(stack: Stack, z: int) -> Target:
    h = stack.slices[z]
    spares = tuple(d.ref for d in stack.duplicates.get(h.key, []))
    return Target(h.path, h.study_uid, h.series_uid, h.instance_uid, h.frame if h.frame is not None else z, h.frame,
                  spares, h.pixel_spacing)


def read_target(target: Target) -> tuple[np.ndarray, list[str]]:
    """Decode a target's image, from a spare copy when its file fails (as training does) →
    (float32 [H, W], notes). Raises the first file's DicomError when no copy decodes."""
    try:
        return read_frame(target.ref), []
    except DataError as exc:
        first = exc
    for spare in target.spares:
        try:
            return read_frame(spare), [f"{first}; read from its copy {spare}"]
        except DataError:
            continue
    raise first


def target_of_study(index: StudyIndex) -> Target:
    """The middle slice of the T2 sagittal stack (any sagittal stack when there is no T2); a
    series holding several stacks is judged stack by stack."""
    stack = index.inference_stack()
    return _target(stack, len(stack.slices) // 2)


def target_of_file(path: Path) -> tuple[Target, list[str]]:
    """The image of one DICOM file: the file itself when it holds one frame; for a multi-frame
    file, the middle frame of its (T2) sagittal stack — never silently frame 0.

    Raises:
        DataError: unreadable file, or a multi-frame file without sagittal frames.
    """
    headers = read_headers(path)
    if len(headers) == 1:
        h = headers[0]
        problems = []
        if plane_of(h.orientation) not in ("sagittal", "unknown"):
            problems.append(f"{path}: a {plane_of(h.orientation)} image, predicted as given (the models are trained on sagittal frames)")
        target = Target(str(path), h.study_uid, h.series_uid, h.instance_uid, None, pixel_spacing=h.pixel_spacing)
        return target, problems
    index = StudyIndex(folder=str(path), study_uid=headers[0].study_uid, stacks=group_stacks(headers))
    target = target_of_study(index)
    return target, [f"{path}: multi-frame file of {len(headers)} frames; frame {target.frame} (the middle of its "
                    f"sagittal stack) is predicted"]


def find_targets(input_path: str | Path) -> tuple[list[Target], list[str]]:
    """Images to predict under ``input_path`` → (targets, problems).

    Accepts a folder of study folders (the challenge layout, e.g. ``lumbar_testA50/``), one
    study folder, one series folder (any folder whose files are DICOM), or one DICOM file.
    Studies that cannot be used are skipped and listed in ``problems``. A folder holding files of
    several studies gives one target per study; a study found in several folders is predicted
    once, under the duplicates rule of :func:`~spinectx.data.study.unique_studies` (the copy
    with the most images counts; the others are listed).
    """
    path = Path(input_path)
    if not path.exists():
        raise DataError(path, "input not found")
    if path.is_file():
        target, problems = target_of_file(path)
        return [target], problems
    subfolders = sorted(p for p in path.iterdir() if p.is_dir())
    folders = subfolders if subfolders else [path]
    indexes, problems = [], []
    for folder in folders:
        try:
            found = index_folder(folder)
        except DataError as exc:
            problems.append(str(exc))
            log.warning("skipping %s", exc)
            continue
        for idx in found:
            problems.extend(idx.problems)
        indexes.extend(found)
    targets = []
    for idx in unique_studies(indexes, problems).values():
        try:
            targets.append(target_of_study(idx))
        except DataError as exc:
            problems.append(str(exc))
            log.warning("skipping %s", exc)
    if not targets and subfolders:
        hint = layout_problem(path)
        if hint:
            problems.insert(0, hint)
    return targets, problems


@torch.no_grad()
def predict_targets(module, targets: list[Target], batch_size: int = 8,
                    input_size: int | None = None) -> tuple[list[StudyPrediction], list[str]]:
    """Predict each target's keypoints (frame pixels), P(abnormal) and, for a multiclass head, the
    class probabilities [K, C] (``StudyPrediction.class_prob``; None for the binary head);
    undecodable frames are skipped and listed in the returned problems. A two-stage pair whose
    crops are in mm (``module.size_mm``) gets each input's pixel spacing (:func:`input_spacing`);
    a target without a usable PixelSpacing is then skipped and listed."""
    size = int(input_size or module.hparams.get("input_size") or 0)
    if size <= 0:
        raise ValueError("the checkpoint does not record its input size: pass input_size=")
    needs_spacing = getattr(module, "size_mm", None) is not None
    predictions, problems = [], []
    for start in range(0, len(targets), batch_size):
        chunk, images, shapes, spacings = [], [], [], []
        for t in targets[start:start + batch_size]:
            try:
                frame, notes = read_target(t)
                if needs_spacing:
                    spacings.append(input_spacing(t.pixel_spacing, frame.shape, size, t.path))
                problems.extend(notes)
            except DataError as exc:
                problems.append(f"{exc}; study {t.study_uid} not predicted")
                continue
            chunk.append(t)
            shapes.append(frame.shape)
            images.append(frame_to_input(frame, size))
        if not chunk:
            continue
        spacing = torch.stack(spacings).to(module.device) if needs_spacing else None
        decoded = module.predict_keypoints(torch.stack(images).to(module.device), spacing=spacing)
        for i, t in enumerate(chunk):
            keypoints = input_to_frame(decoded.keypoints[i].float().cpu().numpy(), shapes[i], size)
            class_prob = None if decoded.class_prob is None else decoded.class_prob[i].float().cpu().numpy()
            predictions.append(StudyPrediction(t.study_uid, t.series_uid, t.instance_uid, keypoints,
                                               decoded.prob[i].float().cpu().numpy(), z_index=t.z_index,
                                               class_prob=class_prob))
    return predictions, problems
