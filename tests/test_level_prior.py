"""The level prior (issue 14 §0): P(abnormal) = training frequency of the identification, and its
group AUC beside the model's over the same points."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from spinectx.data.landmarks import LandmarkSet
from spinectx.metrics.level_prior import group_aucs, level_prior

LANDMARKS = LandmarkSet.from_config({"groups": {
    "vertebra": {"identifications": ["L1", "L2"], "classes": ["v1", "v2"], "normal": "v1", "title": "Vertebra"},
    "disc": {"identifications": ["L1-L2"], "classes": ["v1", "v2"], "normal": "v1", "title": "Disc"},
}})


def record(*tags):
    return SimpleNamespace(tags=[tuple(t) for t in tags])


def test_the_level_prior_is_the_laplace_smoothed_training_frequency():
    records = [record(["v2"], ["v1"], ["v1"]), record(["v2"], ["v2"], []), record([], ["v1"], ["v2"])]
    prior = level_prior(records, LANDMARKS)
    # L1: 2 abnormal of 2 tagged → 3/4; L2: 1 of 3 → 2/5; L1-L2: 1 of 2 → 2/4
    np.testing.assert_allclose(prior, [3 / 4, 2 / 5, 2 / 4])


def test_a_group_auc_of_the_level_prior_exceeds_one_half_when_levels_differ():
    # L1 mostly abnormal, L2 mostly normal: scoring by level alone ranks well
    labels = np.array([[1, 0, 1], [1, 0, 0], [0, 0, 1], [1, 1, 0]], dtype=float)
    usable = np.ones_like(labels, dtype=bool)
    prior = np.array([0.7, 0.2, 0.5])
    same = group_aucs(np.broadcast_to(prior, labels.shape).copy(), labels, usable, prior, LANDMARKS)
    vert = same["Vertebra"]
    # 4 positives (3 at L1, 1 at L2), 4 negatives (1 at L1, 3 at L2): pairs (pos, neg) won / tied
    wins, ties = 3 * 3, 3 * 1 + 1 * 3
    assert vert["level_prior_auc"] == pytest.approx((wins + 0.5 * ties) / 16)
    assert vert["model_auc"] == vert["level_prior_auc"] and vert["points"] == 8
    assert same["Disc"]["level_prior_auc"] == 0.5  # one identification: a constant score
    perfect = group_aucs(labels.copy(), labels, usable, prior, LANDMARKS)
    assert perfect["Vertebra"]["model_auc"] == 1.0
    # points left out (not located) are left out of both
    usable[:, 0] = False
    masked = group_aucs(labels.copy(), labels, usable, prior, LANDMARKS)
    assert masked["Vertebra"]["points"] == 4 and masked["Vertebra"]["level_prior_auc"] == 0.5  # L2 alone: constant
