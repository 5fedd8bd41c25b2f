"""One LightningDataModule for every model: folds, fractions, augmentation, batching.

Batches are dicts (see :class:`~spinectx.data.dataset.SpineDataset` and
:class:`~spinectx.data.transforms.SpineTransform`): ``image`` [B, slices, S, S], ``keypoints``
[B, K, 2] (x, y) input pixels, ``annotated``/``visible`` [B, K], ``labels`` [B, K], ``tags``
[B, K, C], ``spacing`` [B, 2] (dy, dx) mm of the resized frame, ``study_uid`` and ``sample_id``
list[str]. Target encoding is the model's codec's job, not the DataModule's; which layout the data
came from is the reader's business (:class:`~spinectx.data.records.TianChiReader`,
:class:`~spinectx.data.rsna.RSNAReader`), never the DataModule's.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from spinectx.data.cache import FrameCache
from spinectx.data.dataset import SpineDataset
from spinectx.data.errors import ConfigError, DataError, config_int
from spinectx.data.folds import check_folds, split_studies
from spinectx.data.landmarks import LandmarkSet
from spinectx.data.records import DatasetIndex, TianChiReader
from spinectx.data.sampling import build_sampler, check_sampler
from spinectx.data.transforms import SpineTransform

log = logging.getLogger(__name__)


def ensure_synthetic(root: str | Path, split: str, studies: int, seed: int, workers: int = 1,
                     format: str = "tianchi") -> Path:
    """Generate the synthetic dataset into ``root`` unless it is already complete: the TianChi
    layout (``split``) or, with ``format="rsna2024"``, the RSNA 2024 layout.

    Generation goes to a temporary sibling folder that is renamed at the end, so an interrupted
    run never leaves a half-written dataset behind."""
    root = Path(root)
    if format not in ("tianchi", "rsna2024"):
        raise ConfigError(f"data.synthetic.format must be tianchi or rsna2024, got {format!r}")
    done = root / ("train.csv" if format == "rsna2024" else f"{split}_annotation.json")
    if done.is_file():
        return root
    tmp = root.with_name(root.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("generating %d synthetic %s studies (seed %d) into %s", studies, format, seed, root)
    if format == "rsna2024":
        from spinectx.data.synthetic import generate_rsna_dataset

        generate_rsna_dataset(tmp, studies=studies, seed=seed, workers=workers)
    else:
        from spinectx.data.synthetic import generate_dataset

        generate_dataset(tmp, studies=studies, seed=seed, split=split, workers=workers)
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, root)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return root


class SpineDataModule(L.LightningDataModule):
    """Cross-validated spine landmark data from any layout a reader understands.

    Args:
        root: dataset folder (TianChi: holding ``<split>/`` and ``<split>_annotation.json``;
            RSNA 2024: the Kaggle download).
        splits: TianChi split names read and pooled before folding (used when ``reader`` is None).
        reader: what reads ``root`` into sample records (``data.reader``, e.g.
            ``{_target_: spinectx.data.rsna.RSNAReader, view: spinal}``); None = TianChi ``splits``.
        view: the view of a multi-view dataset (RSNA: ``spinal``, ``foraminal``, ``subarticular``);
            the configs hand it to the reader (``reader.view: ${data.view}``) and pick the
            landmark set with it.
        landmarks: landmark-set config (``conf/data/landmarks/*.yaml``).
        image_size: side of the square network input, pixels.
        batch_size, num_workers: loader settings (validation uses ``val_batch_size`` or
            ``batch_size``).
        num_rep: passes over the training studies per epoch.
        num_folds, fold: study-level k-fold split; fold ``fold`` is validation. All samples of a
            study go to the same fold; folds are stratified when the reader gives strata (RSNA:
            each study's worst severity), so every view of a study is held out together.
        fraction: share of the training folds used (nested across fractions).
        seed: seeds folds and fractions.
        cache_dir: decoded-frame cache (``None``: decode every time).
        augment: keyword arguments of :class:`SpineTransform` for training, plus ``neighbour_p``.
        synthetic: ``{studies, seed, workers, format}`` to generate the dataset into ``root`` on
            first use (format ``tianchi`` or ``rsna2024``).
        slices: 2.5-D input, the frame and its neighbours as channels (odd; 1 = the paper's
            single slice; see :class:`~spinectx.data.dataset.SpineDataset`).
        monitor: how checkpoints are selected for this dataset, ``{metric, mode, name}`` (TianChi:
            ``val/Score`` max; RSNA: the weighted log loss, min); read by the callbacks config.
        metrics: the dataset's metrics beyond the table metric (e.g. ``{rsna: {any_severe:
            true}}``), handed to the model.
        train_size_schedule: progressive resizing, ``{epoch: size}``: training images are
            ``size`` from that epoch on (e.g. ``{0: 192, 3: 288}``: cheap low-resolution epochs
            learn the coarse layout first). Validation always uses ``image_size``. Needs the
            trainer's ``reload_dataloaders_every_n_epochs=1``.
        sampler: how training samples are drawn, ``{kind: none | class_balanced, power, seed}``
            (:mod:`spinectx.data.sampling`): ``none`` shuffles each of the ``num_rep`` passes;
            ``class_balanced`` draws ``num_rep`` × (training samples) with replacement, weighted by
            the rarest class each sample carries (inverse training frequency per group, to the
            ``power``), seeded by ``sampler.seed`` (default: ``seed``) and the epoch (the seed's
            oversampling, SPEC §7).

    Raises:
        ConfigError: a bad setting (the message names it, e.g. ``data.sampler.kind``).
    """

    def __init__(
        self,
        root: str,
        splits: Sequence[str],
        landmarks: Mapping,
        image_size: int = 256,
        batch_size: int = 16,
        num_workers: int = 2,
        num_rep: int = 1,
        num_folds: int = 4,
        fold: int = 0,
        fraction: float = 1.0,
        seed: int = 0,
        cache_dir: str | None = None,
        augment: Mapping | None = None,
        val_batch_size: int | None = None,
        synthetic: Mapping | None = None,
        pin_memory: bool = False,
        train_size_schedule: Mapping[int, int] | None = None,
        reader=None,
        view: str | None = None,
        slices: int = 1,
        monitor: Mapping | None = None,
        metrics: Mapping | None = None,
        sampler: Mapping | None = None,
    ):
        super().__init__()
        # settings come from the command line (data.*): bad values are a ConfigError before any work
        self.root = str(root)
        if isinstance(reader, Mapping):  # a config not instantiated by Hydra (e.g. built in Python)
            from hydra.utils import instantiate

            reader = instantiate(reader)
        self.reader = reader if reader is not None else TianChiReader(splits)
        self.view = view if view is not None else getattr(self.reader, "view", None)
        if view is not None and getattr(self.reader, "view", view) != view:
            raise ConfigError(f"data.view={view!r} but data.reader.view={self.reader.view!r}: set data.view only")
        self.splits = list(getattr(self.reader, "splits", []))
        self.landmarks = LandmarkSet.from_config(landmarks)
        self.slices = config_int("data.slices", slices, minimum=1)
        if self.slices % 2 == 0:
            raise ConfigError(f"data.slices must be odd (the frame and as many neighbours on each side), got {slices}")
        self.monitor = dict(monitor or {"metric": "val/Score", "mode": "max", "name": "score"})
        self.metrics = dict(metrics or {})
        self.image_size = config_int("data.image_size", image_size, minimum=1)
        self.batch_size = config_int("data.batch_size", batch_size, minimum=1)
        self.val_batch_size = config_int("data.val_batch_size", val_batch_size or batch_size, minimum=1)
        self.num_workers = config_int("data.num_workers", num_workers, minimum=0)
        self.num_rep = config_int("data.num_rep", num_rep, minimum=1)
        self.num_folds, self.fold, self.fraction = check_folds(num_folds, fold, fraction)
        self.seed = config_int("data.seed", seed)
        self.cache = FrameCache(cache_dir)
        self.augment = dict(augment or {})
        self.synthetic = dict(synthetic) if synthetic else None
        self.pin_memory = bool(pin_memory)
        self.train_size_schedule = {int(k): int(v) for k, v in (train_size_schedule or {}).items()}
        self.sampler = check_sampler(sampler, self.seed)
        self._train_sampler = None  # built on the first train_dataloader() call (fit start), then kept
        self.index: DatasetIndex | None = None
        self.train_set: SpineDataset | None = None
        self.val_set: SpineDataset | None = None

    def prepare_data(self) -> None:
        if self.synthetic:
            ensure_synthetic(
                self.root,
                self.splits[0] if self.splits else "lumbar_train",
                int(self.synthetic.get("studies", 100)),
                int(self.synthetic.get("seed", 0)),
                int(self.synthetic.get("workers", 1)),
                str(self.synthetic.get("format", "tianchi")),
            )

    def setup(self, stage: str | None = None) -> None:
        if self.index is not None:
            return
        if self.synthetic:  # prepare_data runs on one rank only; make sure the data is there
            self.prepare_data()
        self.index = self.reader.index(self.root, self.landmarks)
        if self.index.problems:
            log.warning("%d data problems (run spinectx-data for the full list); first: %s", len(self.index.problems), self.index.problems[0])
        by_study: dict[str, list] = {}
        for r in self.index.records:  # a study may give several samples (RSNA sides, levels)
            by_study.setdefault(r.study_uid, []).append(r)
        if len(by_study) < self.num_folds:
            raise DataError(self.root, f"{len(by_study)} usable studies cannot fill {self.num_folds} folds: "
                                       f"{self.index.why_too_few()}")
        # folds are dealt over every study the reader stratified (RSNA: all studies of train.csv), not
        # only those giving samples to this view, so that the three views of a study share its fold
        # and a cross-validated submission never predicts a study one of its views trained on
        candidates = sorted(set(by_study) | set(self.index.strata or ()))
        train_uids, val_uids = split_studies(candidates, self.num_folds, self.fold, self.fraction, self.seed,
                                             strata=self.index.strata or None)
        train_uids = [u for u in train_uids if u in by_study]
        val_uids = [u for u in val_uids if u in by_study]
        if not train_uids or not val_uids:
            raise DataError(self.root, f"fold {self.fold} of {self.num_folds} leaves {len(train_uids)} training and "
                                       f"{len(val_uids)} held-out studies with samples; use fewer folds or more studies")
        self.train_set = self._dataset([r for u in train_uids for r in by_study[u]], self._train_transform(self.train_size(0)),
                                       num_rep=self.num_rep, neighbour_p=float(self.augment.get("neighbour_p", 0.0)))
        self.val_set = self._dataset([r for u in val_uids for r in by_study[u]], self._eval_transform())
        log.info(
            "fold %d/%d: %d training studies (%d samples, fraction %.2f) × %d passes, %d validation studies (%d samples)",
            self.fold, self.num_folds, len(train_uids), len(self.train_set.records), self.fraction, self.num_rep,
            len(val_uids), len(self.val_set.records),
        )

    def _dataset(self, records: list, transform, **kwargs) -> SpineDataset:
        return SpineDataset(records, self.landmarks, transform, self.cache, slices=self.slices, **kwargs)

    def _eval_transform(self) -> SpineTransform:
        return SpineTransform(self.image_size, train=False)

    def _train_transform(self, size: int) -> SpineTransform:
        aug = {k: v for k, v in self.augment.items() if k != "neighbour_p"}
        return SpineTransform(size, train=True, flip_permutation=self.landmarks.flip_permutation, **aug)

    def train_size(self, epoch: int) -> int:
        """Training image size at ``epoch`` (the schedule's latest entry ≤ epoch, else image_size)."""
        started = [e for e in self.train_size_schedule if e <= epoch]
        return self.train_size_schedule[max(started)] if started else self.image_size

    def _loader(self, dataset: SpineDataset, batch_size: int, shuffle: bool, sampler=None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            drop_last=shuffle and len(dataset) > batch_size,
        )

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup() first"
        if len(set(self.train_size_schedule.values()) | {self.image_size}) > 1:
            trainer = self.trainer
            if trainer is not None and trainer.reload_dataloaders_every_n_epochs != 1:
                raise ValueError("data.train_size_schedule needs trainer.reload_dataloaders_every_n_epochs=1")
            epoch = trainer.current_epoch if trainer is not None else 0
            size = self.train_size(epoch)
            if self.train_set.transform.size != (size, size):
                log.info("training image size %d from epoch %d", size, epoch)
                self.train_set.transform = self._train_transform(size)
        return self._loader(self.train_set, self.batch_size, shuffle=True, sampler=self.train_sampler())

    def train_sampler(self):
        """The training sampler of ``data.sampler`` (None for ``kind: none``: the loader shuffles),
        built once (its class frequencies logged) and kept across loader reloads.

        Under DDP, Lightning (2.x, ``Trainer(use_distributed_sampler=True)``, the default) wraps a
        custom sampler in its ``DistributedSamplerWrapper``, which iterates the sampler on every
        rank and gives each rank its share of the list, forwarding ``set_epoch``
        (lightning.pytorch.trainer.connectors.data_connector._get_distributed_sampler, checked
        for Lightning 2.6): every rank builds the same weights and seeds its draws with
        ``sampler.seed`` and the epoch, so the ranks share one list and split it."""
        assert self.train_set is not None, "call setup() first"
        if self.sampler["kind"] != "none" and self._train_sampler is None:
            from spinectx.data.dataset import record_targets

            tags = [record_targets(r, self.landmarks)[1] for r in self.train_set.records]
            self._train_sampler = build_sampler(self.sampler, tags, self.landmarks, len(self.train_set))
        return self._train_sampler

    def val_dataloader(self) -> DataLoader:
        """Held-out fold. Under DDP each study is validated exactly once (no padding with
        repeated samples), so the metric equals the single-process one."""
        assert self.val_set is not None, "call setup() first"
        loader = self._loader(self.val_set, self.val_batch_size, shuffle=False)
        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
            from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

            sampler = UnrepeatedDistributedSampler(self.val_set, shuffle=False)
            loader = DataLoader(self.val_set, batch_size=self.val_batch_size, sampler=sampler, num_workers=self.num_workers,
                                pin_memory=self.pin_memory, persistent_workers=self.num_workers > 0)
        return loader

    def all_studies(self) -> SpineDataset:
        """Every usable study of ``splits`` with the evaluation transform (for ``spinectx-eval all_studies=true``)."""
        if self.index is None:
            self.setup("validate")
        return self._dataset(list(self.index.records), self._eval_transform())
