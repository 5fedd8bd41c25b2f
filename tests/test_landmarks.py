import math

import numpy as np
import pytest

from spinectx.data.landmarks import LandmarkSet
from tests.conftest import TIANCHI_LANDMARKS


def test_order_groups_and_round_trip(landmarks):
    assert landmarks.names[:5] == ("L1", "L2", "L3", "L4", "L5") and landmarks.names[5] == "T12-L1"
    assert landmarks.group_of == (0,) * 5 + (1,) * 6 and landmarks.max_classes == 5
    assert LandmarkSet.from_config(landmarks.to_config()).to_config() == landmarks.to_config()
    assert landmarks.to_config()["groups"]["disc"]["classes"] == TIANCHI_LANDMARKS["groups"]["disc"]["classes"]


def test_tags_parse_and_encode(landmarks):
    assert landmarks.parse_tags("L4-L5", "v3, v5") == ("v3", "v5")
    abnormal, hot = landmarks.encode_tags("L4-L5", ("v3", "v5"))
    assert abnormal == 1.0 and hot.tolist() == [0, 0, 1, 0, 1]
    assert landmarks.encode_tags("L1", ("v1",))[0] == 0.0
    assert math.isnan(landmarks.encode_tags("L1", ())[0])
    with pytest.raises(ValueError, match="unknown vertebra class"):
        landmarks.parse_tags("L1", "v3")


def test_another_dataset_fits_by_config_only():
    rsna = LandmarkSet.from_config({"groups": {"disc": {
        "identifications": ["L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1"],
        "classes": ["Normal/Mild", "Moderate", "Severe"], "normal": "Normal/Mild"}}})
    assert len(rsna) == 5 and rsna.groups[0].title == "Disc"
    assert rsna.encode_tags("L4/L5", ("Severe",))[0] == 1.0
    assert np.array_equal(rsna.encode_tags("L4/L5", ("Severe",))[1], np.array([0, 0, 1], np.float32))


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="normal class"):
        LandmarkSet.from_config({"groups": {"d": {"identifications": ["a"], "classes": ["x"], "normal": "y"}}})
    with pytest.raises(ValueError, match="more than one group"):
        LandmarkSet.from_config({"groups": {"a": {"identifications": ["p"], "classes": ["x"]},
                                            "b": {"identifications": ["p"], "classes": ["x"]}}})
