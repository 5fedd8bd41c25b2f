"""The LightningModule shared by every model: codec-encoded targets, loss, decode, table metric."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from spinectx.codecs.base import Decoded
from spinectx.codecs.classes import ClassCodec
from spinectx.data.landmarks import LandmarkSet
from spinectx.metrics.table import TableMetric, landmark_distances_mm
from spinectx.models.context import ContextHead, context_settings, landmark_order


def _plain(cfg):
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def mirror_keypoints(keypoints: torch.Tensor, width: int, permutation: torch.Tensor) -> torch.Tensor:
    """Keypoints [B, K, 2] (x, y) of an image of ``width`` px → those of its horizontal mirror:
    x → width − 1 − x, landmarks permuted (row k = row ``permutation[k]``; left ⇄ right). Its own
    inverse (``permutation`` is an involution)."""
    mirrored = keypoints.index_select(1, permutation.to(keypoints.device)).clone()
    mirrored[..., 0] = width - 1 - mirrored[..., 0]
    return mirrored


def average_flipped(decoded: Decoded, mirrored: Decoded, width: int, permutation: torch.Tensor) -> Decoded:
    """Average a prediction with the prediction on the horizontally mirrored image.

    ``mirrored`` was decoded from ``image.flip(-1)``: its x is mapped back (x → width − 1 − x) and
    its landmarks are permuted back, ``mirrored`` row ``permutation[k]`` being landmark ``k`` of
    the original (left ⇄ right for flip pairs; ``permutation`` [K] long, its own inverse). Keypoints,
    scores, P(abnormal) and class probabilities are averaged.
    """
    perm = permutation.to(mirrored.keypoints.device)
    keypoints = mirror_keypoints(mirrored.keypoints, width, perm)
    class_prob = None
    if decoded.class_prob is not None and mirrored.class_prob is not None:
        class_prob = (decoded.class_prob + mirrored.class_prob.index_select(1, perm)) / 2
    return Decoded(
        keypoints=(decoded.keypoints + keypoints) / 2,
        score=(decoded.score + mirrored.score.index_select(1, perm)) / 2,
        prob=(decoded.prob + mirrored.prob.index_select(1, perm)) / 2,
        class_prob=class_prob,
    )


class SpineModuleBase(L.LightningModule):
    """What every spinectx LightningModule shares, whatever classifies the landmarks: the landmark
    set and class head (``self.landmarks``, ``self.classes``), the table metric and the RSNA
    metric of validation, the training class prior kept in checkpoints, and the optimizer from
    the Hydra configs. Subclasses set ``landmarks``, ``classes``, ``val_metric`` and
    ``rsna_metric`` through :meth:`_setup_classes` and implement ``predict_keypoints``."""

    def _setup_classes(self, landmarks: Mapping, class_head: str, metrics: Mapping | None) -> None:
        self.landmarks = LandmarkSet.from_config(landmarks)
        self.classes = ClassCodec(self.landmarks, class_head)
        # row k of a mirrored image's prediction is landmark flip_permutation[k] of the original
        self.register_buffer("flip_permutation", torch.as_tensor(self.landmarks.flip_permutation, dtype=torch.long),
                             persistent=False)
        titles = [g.title for g in self.landmarks.groups]
        self.val_metric = TableMetric(self.landmarks.group_of, titles)
        self.rsna_metric = self._rsna_metric(dict(_plain(metrics) or {}).get("rsna"))
        self.class_prior: list | None = None  # [K, C] training class frequencies (set at fit start, kept in checkpoints)

    def _rsna_metric(self, cfg: Mapping | None):
        """The competition metric of an RSNA view, or None (see ``metrics``).

        Raises:
            ConfigError: asked for with a head or landmark set that does not give the three
                severity probabilities of every landmark.
        """
        if not cfg:
            return None
        from spinectx.metrics.rsna import RSNAMetric

        groups = self.landmarks.groups
        if self.classes.mode != "multiclass" or any(len(g.exclusive) != 3 or g.flags for g in groups):
            from spinectx.data.errors import ConfigError

            raise ConfigError("the RSNA 2024 metric scores three severity probabilities per level: it needs "
                              "model.class_head=multiclass (binary is the TianChi paper's head) and landmark groups "
                              f"of three exclusive severities; got class_head={self.classes.mode} and "
                              f"{[list(g.classes) for g in groups]}")
        weights = groups[0].class_weights or (1.0, 2.0, 4.0)
        return RSNAMetric(any_severe=cfg.get("view") == "spinal", radius_mm=float(cfg.get("radius_mm", 6.0)),
                          class_weights=tuple(weights), severe_index=2)

    @staticmethod
    def severity_targets(tags: torch.Tensor) -> torch.Tensor:
        """Multi-hot tags [B, K, C] of one exclusive class each → class index [B, K] (−1 = unlabelled)."""
        return torch.where(tags.sum(-1) > 0, tags.argmax(-1), torch.full_like(tags[..., 0], -1, dtype=torch.long))

    def update_val_metrics(self, decoded: Decoded, batch: dict) -> None:
        """Add one validation batch's prediction to the table metric (and the RSNA metric)."""
        self.val_metric.update(decoded.keypoints, decoded.prob, batch["keypoints"], batch["annotated"],
                               batch["labels"], batch["spacing"])
        if self.rsna_metric is not None:
            distance = landmark_distances_mm(decoded.keypoints, batch["keypoints"], batch["spacing"])
            has_truth = batch["annotated"].bool() & torch.isfinite(batch["keypoints"]).all(-1)
            distance = torch.where(has_truth, distance, torch.full_like(distance, float("nan")))
            self.rsna_metric.update(decoded.class_prob[..., :3], self.severity_targets(batch["tags"]), distance)

    def on_validation_epoch_end(self) -> None:
        values = self.val_metric.compute()
        self.val_metric.reset()
        if self.rsna_metric is not None:
            rsna = self.rsna_metric.compute()
            self.rsna_metric.reset()
            values.update({"logloss": rsna["logloss"], "rsna_score": rsna["score"], "hit_rate": rsna["hit_rate"]})
            if "any_severe" in rsna:
                values["any_severe"] = rsna["any_severe"]
        self.log_dict({f"val/{k}": v.float() for k, v in values.items()}, prog_bar=False)
        self.log("val_score", values["Score"], prog_bar=True, logger=False)

    # ------------------------------------------------------------------ the training class prior
    #: checkpoint key of the class frequencies of the training samples (:func:`class_prior`):
    #: ``{"landmarks": [names], "classes": [[vocabulary] per landmark], "prior": [K, C]}``; what
    #: a study-level prediction falls back to for a row it cannot predict
    PRIOR_KEY = "spinectx_class_prior"

    def on_fit_start(self) -> None:
        from spinectx.data.dataset import class_prior

        train_set = getattr(getattr(self.trainer, "datamodule", None), "train_set", None)
        if train_set is not None and getattr(train_set, "records", None):
            self.class_prior = class_prior(train_set.records, self.landmarks).tolist()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        prior = getattr(self, "class_prior", None)
        if prior is not None:
            checkpoint[self.PRIOR_KEY] = {
                "landmarks": list(self.landmarks.names),
                "classes": [list(self.landmarks.groups[g].classes) for g in self.landmarks.group_of],
                "prior": prior,
            }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        stored = checkpoint.get(self.PRIOR_KEY)
        if stored is not None:
            self.class_prior = stored["prior"]

    def configure_optimizers(self):
        optimizer = instantiate(self.hparams.optimizer)(params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        scheduler = instantiate(self.hparams.scheduler)(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


class LandmarkModule(SpineModuleBase):
    """Train/validate any landmark network through its codec.

    Everything needed to rebuild the module is stored as plain hyperparameters, so
    ``LandmarkModule.load_from_checkpoint(path)`` works without the original config files.

    Args:
        net: Hydra config of the network (``num_landmarks`` is filled in from ``landmarks``,
            ``channels_per_landmark`` from the codec class and the class head).
        codec: Hydra config of the codec (``stride`` is filled in from the network, ``classes``
            from ``class_head``).
        loss: Hydra config of the loss (``groups`` is filled in from ``landmarks``).
        landmarks: landmark-set config of the data (see :class:`LandmarkSet`).
        optimizer: Hydra config of a partial optimizer (``params`` filled in).
        scheduler: Hydra config of a partial LR scheduler stepped once per epoch, or None.
        name, backbone, msc: descriptive labels recorded for reports and loggers.
        class_head: ``binary`` (one logit per landmark, sigmoid = P(abnormal): the paper's head)
            or ``multiclass`` (softmax over each group's exclusive classes + a sigmoid per flag;
            :class:`~spinectx.codecs.classes.ClassCodec`). A checkpoint without it (written before
            the key existed) loads as ``binary``.
        tta: horizontal-flip test-time averaging in validation and prediction (SPEC §3): the
            keypoints and probabilities of the image and of its mirror (x → W−1−x) are averaged,
            the mirror's landmarks permuted back by the landmark set's ``flip_permutation``
            (a flip swaps the patient's left and right landmarks).
        input_size: side of the square network input in pixels (the data's ``image_size``),
            recorded so that prediction resizes frames as training did.
        input_slices: slices per input (the data's ``slices``: 1, or 3 for 2.5-D input), recorded so
            that prediction stacks the neighbours as training did.
        channels_last: run the network in channels-last memory format.
        metrics: the dataset's metrics beyond the table metric (``data.metrics``), e.g.
            ``{"rsna": {"view": "spinal", "radius_mm": 6.0}}``: the RSNA 2024 competition's
            weighted log loss of the view (+ ``any_severe`` for the spinal view) and the hit rate,
            logged as ``val/logloss``, ``val/any_severe``, ``val/rsna_score``, ``val/hit_rate``
            (:class:`~spinectx.metrics.rsna.RSNAMetric`; needs the multiclass head over the
            three severities).
        compile: wrap the network's forward in ``torch.compile`` (``compile_kwargs`` passed on,
            e.g. ``{backend: eager}``); the checkpoint holds the plain network's weights, so it
            loads with and without compilation.
        context: the classification path (``model/context``, SPEC §8): None or ``{kind: none}``
            (the default, and what a checkpoint without the key loads as) reads each landmark's
            class logits from the network output at its own cell, as before. ``{kind: bilstm |
            transformer, hidden, layers, heads, dropout}`` builds a
            :class:`~spinectx.models.context.ContextHead` (``self.context_head``): the network's
            features (``net.feature_channels``) are sampled at the landmarks — the true points in
            training, the decoded ones in prediction — and ordered top to bottom along the spine
            (:func:`~spinectx.models.context.spinal_order`; the landmark set's own order for sets
            without a vertical order, e.g. RSNA's left/right recesses), a Bi-LSTM / transformer
            lets each level see the others, and its logits replace the output's class blocks in
            the class loss and in ``prob`` / ``class_prob`` of :meth:`predict_keypoints`.
    """

    def __init__(
        self,
        net: Mapping,
        codec: Mapping,
        loss: Mapping,
        landmarks: Mapping,
        optimizer: Mapping,
        scheduler: Mapping | None = None,
        name: str = "model",
        backbone: str | None = None,
        msc: bool | None = None,
        class_head: str = "binary",
        tta: bool = False,
        input_size: int | None = None,
        input_slices: int = 1,
        channels_last: bool = False,
        compile: bool = False,
        compile_kwargs: Mapping | None = None,
        metrics: Mapping | None = None,
        context: Mapping | None = None,
    ):
        super().__init__()
        net, codec, loss, landmarks = _plain(net), _plain(codec), _plain(loss), _plain(landmarks)
        optimizer, scheduler, compile_kwargs = _plain(optimizer), _plain(scheduler), _plain(compile_kwargs)
        metrics, context = _plain(metrics), _plain(context)
        self.save_hyperparameters()
        self._setup_classes(landmarks, class_head, metrics)
        codec_class = get_class(codec["_target_"])
        self.net = instantiate(net, num_landmarks=len(self.landmarks),
                               channels_per_landmark=codec_class.channels_for(self.classes))
        self.codec = instantiate(codec, stride=self.net.stride, classes=self.classes)
        self.context_head = self._context_head(context)
        self.loss_fn = instantiate(loss, groups=list(self.landmarks.group_of))
        expected = getattr(self.loss_fn, "codec_class", None)
        if expected is not None and not isinstance(self.codec, expected):
            raise ValueError(
                f"{type(self.loss_fn).__name__} trains a {expected.__name__}, but the codec is a "
                f"{type(self.codec).__name__}: choose the codec with model/codec=... (it brings its loss)"
            )
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        # kept outside the module tree: the state dict stays that of the plain network
        object.__setattr__(self, "_net_forward", torch.compile(self.net, **dict(compile_kwargs or {}))
                           if compile else self.net)

    def _context_head(self, cfg: Mapping | None) -> ContextHead | None:
        """The context head of ``context`` (see the class docstring), or None for ``none``.

        Raises:
            ValueError: an unknown kind or key, or a network without ``feature_channels``.
        """
        kind, cfg = context_settings(cfg)
        if kind == "none":
            return None  # builds nothing, draws no random numbers: today's model exactly
        channels = getattr(self.net, "feature_channels", None)
        if channels is None:
            raise ValueError(f"model.context={kind} needs the network's feature_channels; "
                             f"{type(self.net).__name__} does not set it")
        return ContextHead(int(channels), self.classes.n_logits, kind, order=landmark_order(self.landmarks.names),
                           max_landmarks=max(32, len(self.landmarks)), **cfg)

    # -- inference -------------------------------------------------------------------------
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 1, H, W] → raw network output (layout defined by the codec)."""
        return self.forward_with_features(image)[0]

    def forward_with_features(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[B, 1, H, W] → (raw network output, the features the context head samples
        [B, net.feature_channels, h, w]) from one pass; features None without a context head."""
        if self.hparams.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        if self.context_head is None:
            return self._net_forward(image), None
        return self._net_forward(image, return_features=True)

    def _decode(self, output: torch.Tensor, features: torch.Tensor | None, input_size: tuple[int, int]) -> Decoded:
        """Decode one pass; with a context head, ``prob`` / ``class_prob`` come from its logits at
        the decoded keypoints."""
        decoded = self.codec.decode(output)
        if self.context_head is None:
            return decoded
        prob, class_prob = self.classes.decode(self.context_head(features, decoded.keypoints, input_size))
        return replace(decoded, prob=prob, class_prob=class_prob)

    @torch.no_grad()
    def predict_keypoints(self, image: torch.Tensor, output: torch.Tensor | None = None,
                          features: torch.Tensor | None = None, spacing: torch.Tensor | None = None) -> Decoded:
        """[B, C, H, W] → :class:`Decoded`: keypoints [B, K, 2] (x, y input px), scores [B, K],
        P(abnormal) [B, K] and class probabilities [B, K, C] (None for the binary head), with
        flip averaging when ``tta`` is on (each pass its own context-head output). ``output`` /
        ``features``: :meth:`forward_with_features` of ``image`` if already computed (with a
        context head an ``output`` without its ``features`` is recomputed). ``spacing`` is not used
        (a two-stage pair's mm-sized crops need it; one-stage models take it for the same call)."""
        if output is None or (self.context_head is not None and features is None):
            output, features = self.forward_with_features(image)
        size = tuple(image.shape[-2:])
        decoded = self._decode(output, features, size)
        if not self.hparams.tta:
            return decoded
        mirrored = self._decode(*self.forward_with_features(image.flip(-1)), size)
        return average_flipped(decoded, mirrored, image.shape[-1], self.flip_permutation)

    # -- training --------------------------------------------------------------------------
    def _losses(self, batch: dict, output: torch.Tensor, features: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The codec loss of ``output`` (and, with a context head, of its logits from ``features``
        at the true keypoints) → dict of scalars (``loss`` the total).

        Raises:
            ValueError: a context head but no ``features`` (use :meth:`forward_with_features`).
        """
        size = tuple(batch["image"].shape[-2:])
        targets = self.codec.encode(batch["keypoints"], batch["visible"], size)
        if self.context_head is None:
            return self.loss_fn(output, targets, batch["labels"], self.codec, batch.get("tags"))
        if features is None:
            raise ValueError("this model classifies through its context head: pass the features too, "
                             "output, features = module.forward_with_features(image)")
        logits = self.context_head(features, batch["keypoints"], size, mask=targets.valid)
        return self.loss_fn(output, targets, batch["labels"], self.codec, batch.get("tags"), class_logits=logits)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        losses = self._losses(batch, *self.forward_with_features(batch["image"]))
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, on_step=True, on_epoch=True,
                      batch_size=batch["image"].shape[0], prog_bar=False)
        self.log("loss", losses["loss"], prog_bar=True, logger=False, batch_size=batch["image"].shape[0])
        return losses["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        output, features = self.forward_with_features(batch["image"])
        losses = self._losses(batch, output, features)
        self.update_val_metrics(self.predict_keypoints(batch["image"], output, features), batch)
        self.log("val/loss", losses["loss"], on_epoch=True, batch_size=batch["image"].shape[0], sync_dist=True)
