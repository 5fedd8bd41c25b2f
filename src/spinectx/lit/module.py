"""The LightningModule shared by every model: codec-encoded targets, loss, decode, table metric."""

from __future__ import annotations

from collections.abc import Mapping

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from spinectx.codecs.base import Decoded
from spinectx.data.landmarks import LandmarkSet
from spinectx.metrics.table import TableMetric


def _plain(cfg):
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


class LandmarkModule(L.LightningModule):
    """Train/validate any landmark network through its codec.

    Everything needed to rebuild the module is stored as plain hyperparameters, so
    ``LandmarkModule.load_from_checkpoint(path)`` works without the original config files.

    Args:
        net: Hydra config of the network (``num_landmarks`` is filled in from ``landmarks``,
            ``channels_per_landmark`` from the codec class).
        codec: Hydra config of the codec (``stride`` is filled in from the network).
        loss: Hydra config of the loss (``groups`` is filled in from ``landmarks``).
        landmarks: landmark-set config of the data (see :class:`LandmarkSet`).
        optimizer: Hydra config of a partial optimizer (``params`` filled in).
        scheduler: Hydra config of a partial LR scheduler stepped once per epoch, or None.
        name, backbone, msc: descriptive labels recorded for reports and loggers.
        tta: horizontal-flip test-time averaging in validation and prediction (SPEC §3): the
            keypoints and probabilities of the image and of its mirror (x → W−1−x) are averaged.
        input_size: side of the square network input in pixels (the data's ``image_size``),
            recorded so that prediction resizes frames as training did.
        channels_last: run the network in channels-last memory format.
        compile: wrap the network's forward in ``torch.compile`` (``compile_kwargs`` passed on,
            e.g. ``{backend: eager}``); the checkpoint holds the plain network's weights, so it
            loads with and without compilation.
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
        tta: bool = False,
        input_size: int | None = None,
        channels_last: bool = False,
        compile: bool = False,
        compile_kwargs: Mapping | None = None,
    ):
        super().__init__()
        net, codec, loss, landmarks = _plain(net), _plain(codec), _plain(loss), _plain(landmarks)
        optimizer, scheduler, compile_kwargs = _plain(optimizer), _plain(scheduler), _plain(compile_kwargs)
        self.save_hyperparameters()
        self.landmarks = LandmarkSet.from_config(landmarks)
        codec_class = get_class(codec["_target_"])
        self.net = instantiate(net, num_landmarks=len(self.landmarks),
                               channels_per_landmark=codec_class.channels_per_landmark)
        self.codec = instantiate(codec, stride=self.net.stride)
        self.loss_fn = instantiate(loss, groups=list(self.landmarks.group_of))
        expected = getattr(self.loss_fn, "codec_class", None)
        if expected is not None and not isinstance(self.codec, expected):
            raise ValueError(
                f"{type(self.loss_fn).__name__} trains a {expected.__name__}, but the codec is a "
                f"{type(self.codec).__name__}: choose the codec with model/codec=... (it brings its loss)"
            )
        titles = [g.title for g in self.landmarks.groups]
        self.val_metric = TableMetric(self.landmarks.group_of, titles)
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        # kept outside the module tree: the state dict stays that of the plain network
        object.__setattr__(self, "_net_forward", torch.compile(self.net, **dict(compile_kwargs or {}))
                           if compile else self.net)

    # -- inference -------------------------------------------------------------------------
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 1, H, W] → raw network output (layout defined by the codec)."""
        if self.hparams.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        return self._net_forward(image)

    @torch.no_grad()
    def predict_keypoints(self, image: torch.Tensor, output: torch.Tensor | None = None) -> Decoded:
        """[B, 1, H, W] → decoded keypoints (x, y input px), scores and P(abnormal), with
        flip averaging when ``tta`` is on. ``output``: the network output for ``image`` if
        already computed."""
        decoded = self.codec.decode(self(image) if output is None else output)
        if not self.hparams.tta:
            return decoded
        mirrored = self.codec.decode(self(image.flip(-1)))
        keypoints = mirrored.keypoints.clone()
        keypoints[..., 0] = image.shape[-1] - 1 - keypoints[..., 0]
        return Decoded(
            keypoints=(decoded.keypoints + keypoints) / 2,
            score=(decoded.score + mirrored.score) / 2,
            prob=(decoded.prob + mirrored.prob) / 2,
        )

    # -- training --------------------------------------------------------------------------
    def _losses(self, batch: dict, output: torch.Tensor) -> dict[str, torch.Tensor]:
        targets = self.codec.encode(batch["keypoints"], batch["visible"], tuple(batch["image"].shape[-2:]))
        return self.loss_fn(output, targets, batch["labels"], self.codec)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        losses = self._losses(batch, self(batch["image"]))
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, on_step=True, on_epoch=True,
                      batch_size=batch["image"].shape[0], prog_bar=False)
        self.log("loss", losses["loss"], prog_bar=True, logger=False, batch_size=batch["image"].shape[0])
        return losses["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        output = self(batch["image"])
        losses = self._losses(batch, output)
        decoded = self.predict_keypoints(batch["image"], output)
        self.val_metric.update(decoded.keypoints, decoded.prob, batch["keypoints"], batch["annotated"],
                               batch["labels"], batch["spacing"])
        self.log("val/loss", losses["loss"], on_epoch=True, batch_size=batch["image"].shape[0], sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        values = self.val_metric.compute()
        self.val_metric.reset()
        self.log_dict({f"val/{k}": v for k, v in values.items()}, prog_bar=False)
        self.log("val_score", values["Score"], prog_bar=True, logger=False)

    def configure_optimizers(self):
        optimizer = instantiate(self.hparams.optimizer)(params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        scheduler = instantiate(self.hparams.scheduler)(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
