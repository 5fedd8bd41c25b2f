"""data.sampler: class-balanced oversampling of training samples (the seed's recipe, SPEC §7)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from torch.utils.data import RandomSampler

from spinectx.data.datamodule import SpineDataModule
from spinectx.data.errors import ConfigError
from spinectx.data.landmarks import LandmarkSet
from spinectx.data.sampling import (SeededWeightedSampler, build_sampler, check_sampler, class_balanced_weights,
                                    class_frequencies, group_class_counts)
from tests.conftest import TIANCHI_LANDMARKS

SEVERITY = LandmarkSet.from_config({"groups": {"spinal": {"identifications": ["L1/L2", "L2/L3"],
                                                          "classes": ["normal_mild", "moderate", "severe"],
                                                          "normal": "normal_mild"}}})


def severity_tags(levels: list[int | None]) -> np.ndarray:
    """[2, 3] multi-hot of two levels' severities (None: the level has no label)."""
    tags = np.zeros((2, 3), dtype=np.float32)
    for k, c in enumerate(levels):
        if c is not None:
            tags[k, c] = 1.0
    return tags


def skewed_set() -> list[np.ndarray]:
    """100 samples: 80 normal/normal, 16 with one moderate level, 4 with one severe level (per level:
    180 normal, 16 moderate, 4 severe of 200 labels)."""
    return [severity_tags([0, 0])] * 80 + [severity_tags([1, 0])] * 16 + [severity_tags([0, 2])] * 4


def drawn_share(indices, tags, cls: int) -> float:
    """Share of the drawn samples that carry class ``cls``."""
    carries = np.array([t[:, cls].any() for t in tags])
    return float(carries[np.asarray(indices)].mean())


def test_weights_follow_the_rarest_class_a_sample_carries():
    tags = skewed_set() + [severity_tags([None, None])]
    w = class_balanced_weights(tags, SEVERITY)
    # frequencies over the 200 labels: normal 180/200, moderate 16/200, severe 4/200
    assert w[0] == pytest.approx(200 / 180) and w[80] == pytest.approx(200 / 16) and w[96] == pytest.approx(200 / 4)
    assert w[-1] == pytest.approx(200 / 180)  # no label: a majority sample
    assert class_balanced_weights(tags, SEVERITY, power=0.5)[96] == pytest.approx((200 / 4) ** 0.5)
    assert (class_balanced_weights(tags, SEVERITY, power=0.0) == 1).all()
    # TianChi: per group (vertebra v1/v2, disc v1..v5 with the flag v5 a class of its own)
    lm = LandmarkSet.from_config(TIANCHI_LANDMARKS)
    common = np.zeros((11, 5), dtype=np.float32)
    common[:5, 0] = 1  # vertebrae v1
    common[5:, 0] = 1  # discs v1
    rare_vertebra = common.copy()
    rare_vertebra[0] = [0, 1, 0, 0, 0]
    rare_disc_flag = common.copy()
    rare_disc_flag[5] = [0, 1, 0, 0, 1]  # "v2,v5"
    tags = [common] * 8 + [rare_vertebra] + [rare_disc_flag]
    counts, tagged = group_class_counts(tags, lm)
    freq = class_frequencies(counts, tagged)  # vertebra: 50 labels, 1 v2; disc: 60 labels, 1 v2, 1 v5
    np.testing.assert_allclose(freq[0, :2], [49 / 50, 1 / 50])
    np.testing.assert_allclose(freq[1], [59 / 60, 1 / 60, 0, 0, 1 / 60])
    w = class_balanced_weights(tags, lm)
    np.testing.assert_allclose(w, [50 / 49] * 8 + [50.0, 60.0])  # common: max(vertebra 50/49, disc 60/59)


def test_balanced_draws_raise_the_rare_class_where_uniform_draws_do_not():
    tags = skewed_set()
    sampler = build_sampler(check_sampler({"kind": "class_balanced"}), tags, SEVERITY, num_samples=20000)
    drawn = list(sampler)
    assert len(drawn) == 20000 and 0 <= min(drawn) and max(drawn) < len(tags)
    # 4 % of the samples carry "severe": balanced over the 3 classes it is drawn about a third of the time
    assert drawn_share(drawn, tags, 2) > 0.25
    assert drawn_share(drawn, tags, 1) > 0.25
    uniform = SeededWeightedSampler(np.ones(len(tags)), 20000, seed=0)
    assert drawn_share(list(uniform), tags, 2) < 0.08  # the same bound fails a uniform draw
    # what the sampler says it draws (logged) is what it draws, per label
    counts, tagged = group_class_counts(tags, SEVERITY)
    expected = class_frequencies(counts, tagged, class_balanced_weights(tags, SEVERITY))[0]
    labels = np.concatenate([tags[i] for i in drawn]).sum(0) / (2 * len(drawn))
    np.testing.assert_allclose(labels, expected, atol=0.02)


def test_draws_are_seeded_by_seed_and_epoch():
    tags = skewed_set()
    cfg = check_sampler({"kind": "class_balanced", "seed": 5})

    def order(cfg, epoch=0):
        sampler = build_sampler(cfg, tags, SEVERITY, num_samples=300)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(cfg) == order(cfg)  # same seed, same epoch: same order
    assert order(cfg, 1) == order(cfg, 1) and order(cfg, 1) != order(cfg)
    assert order(check_sampler({"kind": "class_balanced", "seed": 6})) != order(cfg)
    sampler = build_sampler(cfg, tags, SEVERITY, num_samples=300)
    assert list(sampler) == list(sampler)  # without set_epoch every pass repeats (as DistributedSampler)


@pytest.mark.parametrize("cfg, key", [
    ({"kind": "balanced"}, "data.sampler.kind must be one of none, class_balanced, got 'balanced'"),
    ({"kind": "class_balanced", "power": -1}, "data.sampler.power"),
    ({"kind": "class_balanced", "power": "x"}, "data.sampler.power"),
    ({"kind": "class_balanced", "seed": 1.5}, "data.sampler.seed"),
    ({"kind": "none", "power": 1}, "key(s) ['power'] not taken by kind 'none'"),
    ("class_balanced", "data.sampler must be a mapping"),
])
def test_bad_sampler_settings_name_the_key(cfg, key):
    with pytest.raises(ConfigError) as err:
        check_sampler(cfg)
    assert key in str(err.value)


def test_datamodule_sampler(synthetic_root, tmp_path, caplog):
    args = dict(root=str(synthetic_root), splits=["lumbar_train"], landmarks=TIANCHI_LANDMARKS, image_size=64,
                batch_size=4, num_workers=0, num_rep=3, num_folds=4, fold=0, cache_dir=str(tmp_path / "cache"))
    plain = SpineDataModule(**args)
    plain.setup("fit")
    assert isinstance(plain.train_dataloader().sampler, RandomSampler) and plain.train_sampler() is None
    with pytest.raises(ConfigError, match="data.sampler.kind"):
        SpineDataModule(**args, sampler={"kind": "oversample"})
    dm = SpineDataModule(**args, sampler={"kind": "class_balanced", "seed": 3})
    dm.setup("fit")
    with caplog.at_level(logging.INFO, logger="spinectx.data.sampling"):
        loader = dm.train_dataloader()
        dm.train_dataloader()  # a reload keeps the sampler: logged once
    logged = [r.getMessage() for r in caplog.records if "class frequencies" in r.getMessage()]
    assert len(logged) == 1 and "vertebra: v1 " in logged[0] and "disc: v1 " in logged[0]
    assert logged[0].count("→") == 1 + 7  # the header, then 2 vertebra + 5 disc classes
    sampler = loader.sampler
    assert isinstance(sampler, SeededWeightedSampler) and sampler.seed == 3
    assert len(sampler) == len(dm.train_set) == 3 * len(dm.train_set.records)  # num_rep passes kept
    assert max(sampler) < len(dm.train_set.records)
    assert len(loader) == len(dm.train_set) // 4  # drop_last as before


def test_ddp_ranks_split_one_seeded_list():
    """Lightning wraps a custom sampler in DistributedSamplerWrapper under DDP: each rank builds its
    own sampler (same weights, same seed) and takes its share of the one list they all draw."""
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    tags = skewed_set()
    cfg = check_sampler({"kind": "class_balanced", "seed": 2})
    single = build_sampler(cfg, tags, SEVERITY, num_samples=200)
    single.set_epoch(4)
    shares = []
    for rank in range(2):
        wrapped = DistributedSamplerWrapper(build_sampler(cfg, tags, SEVERITY, num_samples=200), num_replicas=2,
                                            rank=rank, shuffle=False)
        wrapped.set_epoch(4)  # forwarded to our sampler
        shares.append(list(wrapped))
    assert len(shares[0]) == len(shares[1]) == 100
    assert sorted(shares[0] + shares[1]) == sorted(single)
