"""SpineDataModule: folds by study, fractions, batches of the documented shape."""

import math

import numpy as np
import pytest
import torch

from spinectx.data.datamodule import SpineDataModule
from tests.conftest import TIANCHI_LANDMARKS


def make_dm(root, tmp_path, **kw):
    args = dict(root=str(root), splits=["lumbar_train"], landmarks=TIANCHI_LANDMARKS, image_size=64, batch_size=4,
                num_workers=0, num_rep=2, num_folds=4, fold=0, cache_dir=str(tmp_path / "cache"))
    args.update(kw)
    dm = SpineDataModule(**args)
    dm.setup("fit")
    return dm


def test_batches_have_documented_keys_and_shapes(synthetic_root, tmp_path):
    dm = make_dm(synthetic_root, tmp_path)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 1, 64, 64) and batch["image"].dtype == torch.float32
    assert batch["keypoints"].shape == (4, 11, 2)
    assert batch["visible"].shape == batch["annotated"].shape == batch["labels"].shape == (4, 11)
    assert batch["tags"].shape == (4, 11, 5)
    assert batch["spacing"].shape == (4, 2) and (batch["spacing"] > 0).all()
    assert len(batch["study_uid"]) == 4
    assert set(torch.unique(batch["labels"][torch.isfinite(batch["labels"])]).tolist()) <= {0.0, 1.0}


def test_folds_split_by_study_and_num_rep(synthetic_root, tmp_path):
    seen_val = set()
    for fold in range(4):
        dm = make_dm(synthetic_root, tmp_path, fold=fold)
        train = {r.study_uid for r in dm.train_set.records}
        val = {r.study_uid for r in dm.val_set.records}
        assert not train & val and len(train | val) == 12
        assert len(dm.train_set) == 2 * len(train)
        seen_val |= val
    assert len(seen_val) == 12


def test_fraction_is_nested(synthetic_root, tmp_path):
    small = {r.study_uid for r in make_dm(synthetic_root, tmp_path, fraction=0.25).train_set.records}
    large = {r.study_uid for r in make_dm(synthetic_root, tmp_path, fraction=0.75).train_set.records}
    assert len(small) == math.ceil(0.25 * 9) and small < large


def test_validation_keypoints_scale_with_resize(synthetic_root, tmp_path):
    dm = make_dm(synthetic_root, tmp_path)
    rec = dm.val_set.records[0]
    sample = dm.val_set[0]
    rows, cols = rec.shape
    # resize maps pixel centres: x' = (x + 0.5) * S / W - 0.5 (or equivalent); within half a pixel of x * S / W
    expected = rec.keypoints * np.array([64 / cols, 64 / rows], dtype=np.float32)
    ok = np.isfinite(rec.keypoints).all(-1)
    assert np.allclose(sample["keypoints"].numpy()[ok], expected[ok], atol=0.6)
    assert sample["spacing"].numpy() == pytest.approx(np.array(rec.pixel_spacing) * np.array([rows / 64, cols / 64]), rel=1e-5)


def test_synthetic_generated_on_first_use(tmp_path):
    root = tmp_path / "syn"
    dm = SpineDataModule(root=str(root), splits=["lumbar_train"], landmarks=TIANCHI_LANDMARKS, image_size=64,
                         batch_size=2, num_workers=0, num_folds=2, cache_dir=None,
                         synthetic={"studies": 4, "seed": 1})
    dm.prepare_data()
    assert (root / "lumbar_train_annotation.json").is_file()
    dm.setup("fit")
    assert len(dm.train_set.records) + len(dm.val_set.records) == 4


def test_progressive_resizing_schedule(synthetic_root, tmp_path):
    dm = make_dm(synthetic_root, tmp_path, train_size_schedule={0: 32, 2: 64})
    assert [dm.train_size(e) for e in range(4)] == [32, 32, 64, 64]
    assert next(iter(dm.train_dataloader()))["image"].shape[-2:] == (32, 32)  # no trainer: epoch 0
    assert dm.val_set[0]["image"].shape[-2:] == (64, 64)  # validation stays at image_size

    class FakeTrainer:
        current_epoch = 2
        reload_dataloaders_every_n_epochs = 1

    dm.trainer = FakeTrainer()
    assert next(iter(dm.train_dataloader()))["image"].shape[-2:] == (64, 64)
    FakeTrainer.reload_dataloaders_every_n_epochs = 0
    with pytest.raises(ValueError, match="reload_dataloaders_every_n_epochs"):
        dm.train_dataloader()
