"""Stage 2 of the two-stage pipeline (SPEC §7) as a LightningModule, and the stage-1 + stage-2 pair.

:class:`CropClassifierModule` trains a :class:`~spinectx.models.crop_net.CropNet` on crops centred
on the landmarks of the shared DataModule's samples: the true points moved by ``U(−jitter_px,
jitter_px)`` pixels per axis in training (the seed's boxes were never exact), the points of a
stage-1 localiser (any of the suite's checkpoints, ``stage1_ckpt``) in validation and prediction.
Crops are ``crop.size_px`` pixels of the network input (seed: 32) or ``crop.size_mm`` mm (needs the
pixel spacing), resampled to ``crop.out_size`` px, with every input slice as a channel (2.5-D).

Validation without a stage-1 checkpoint classifies at the true points: the L- metrics are then 1
by construction, and the C- metrics are those of classification given a perfect localiser (a
warning says so). With one, validation is the pipeline's: stage-1 points, stage-2 classes.

The class loss is the suite's (class-balanced / weighted cross-entropy per group, BCE for flags)
or the seed's focal loss (``loss.kind: focal``, γ = 3, α and w from the training class
frequencies; :func:`~spinectx.losses.focal.seed_class_weights`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from hydra.utils import instantiate

from spinectx.codecs.base import Decoded
from spinectx.data.crops import crop_batch
from spinectx.data.errors import ConfigError
from spinectx.lit.module import SpineModuleBase, _plain, mirror_keypoints
from spinectx.losses.classification import group_balanced_bce, multiclass_loss
from spinectx.losses.focal import FocalLoss, seed_class_weights
from spinectx.models.context import landmark_order
from spinectx.models.crop_net import CropNet

log = logging.getLogger(__name__)

LOSS_KINDS = ("ce", "focal")


class CropClassifierModule(SpineModuleBase):
    """Crop classifier over the landmarks (module docstring); ``predict_keypoints`` as every model.

    Args:
        crop_net: ``{arch: deepscorenet | <timm name>, pretrained_path}`` of the crop model.
        landmarks: landmark-set config of the data.
        optimizer / scheduler: Hydra partials (as :class:`~spinectx.lit.LandmarkModule`).
        loss: ``{kind: ce | focal, gamma}``: the suite's cross-entropy or the seed's focal loss.
        crop: ``{size_px | size_mm, out_size, jitter_px}``: the window (pixels of the network input,
            or mm), the crop's side after resampling, the training jitter of the centre (pixels).
        context: ``{kind: none | bilstm | transformer, ...}`` (:class:`CropNet`).
        stage1_ckpt: a trained localiser checkpoint whose points stage 2 classifies in validation
            (None: the true points). Not part of this module's weights.
        class_head, tta, input_size, input_slices, metrics, name, backbone, msc: as
            :class:`~spinectx.lit.LandmarkModule` (``backbone`` records the crop model).
        channels_last, compile, compile_kwargs: taken from the shared ``model/runtime`` config and
            recorded, not applied (32 × 32 crops gain nothing from either).

    Raises:
        ValueError: an unknown loss kind, focal loss with the binary head, a crop size given both
            or neither way, or a problem of :class:`CropNet`.
    """

    def __init__(self, crop_net: Mapping, landmarks: Mapping, optimizer: Mapping, scheduler: Mapping | None = None,
                 loss: Mapping | None = None, crop: Mapping | None = None, context: Mapping | None = None,
                 stage1_ckpt: str | None = None, class_head: str = "multiclass", tta: bool = False,
                 input_size: int | None = None, input_slices: int = 1, metrics: Mapping | None = None,
                 name: str = "two_stage", backbone: str | None = None, msc: bool | None = None,
                 channels_last: bool = False, compile: bool = False, compile_kwargs: Mapping | None = None):
        super().__init__()
        crop_net, landmarks, optimizer, scheduler = _plain(crop_net), _plain(landmarks), _plain(optimizer), _plain(scheduler)
        loss, crop, context, metrics = _plain(loss), _plain(crop), _plain(context), _plain(metrics)
        compile_kwargs = _plain(compile_kwargs)  # plain containers only: checkpoints load with weights_only
        self.save_hyperparameters()
        self._setup_classes(landmarks, class_head, metrics)
        crop = dict(crop or {"size_px": 32})
        self.size_px, self.size_mm = crop.get("size_px"), crop.get("size_mm")
        if (self.size_px is None) == (self.size_mm is None):
            raise ConfigError(f"model.crop: give size_px or size_mm, exactly one; got {crop}")
        self.out_size = int(crop.get("out_size", 32))
        self.jitter_px = float(crop.get("jitter_px", 0.0))
        loss = dict(loss or {})
        self.loss_kind = loss.get("kind", "ce")
        if self.loss_kind not in LOSS_KINDS:
            raise ConfigError(f"model.loss.kind must be one of {LOSS_KINDS}, got {self.loss_kind!r}")
        if self.loss_kind == "focal" and not self.classes.multiclass:
            raise ConfigError("the focal loss (the seed's recipe) needs model.class_head=multiclass")
        self.gamma = float(loss.get("gamma", 3.0))
        self._focal: list[FocalLoss] | None = None
        crop_net = dict(crop_net)
        self.net = CropNet(len(self.landmarks), self.classes.n_logits, in_chans=int(input_slices),
                           arch=crop_net.get("arch", "deepscorenet"), context=context,
                           order=landmark_order(self.landmarks.names), bn_momentum=crop_net.get("bn_momentum"),
                           crop_size=self.out_size, pretrained_path=crop_net.get("pretrained_path"))
        self._stage1 = None
        self._warned_true_points = False

    # -- stage 1 -------------------------------------------------------------------------------
    @property
    def stage1(self):
        """The stage-1 localiser of ``stage1_ckpt`` (loaded on first use, kept out of this module's
        weights), or None."""
        if self._stage1 is None and self.hparams.stage1_ckpt:
            from spinectx.inference import load_module

            if not Path(self.hparams.stage1_ckpt).is_file():
                raise FileNotFoundError(f"model.stage1_ckpt={self.hparams.stage1_ckpt}: no such checkpoint (the "
                                        "stage-1 localiser whose points this crop classifier classifies)")
            stage1 = load_module(self.hparams.stage1_ckpt, device=self.device, tta=self.hparams.tta)
            self.attach_stage1(stage1)
        return self._stage1

    def attach_stage1(self, module) -> None:
        """Use ``module`` (a trained localiser) as stage 1; it must have this module's landmarks.

        Raises:
            ConfigError (a ValueError): a localiser of another landmark set, input size or slice count.
        """
        if list(module.landmarks.names) != list(self.landmarks.names):
            raise ConfigError(f"stage 1 localises {list(module.landmarks.names)}, stage 2 classifies "
                             f"{list(self.landmarks.names)}: train both on the same data / view")
        for key in ("input_size", "input_slices"):
            mine, theirs = self.hparams.get(key), module.hparams.get(key)
            if mine is not None and theirs is not None and int(mine) != int(theirs):
                raise ConfigError(f"stage 1 was trained with {key}={theirs}, stage 2 with {key}={mine}: both see the "
                                 "same input (train stage 2 with the same data.image_size / data.slices)")
        for p in module.parameters():
            p.requires_grad_(False)
        object.__setattr__(self, "_stage1", module.eval())  # not a submodule: not in state_dict

    # -- crops and classes ---------------------------------------------------------------------
    def crops(self, image: torch.Tensor, centers: torch.Tensor, spacing: torch.Tensor | None = None) -> torch.Tensor:
        """image [B, C, H, W], centers [B, K, 2] (x, y) px (NaN = none: cropped at (0, 0)),
        spacing [B, 2] (dy, dx) mm (needed for ``size_mm``) → crops [B, K, C, out_size, out_size].

        Raises:
            ValueError: ``size_mm`` crops without ``spacing``.
        """
        if self.size_mm is not None and spacing is None:
            raise ValueError(f"crops of {self.size_mm} mm need the pixel spacing of the input: pass spacing, "
                             "or train with model.crop.size_px")
        centers = torch.nan_to_num(centers.float(), nan=0.0)
        return crop_batch(image, centers, size_px=self.size_px, size_mm=self.size_mm,
                          spacing=None if spacing is None else spacing.float(), out_size=self.out_size)

    def class_logits(self, image: torch.Tensor, centers: torch.Tensor, spacing: torch.Tensor | None = None,
                     mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, K, n_logits] of the crops of ``image`` [B, C, H, W] at ``centers`` [B, K, 2]."""
        if mask is None:
            mask = torch.isfinite(centers).all(-1)
        return self.net(self.crops(image, centers, spacing), mask)

    def classify(self, image: torch.Tensor, keypoints: torch.Tensor, spacing: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(P(abnormal) [B, K], class_prob [B, K, C] or None) of the crops at ``keypoints``, averaged
        with the mirrored image's when ``tta`` is on (its landmarks permuted back)."""
        prob, class_prob = self.classes.decode(self.class_logits(image, keypoints, spacing))
        if not self.hparams.tta:
            return prob, class_prob
        perm = self.flip_permutation.to(keypoints.device)
        mirrored = mirror_keypoints(keypoints, image.shape[-1], perm)  # row k of the mirror = landmark perm[k]
        m_prob, m_class = self.classes.decode(self.class_logits(image.flip(-1), mirrored, spacing))
        prob = (prob + m_prob.index_select(1, perm)) / 2
        if class_prob is not None:
            class_prob = (class_prob + m_class.index_select(1, perm)) / 2
        return prob, class_prob

    @torch.no_grad()
    def predict_keypoints(self, image: torch.Tensor, spacing: torch.Tensor | None = None, **_) -> Decoded:
        """[B, C, H, W] → :class:`Decoded`: stage 1's keypoints and scores, stage 2's P(abnormal) and
        class probabilities at those points (see :meth:`classify`).

        Raises:
            RuntimeError: no stage 1 (``stage1_ckpt`` or :meth:`attach_stage1`).
        """
        stage1 = self.stage1
        if stage1 is None:
            raise RuntimeError("a crop classifier predicts at a localiser's points: give its checkpoint "
                               "(model.stage1_ckpt=… in training, ckpt_path=… with classifier_ckpt=… in predict/eval)")
        if stage1.device != image.device:  # kept outside the module tree: Lightning does not move it
            stage1.to(image.device)
        located = stage1.predict_keypoints(image)
        prob, class_prob = self.classify(image, located.keypoints, spacing)
        return Decoded(keypoints=located.keypoints, score=located.score, prob=prob, class_prob=class_prob)

    # -- training ------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        super().on_fit_start()
        _ = self.stage1  # a missing or mismatched stage-1 checkpoint fails now, not after training
        if self.loss_kind == "focal":
            self._focal = self._focal_losses()

    def _focal_losses(self) -> list[FocalLoss]:
        """One FocalLoss per group, α and w from the group's training frequencies (the class prior;
        uniform before fit start)."""
        losses = []
        for gi, group in enumerate(self.landmarks.groups):
            rows = [k for k, g in enumerate(self.landmarks.group_of) if g == gi]
            columns = [group.classes.index(c) for c in group.exclusive]
            if self.class_prior is not None:
                freq = torch.tensor(self.class_prior, dtype=torch.float64)[rows][:, columns].mean(0)
            else:
                freq = torch.ones(len(columns), dtype=torch.float64)
            alpha, weight = seed_class_weights((freq / freq.sum()).tolist())
            losses.append(FocalLoss(self.gamma, alpha, weight).to(self.device))
        return losses

    def class_loss(self, logits: torch.Tensor, batch: dict, valid: torch.Tensor) -> torch.Tensor:
        """The class term of ``logits`` [B, K, n_logits] against the batch's labels/tags (valid [B, K])."""
        targets = self.classes.encode(batch["labels"], batch.get("tags"))
        if not self.classes.multiclass:
            groups = torch.as_tensor(self.landmarks.group_of, device=logits.device)
            return group_balanced_bce(logits[..., 0].float(), targets.labels, valid, groups)
        if self.loss_kind == "focal" and self._focal is None:  # outside a fit (e.g. validate only)
            self._focal = self._focal_losses()
        focal = self._focal if self.loss_kind == "focal" else None
        return multiclass_loss(logits.float(), targets, valid, self.classes, exclusive_losses=focal)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        keypoints, valid = batch["keypoints"], batch["visible"].bool()
        if self.jitter_px > 0:
            keypoints = keypoints + (torch.rand_like(keypoints) * 2 - 1) * self.jitter_px
        logits = self.class_logits(batch["image"], keypoints, batch.get("spacing"), mask=valid)
        loss = self.class_loss(logits, batch, valid)
        n = batch["image"].shape[0]
        self.log("train/loss_class", loss, on_step=True, on_epoch=True, batch_size=n)
        self.log("train/loss", loss, on_step=True, on_epoch=True, batch_size=n)
        self.log("loss", loss, prog_bar=True, logger=False, batch_size=n)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        image, spacing = batch["image"], batch.get("spacing")
        valid = batch["visible"].bool()
        logits = self.class_logits(image, batch["keypoints"], spacing, mask=valid)
        loss = self.class_loss(logits, batch, valid)
        if self.stage1 is not None:
            decoded = self.predict_keypoints(image, spacing)
        else:
            if not self._warned_true_points:
                log.warning("no stage-1 checkpoint (model.stage1_ckpt): validating the crop classifier at the TRUE "
                            "points; L- metrics are 1 by construction")
                self._warned_true_points = True
            prob, class_prob = (self.classify(image, batch["keypoints"], spacing) if self.hparams.tta
                                else self.classes.decode(logits))
            truth = batch["keypoints"]
            decoded = Decoded(keypoints=truth, score=torch.ones_like(prob), prob=prob, class_prob=class_prob)
        self.update_val_metrics(decoded, batch)
        self.log("val/loss", loss, on_epoch=True, batch_size=image.shape[0], sync_dist=True)

    def complexity(self, input_size: int | None = None) -> dict:
        """Parameters (M, PyTorch and Keras counts) and MACs (G) of stage 2 for one image's K crops."""
        from spinectx.models.complexity import measure
        from spinectx.models.deepscorenet import keras_parameter_count

        one = measure(self.net.crop_model, (self.out_size, self.out_size), in_channels=self.net.in_chans,
                      convention="executed")
        counts = keras_parameter_count(self.net)
        return {"params_M": round(counts["torch"] / 1e6, 4), "keras_params_M": round(counts["total"] / 1e6, 4),
                "flops_G": round(one.macs_g * len(self.landmarks), 4), "crops_per_image": len(self.landmarks),
                "crop_size": self.out_size, "input_size": input_size}


def load_two_stage(stage1_ckpt: str | Path, classifier_ckpt: str | Path, device: str | torch.device = "cpu",
                   tta: bool | None = None) -> CropClassifierModule:
    """The crop classifier of ``classifier_ckpt`` with the localiser of ``stage1_ckpt`` attached, in
    eval mode: its ``predict_keypoints`` gives stage 1's points with stage 2's classes.

    Raises:
        FileNotFoundError / CheckpointError: a checkpoint that is missing or unreadable (naming it).
        ConfigError (a ValueError): ``classifier_ckpt`` is not a crop classifier, or the two disagree on
            the landmarks, input size or slices.
    """
    from spinectx.checkpoint import read_checkpoint
    from spinectx.inference import load_module

    path = Path(classifier_ckpt)
    if not path.is_file():
        raise FileNotFoundError(f"classifier checkpoint not found: {path}")
    if "crop_net" not in (read_checkpoint(path).get("hyper_parameters") or {}):  # read_checkpoint names a bad file
        raise ConfigError(f"classifier_ckpt={path}: not a crop-classifier checkpoint (train one with model=two_stage)")
    classifier = CropClassifierModule.load_from_checkpoint(path, map_location=device)
    if tta is not None:
        classifier.hparams.tta = bool(tta)
    classifier.attach_stage1(load_module(stage1_ckpt, device=device, tta=tta))
    return classifier.eval()
