"""Shared fixtures: offline, quiet environment and a small synthetic dataset."""

from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pytest

from spinectx.data.landmarks import LandmarkSet

TIANCHI_LANDMARKS = {
    "groups": {
        "vertebra": {"identifications": ["L1", "L2", "L3", "L4", "L5"], "classes": ["v1", "v2"], "normal": "v1", "title": "Vertebra"},
        "disc": {
            "identifications": ["T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"],
            "classes": ["v1", "v2", "v3", "v4", "v5"],
            "normal": "v1",
            "title": "Disc",
            "flags": ["v5"],
        },
    }
}


@pytest.fixture(scope="session")
def landmarks() -> LandmarkSet:
    return LandmarkSet.from_config(TIANCHI_LANDMARKS)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """12 synthetic studies in the TianChi layout (split ``lumbar_train``), generated once."""
    from spinectx.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, studies=12, seed=3, split="lumbar_train")
    return root


RSNA_SEED, RSNA_STUDIES = 3, 9  # seed 3, 9 studies: every quirk of the generator once (docs/synthetic.md)


@pytest.fixture(scope="session")
def synthetic_rsna_root(tmp_path_factory):
    """9 synthetic studies in the RSNA 2024 layout, one per quirk, generated once."""
    from spinectx.data.synthetic import generate_rsna_dataset

    return generate_rsna_dataset(tmp_path_factory.mktemp("rsna_synthetic") / "ds", studies=RSNA_STUDIES, seed=RSNA_SEED)
