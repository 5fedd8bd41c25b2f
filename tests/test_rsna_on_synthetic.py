"""The RSNA 2024 reader and training on generated studies (``spinectx-synth format=rsna2024``, 9
studies, one per quirk of SPEC §6 that the generator writes): every quirk read as the issue asks,
each view's samples, slice order from geometry, 2.5-D loading of every sample (RLE files included),
and a short training run per view through the Hydra config."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import torch
from omegaconf import OmegaConf

from spinectx.cli import CONF_DIR
from spinectx.data import rsna
from spinectx.data.cache import FrameCache
from spinectx.data.dataset import SpineDataset
from spinectx.data.landmarks import LandmarkSet
from spinectx.data.synthetic import study_quirk
from spinectx.data.transforms import SpineTransform
from tests.conftest import RSNA_SEED, RSNA_STUDIES
from tests.test_train import make_cfg

VIEW_SERIES = {"spinal": "Sagittal T2/STIR", "foraminal": "Sagittal T1", "subarticular": "Axial T2"}


def landmarks(view: str) -> LandmarkSet:
    cfg = OmegaConf.load(Path(CONF_DIR) / "data" / "landmarks" / f"rsna2024_{view}.yaml")
    return LandmarkSet.from_config(OmegaConf.to_container(cfg, resolve=True))


def quirk_study(root: Path, quirk: str) -> str:
    """study_id of the generated study that carries ``quirk``."""
    train = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    return train.study_id.iloc[next(k for k in range(RSNA_STUDIES) if study_quirk(RSNA_SEED, k) == quirk)]


def series_on_disk(root: Path) -> dict[str, dict[str, list[str]]]:
    """{study_id: {series description: [series_id on disk]}} in train_series_descriptions.csv order."""
    frame = pd.read_csv(root / "train_series_descriptions.csv", dtype=str)
    out: dict[str, dict[str, list[str]]] = {}
    for row in frame.itertuples():
        if (root / "train_images" / row.study_id / row.series_id).is_dir():
            out.setdefault(row.study_id, {}).setdefault(row.series_description, []).append(row.series_id)
    return out


@lru_cache(maxsize=None)
def _headers(series_dir: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(series_dir.glob("*.dcm"))]


def geometric_slice_index(path: Path) -> int:
    """0-based index of ``path`` among the files of its series with its orientation, sorted by
    ascending dot(ImagePositionPatient, row direction × column direction) — the issue's definition."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    iop = np.array(ds.ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    same = [h for h in _headers(path.parent) if np.allclose(np.array(h.ImageOrientationPatient, dtype=float), iop, atol=1e-4)]
    positions = sorted(float(np.dot(np.array(h.ImagePositionPatient, dtype=float), normal)) for h in same)
    return positions.index(float(np.dot(np.array(ds.ImagePositionPatient, dtype=float), normal)))


@pytest.fixture(scope="module")
def report(synthetic_rsna_root) -> dict:
    return rsna.report(synthetic_rsna_root)


@pytest.fixture(scope="module")
def indexes(synthetic_rsna_root) -> dict:
    return {view: rsna.build_view_index(synthetic_rsna_root, view, landmarks(view)) for view in rsna.VIEWS}


def by_id(report: dict, study_id: str) -> dict:
    return next(s for s in report["studies"] if s["study_id"] == study_id)


def test_every_point_is_found_by_instance_number_and_ordered_by_geometry(synthetic_rsna_root, report):
    root = synthetic_rsna_root
    resolved = 0
    for study in report["studies"]:
        for p in study["points"]:
            if p["file"] is None:
                continue
            path = root / p["file"]
            assert int(pydicom.dcmread(path, stop_before_pixels=True).InstanceNumber) == p["instance_number"]
            assert p["slice_index"] == geometric_slice_index(path), p
            resolved += 1
    assert resolved == report["totals"]["points"] - report["totals"]["points_unresolved"] > 150


def test_stacks_are_in_geometric_order_whatever_the_instance_numbers(synthetic_rsna_root, indexes):
    root = synthetic_rsna_root
    numbers_along = {}
    for index in indexes.values():
        for r in index.records:
            paths = [Path(ref.path) for ref in r.slices]
            assert [geometric_slice_index(p) for p in paths] == list(range(len(paths))), r.sample_id
            numbers_along[(r.study_uid, paths[0].parent.name)] = [int(p.stem) for p in paths]
    # the numbering quirks are really exercised: offsets with gaps, and a series numbered against
    # the spatial order, both read in slice order
    offset = [n for (study, _), n in numbers_along.items() if study == quirk_study(root, "instance_offset")]
    assert offset and all(n[0] > 1 and n[-1] - n[0] + 1 > len(n) for n in offset)
    reversed_ = [n for (study, _), n in numbers_along.items() if study == quirk_study(root, "instance_reversed")]
    assert any(n == sorted(n, reverse=True) for n in reversed_)
    assert all(n == sorted(n) for (study, _), n in numbers_along.items() if study != quirk_study(root, "instance_reversed"))


def test_each_quirk_is_reported_with_its_file_and_never_crashes(synthetic_rsna_root, report):
    root = synthetic_rsna_root
    totals = report["totals"]
    assert (totals["studies"], totals["studies_with_images"], totals["studies_with_labels"]) == (9, 9, 8)

    def problems(quirk):
        return by_id(report, quirk_study(root, quirk))["problems"]

    assert any("holds 2 stacks" in p for p in problems("axial_two_stacks"))
    missing = [p for p in problems("missing_series") if "listed but missing on disk" in p]
    assert missing and all(str(root / "train_images") in p for p in missing)
    gone = by_id(report, quirk_study(root, "missing_series"))["points"]
    assert sum(p["file"] is None for p in gone) >= 5 and totals["points_unresolved"] == sum(p["file"] is None for p in gone)
    assert any("no severity at all (no labels)" in p for p in problems("blank_all"))
    blank = [p for p in by_id(report, quirk_study(root, "blank_some"))["points"] if p["severity"] is None]
    assert 1 <= len(blank) <= 3 and all(p["file"] for p in blank)  # blank stays blank; its point is kept
    assert totals["labels"]["blank"] == 25 + len(blank)
    kinds = totals["problems_by_kind"]
    assert kinds["series missing on disk"] >= 1 and kinds["study without labels"] == 1 and kinds["series split into stacks"] >= 1
    assert not kinds.get("other") and not kinds.get("instance not found") and not kinds.get("point outside its frame")


def test_views_give_the_expected_samples(synthetic_rsna_root, indexes):
    root = synthetic_rsna_root
    on_disk = series_on_disk(root)
    labelled = [s for s in pd.read_csv(root / "train.csv", dtype=str).study_id if s != quirk_study(root, "blank_all")]
    per_study = {"spinal": 1, "foraminal": 2, "subarticular": 5}
    for view, index in indexes.items():
        expected = sum(per_study[view] for s in labelled if on_disk.get(s, {}).get(VIEW_SERIES[view]))
        assert len(index.records) == expected, view
        assert len({r.sample_id for r in index.records}) == expected
        for r in index.records:  # the generator places every labelled point on (or through) the frame
            assert np.isfinite(r.keypoints).all(), r.sample_id
            assert 0 <= r.slice_index < len(r.slices)
    spinal = {r.sample_id: r for r in indexes["spinal"].records}
    r = spinal[quirk_study(root, "spinal_two_slices")]
    slices = r.meta["point_slices"]
    assert len(set(slices)) == 2 and slices.count(r.slice_index) == 3  # the frame holds most points

    sub = {r.sample_id: r for r in indexes["subarticular"].records}
    study = quirk_study(root, "two_axial_series")
    first, second = on_disk[study]["Axial T2"]
    assert [sub[f"{study}_{lv}"].meta["series_id"] for lv in ("l1_l2", "l3_l4", "l4_l5", "l5_s1")] == [first, first, second, second]
    study = quirk_study(root, "axial_two_stacks")
    frames = {tuple(sub[f"{study}_{lv}"].slices) for lv in ("l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1")}
    assert len(frames) == 2  # each level's frame comes from the stack through it

    blank_study = quirk_study(root, "blank_some")
    severities = {**{r.meta["rows"][j]: r.tags[j] for v in indexes.values() for r in v.records
                     if r.study_uid == blank_study for j in range(len(r.tags))}}
    row = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False).set_index("study_id").loc[blank_study]
    blank_rows = {f"{blank_study}_{column}" for column, value in row.items() if value == ""}
    assert blank_rows and all(severities[r] == () for r in blank_rows)  # unlabelled: masked, never guessed
    assert all(severities[r] != () for r in severities if r not in blank_rows)


@pytest.mark.parametrize("view", rsna.VIEWS)
def test_every_sample_loads_as_three_aligned_channels(synthetic_rsna_root, indexes, view):
    lm = landmarks(view)
    records = indexes[view].records
    dataset = SpineDataset(records, lm, SpineTransform(48, train=False), FrameCache(None), slices=3)
    for i in range(len(records)):  # RLE Lossless files and multi-stack series included
        sample = dataset[i]
        assert sample["image"].shape == (3, 48, 48) and bool(sample["image"].isfinite().all())
        assert float(sample["image"].std()) > 0


def test_prediction_input_is_the_validation_input(indexes):
    from spinectx.inference import stack_input

    for view, index in indexes.items():
        lm = landmarks(view)
        for r in index.records[:4] + [rec for rec in index.records if rec.slice_index in (0, len(rec.slices) - 1)][:2]:
            for channels in (1, 3):
                expected = SpineDataset([r], lm, SpineTransform(48, train=False), FrameCache(None), slices=channels)[0]["image"]
                got, shape, notes = stack_input(r.slices, r.slice_index, 48, channels)
                assert got.shape == (channels, 48, 48) and shape == tuple(r.shape) and not notes
                torch.testing.assert_close(got, expected.float())
    with pytest.raises(ValueError, match="odd"):
        stack_input(r.slices, r.slice_index, 48, 2)
    with pytest.raises(ValueError, match="outside"):
        stack_input(r.slices, len(r.slices), 48, 3)


@pytest.mark.parametrize("view", rsna.VIEWS)
def test_fast_dev_run_per_view(tmp_path, synthetic_rsna_root, view):
    from spinectx.cli.train import train

    cfg = make_cfg(tmp_path, synthetic_rsna_root, ["data=rsna2024", f"data.view={view}", "data.num_folds=3",
                                                   "+trainer.fast_dev_run=true", "evaluate=false"])
    assert cfg.data.slices == 3 and cfg.model.class_head == "multiclass"
    assert cfg.callbacks.model_checkpoint.monitor == "val/logloss" and cfg.callbacks.model_checkpoint.mode == "min"
    result = train(cfg)
    assert result["complexity"]["train_input_size"] == 64


def test_short_fit_on_rsna_records_the_competition_metric(tmp_path, synthetic_rsna_root):
    from spinectx.cli.train import train

    cfg = make_cfg(tmp_path, synthetic_rsna_root, ["data=rsna2024", "data.view=spinal", "data.num_folds=3",
                                                   "model=simplebaseline", "trainer.max_epochs=1",
                                                   "+trainer.limit_train_batches=2"])
    train(cfg)
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert metrics["monitor"] == "val/logloss"
    evaluation = metrics["evaluation"]
    for key in ("logloss", "any_severe", "rsna_score", "hit_rate", "prior_logloss", "prior_rsna_score", "prior_any_severe"):
        assert key in evaluation, key
    assert 0 < evaluation["prior_logloss"] < 5 and 0 <= evaluation["hit_rate"] <= 1
    assert (Path(cfg.paths.output_dir) / "predictions.png").is_file()

    # the checkpoint keeps the training class prior (what a study-level prediction falls back to)
    import hydra

    from spinectx.data.dataset import class_prior
    from spinectx.inference import load_module

    module = load_module(evaluation["checkpoint"], "cpu")
    assert module.hparams.input_slices == 3 and module.hparams.input_size == 64  # prediction prepares input as training
    stored = np.asarray(module.class_prior)
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    datamodule.setup("fit")
    expected = class_prior(datamodule.train_set.records, datamodule.landmarks)
    assert stored.shape == (5, 3) and np.allclose(stored.sum(-1), 1) and (stored > 0).all()
    np.testing.assert_allclose(stored, expected)
    counts = sum(np.array([[t == (c,) for c in ("normal_mild", "moderate", "severe")] for t in r.tags], dtype=float)
                 for r in datamodule.train_set.records)
    np.testing.assert_allclose(stored, (counts + 1) / (counts + 1).sum(-1, keepdims=True))  # Laplace-smoothed counts


def _private_copy(root: Path, out: Path) -> Path:
    """A copy of the dataset with the DICOM files hard-linked (edit a file only after unlinking it)."""
    import os
    import shutil

    shutil.copytree(root, out, copy_function=os.link)
    return out


def _rewrite(path: Path, data: bytes) -> None:
    path.unlink()  # break the hard link: the shared dataset stays as it was
    path.write_bytes(data)


def test_edited_copy_reports_each_fault_and_the_view_samples(tmp_path, synthetic_rsna_root):
    root = _private_copy(synthetic_rsna_root, tmp_path / "ds")
    # a study with severities but no coordinate row
    gone = quirk_study(root, "rle")
    coords = (root / "train_label_coordinates.csv").read_text().splitlines(keepends=True)
    _rewrite(root / "train_label_coordinates.csv", "".join(l for l in coords if not l.startswith(f"{gone},")).encode())
    # a series listed twice with the same description
    series = (root / "train_series_descriptions.csv").read_text().splitlines(keepends=True)
    _rewrite(root / "train_series_descriptions.csv", "".join(series + [series[1]]).encode())
    # the spinal frame of another study cut short (header intact)
    cut = quirk_study(root, "instance_offset")
    frame = next(p["file"] for p in by_id(rsna.report(synthetic_rsna_root), cut)["points"]
                 if p["condition"] == "Spinal Canal Stenosis")
    data = (root / frame).read_bytes()
    _rewrite(root / frame, data[:-5000])

    plain = rsna.report(root)
    assert any("has severities in train.csv but no coordinate row" in p for p in by_id(plain, gone)["problems"])
    assert any("repeated (same description)" in p and "line" in p for p in plain["problems"])
    assert "view" not in plain["totals"]  # headers only: the cut file is not seen without a view

    spinal = rsna.report(root, "spinal", landmarks("spinal"))
    assert any(f"{frame}" in p and "does not decode" in p for p in by_id(spinal, cut)["problems"])
    labelled_with_t2 = 6  # 9 studies − no labels − no coordinates − the cut frame; the missing series is T1 or axial or T2
    assert spinal["totals"]["samples"] + spinal["totals"]["samples_skipped"] >= labelled_with_t2
    assert spinal["totals"]["samples_skipped"] >= 1
    kinds = spinal["totals"]["problems_by_kind"]
    assert kinds["study without coordinates"] == 1 and kinds["duplicated series row"] == 1 and kinds["undecodable frame"] == 1
    assert not kinds.get("other"), [p for s in spinal["studies"] for p in s["problems"]]
    # training reads the same samples: the cut frame's sample is skipped at index time, never in a worker
    index = rsna.build_view_index(root, "spinal", landmarks("spinal"))
    assert cut not in {r.sample_id for r in index.records} and len(index.records) == spinal["totals"]["samples"]

    # the subarticular view's sample-level problems reach the report: the two-series study's labels
    # of L4/L5 and L5/S1 lie on the second series, so nothing is carried; every sample is placed
    sub = rsna.report(root, "subarticular", landmarks("subarticular"))
    assert sub["totals"]["view"] == "subarticular" and sub["totals"]["samples"] == len(
        rsna.build_view_index(root, "subarticular", landmarks("subarticular")).records)
    with pytest.raises(Exception, match="the landmark set has"):
        rsna.report(root, "spinal", landmarks("subarticular"))
