import pytest

from spinectx.data.folds import assign_folds, split_studies

UIDS = [f"1.2.3.{i}" for i in range(41)]


def test_folds_are_disjoint_cover_everything_and_balanced():
    vals = []
    for fold in range(4):
        train, val = split_studies(UIDS, 4, fold, seed=1)
        assert not set(train) & set(val)
        assert set(train) | set(val) == set(UIDS)
        vals.append(set(val))
    assert set().union(*vals) == set(UIDS) and sum(len(v) for v in vals) == len(UIDS)
    assert max(map(len, vals)) - min(map(len, vals)) <= 1


def test_split_is_deterministic_and_order_independent():
    a = split_studies(UIDS, 4, 2, 0.5, seed=3)
    b = split_studies(list(reversed(UIDS)), 4, 2, 0.5, seed=3)
    assert a == b
    assert split_studies(UIDS, 4, 2, seed=4) != split_studies(UIDS, 4, 2, seed=3)


def test_fractions_are_nested_and_sized():
    previous: set = set()
    full, val = split_studies(UIDS, 4, 0, 1.0, seed=0)
    for fraction in (0.1, 0.25, 0.5, 0.75, 1.0):
        train, val_f = split_studies(UIDS, 4, 0, fraction, seed=0)
        assert val_f == val  # validation never changes with the fraction
        assert previous <= set(train) <= set(full)
        assert len(train) == max(1, -(-int(round(fraction * 1000)) * len(full) // 1000))
        previous = set(train)


def test_bad_arguments():
    with pytest.raises(ValueError):
        split_studies(UIDS, 4, 4)
    with pytest.raises(ValueError):
        split_studies(UIDS, 4, 0, fraction=0)
    with pytest.raises(ValueError):
        assign_folds(UIDS[:3], 4, 0)
