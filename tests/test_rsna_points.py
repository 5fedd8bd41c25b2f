"""Where a study-level RSNA prediction looked: predictions.json → distances to the true points in
patient space (known values on a layout of known geometry), the overlay figure, spinectx-eval's
points mode and its clean errors."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from spinectx.data.errors import DataError
from spinectx.metrics.rsna_points import hit_rates, load_predictions, point_errors, read_coordinates
from tests.rsna_layout import axial_slice_of, level_row, write_rsna_case
from tests.test_bad_arguments import assert_clean_error, run_app

STUDY, OTHER = "1001", "1002"
T1, T2, AX = f"{STUDY}1", f"{STUDY}2", f"{STUDY}3"  # the layout's series ids: Sagittal T1, T2/STIR, Axial T2
FORAMEN_SPACING = (0.8, 0.5)  # (dy, dx) mm given to the left foramen's T1 slice (instance 2)


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> Path:
    """Two studies of the tiny layout (1 mm pixels, sagittal slices 4 mm apart); study 1001's left
    foraminal slice gets anisotropic pixels and its L5/S1 axial slice a file name that is not its
    InstanceNumber."""
    root = write_rsna_case(tmp_path_factory.mktemp("rsna_points"), {STUDY: set(), OTHER: set()})
    images = root / "train_images" / STUDY
    foramen = images / T1 / "2.dcm"
    ds = pydicom.dcmread(foramen)
    ds.PixelSpacing = list(FORAMEN_SPACING)
    ds.save_as(foramen)
    axial = images / AX / f"{axial_slice_of(4) + 1}.dcm"
    axial.rename(axial.with_name("renamed.dcm"))
    return root


def _point(root: Path, row: str, view: str, series: str, instance: int, x: float, y: float, name: str | None = None):
    study = row.split("_")[0]
    file = root / "train_images" / study / series / (name or f"{instance}.dcm")
    return {"row_id": row, "view": view, "series_id": series, "instance_number": instance, "file": str(file),
            "frame": 0, "x": x, "y": y}


def predictions(root: Path) -> dict:
    """Study 1001: rows on the true point (0 mm), shifted in-plane by known pixels, one sagittal
    slice off (4 mm), and on the renamed axial file; study 1002: one row on its true point."""
    s = STUDY
    points = [
        _point(root, f"{s}_spinal_canal_stenosis_l1_l2", "spinal", T2, 5, 32.0, level_row(0)),  # 0 mm
        _point(root, f"{s}_spinal_canal_stenosis_l2_l3", "spinal", T2, 5, 35.0, level_row(1) + 4),  # (3, 4) px → 5 mm
        _point(root, f"{s}_spinal_canal_stenosis_l3_l4", "spinal", T2, 6, 32.0, level_row(2)),  # next slice: 4 mm
        # x + 8 px × dx 0.5 → 4 mm; y + 10 px × dy 0.8 → 8 mm
        _point(root, f"{s}_left_neural_foraminal_narrowing_l1_l2", "foraminal", T1, 2, 28.0, level_row(0)),
        _point(root, f"{s}_left_neural_foraminal_narrowing_l4_l5", "foraminal", T1, 2, 20.0, level_row(3) + 10),
        _point(root, f"{s}_right_subarticular_stenosis_l5_s1", "subarticular", AX, axial_slice_of(4) + 1, 24.0, 30.0,
               name="renamed.dcm"),  # 0 mm, found by InstanceNumber
    ]
    other = [_point(root, f"{OTHER}_spinal_canal_stenosis_l4_l5", "spinal", f"{OTHER}2", 5, 32.0, level_row(3))]
    return {"input": str(root / "train_images"), "series": str(root / "train_series_descriptions.csv"),
            "checkpoints": {"spinal": "a.ckpt"}, "tta": True,
            "studies": [{"study_id": STUDY, "pixel_reads": 5, "problems": [], "points": points},
                        {"study_id": OTHER, "pixel_reads": 1, "problems": [], "points": other}]}


EXPECTED_MM = {
    "spinal_canal_stenosis_l1_l2": 0.0,
    "spinal_canal_stenosis_l2_l3": 5.0,
    "spinal_canal_stenosis_l3_l4": 4.0,
    "left_neural_foraminal_narrowing_l1_l2": 8 * FORAMEN_SPACING[1],
    "left_neural_foraminal_narrowing_l4_l5": 10 * FORAMEN_SPACING[0],
    "right_subarticular_stenosis_l5_s1": 0.0,
}


def test_point_errors_are_known_distances_in_patient_space(case):
    truth = read_coordinates(case / "train_label_coordinates.csv")
    truth = truth[truth.study_id != OTHER]  # study 1002 without truth: its row is left out
    errors = point_errors(predictions(case), truth, threshold_mm=6.0)
    assert list(errors.row_id) == [f"{STUDY}_{r}" for r in EXPECTED_MM]
    got = dict(zip(errors.row_id.str.removeprefix(f"{STUDY}_"), errors.distance_mm))
    assert got == pytest.approx(EXPECTED_MM, abs=1e-6)
    assert list(errors.hit) == [d <= 6.0 for d in EXPECTED_MM.values()]  # 8 mm (10 px × dy 0.8) misses
    assert list(errors.same_image) == [True, True, False, True, True, True]
    assert (errors.problem == "").all()
    row = errors.iloc[2]
    assert (row.true_series_id, row.true_instance_number, row.true_x, row.true_y) == (T2, 5, 32.0, level_row(2))
    assert errors.condition.iloc[3] == "left_neural_foraminal_narrowing" and errors.level.iloc[3] == "l1_l2"

    rates = hit_rates(errors)
    assert rates.loc["spinal", "points"] == 3 and rates.loc["spinal", "hit_rate"] == pytest.approx(1.0)
    assert rates.loc["foraminal", "hits"] == 1 and rates.loc["foraminal", "hit_rate"] == pytest.approx(0.5)
    assert rates.loc["all", "hit_rate"] == pytest.approx(5 / 6)
    assert rates.loc["spinal", "median_mm"] == pytest.approx(4.0)
    # a stricter threshold: only the exact points hit
    strict = point_errors(predictions(case), truth, threshold_mm=1.0)
    assert list(strict.hit) == [True, False, False, False, False, True]


def test_a_true_image_not_on_disk_leaves_the_row_unmeasured_with_its_reason(case):
    truth = read_coordinates(case / "train_label_coordinates.csv")
    spinal = (truth.study_id == STUDY) & (truth.condition == "Spinal Canal Stenosis") & (truth.level == "L1/L2")
    truth.loc[spinal, "instance_number"] = 77
    errors = point_errors(predictions(case), truth)
    row = errors.set_index("row_id").loc[f"{STUDY}_spinal_canal_stenosis_l1_l2"]
    assert math.isnan(row.distance_mm) and not row.hit and "InstanceNumber 77" in row.problem and T2 in row.problem
    rates = hit_rates(errors)
    assert rates.loc["spinal", "unmeasured"] == 1 and rates.loc["spinal", "points"] == 3  # study 1002's row counts too


def test_bad_predictions_files_are_refused_naming_the_file(case, tmp_path):
    with pytest.raises(DataError, match="predictions file not found"):
        load_predictions(tmp_path / "none.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"studies": [')
    with pytest.raises(DataError, match="malformed JSON at line 1"):
        load_predictions(broken)
    body = predictions(case)
    del body["studies"][0]["points"][1]["x"]
    body["studies"][0]["points"][2]["row_id"] = f"{STUDY}_spinal_l9"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(body))
    with pytest.raises(DataError) as err:
        load_predictions(bad)
    assert str(bad) in str(err.value) and "studies[0].points[1].x" in str(err.value) and "spinal_l9" in str(err.value)
    body = predictions(case)
    body["studies"][1]["points"][0]["file"] = str(tmp_path / "gone.dcm")
    with pytest.raises(DataError) as err:
        point_errors(body, read_coordinates(case / "train_label_coordinates.csv"))
    assert err.value.path == str(tmp_path / "gone.dcm") and "not found" in err.value.problem
    body = predictions(case)
    body["studies"][1]["points"][0]["row_id"] = f"{STUDY}_spinal_canal_stenosis_l4_l5"
    with pytest.raises(DataError, match="belongs to another study"):
        point_errors(body, read_coordinates(case / "train_label_coordinates.csv"))
    coords = tmp_path / "coords.csv"
    coords.write_text("study_id,series_id,instance_number,condition,level,x,y\n1,2,3,Spinal Canal Stenosis,L1/L2,a,4\n")
    with pytest.raises(DataError, match="line 2: instance_number, x and y must be numbers"):
        read_coordinates(coords)


def test_the_overlay_has_one_panel_per_image_with_labelled_points(case, tmp_path, monkeypatch):
    import matplotlib.image

    from spinectx import viz

    figures = []
    save = viz._save
    monkeypatch.setattr(viz, "_save", lambda plt, fig, path: (figures.append(fig), save(plt, fig, path))[1])
    truth = read_coordinates(case / "train_label_coordinates.csv")
    path = viz.draw_study_points(predictions(case), tmp_path / "points.png", studies=1, truth=truth)
    assert path == tmp_path / "points.png" and path.is_file()
    # study 1001 only: T2 instance 5, T2 instance 6, T1 instance 2, the axial slice = 4 panels
    axes = [ax for ax in figures[0].axes if ax.images]
    titles = [ax.get_title() for ax in axes]
    assert titles == [f"study {STUDY} · Sagittal T2/STIR · instance 5",
                      f"study {STUDY} · Sagittal T2/STIR · instance 6",
                      f"study {STUDY} · Sagittal T1 · instance 2",
                      f"study {STUDY} · Axial T2 · instance {axial_slice_of(4) + 1}"]
    red = [[t.get_text() for t in ax.texts if t.get_color() == "red"] for ax in axes]
    green = [[t.get_text() for t in ax.texts if t.get_color() == "lime"] for ax in axes]
    assert red == [["L1/L2", "L2/L3"], ["L3/L4"], ["L1/L2 L", "L4/L5 L"], ["L5/S1 R"]]
    # the true points of the same series and instance, every level (the L3/L4 truth lies on instance 5)
    assert green[0] == ["L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1"] and green[1] == []
    assert sorted(green[2]) == sorted(f"{lv} L" for lv in ("L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1"))
    assert "L5/S1 R" in green[3] and "L5/S1 L" in green[3]
    image = matplotlib.image.imread(path)
    assert image.shape[:2] == (round(4.4 * 110), round(4 * 4.2 * 110))  # one row of four panels
    assert viz.draw_study_points(predictions(case), tmp_path / "none.png", studies=0) is None
    assert not (tmp_path / "none.png").exists()


def test_spinectx_eval_points_mode_writes_the_overlay_and_the_errors(case, tmp_path, monkeypatch, capsys):
    """The console script's entry point in this process, no checkpoint given."""
    from spinectx.cli.eval import main

    pred = tmp_path / "predictions.json"
    pred.write_text(json.dumps(predictions(case)))
    coords = case / "train_label_coordinates.csv"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["spinectx-eval", f"points={pred}", f"coordinates={coords}",
                                      f"paths.root_dir={tmp_path}", "overlay_studies=2"])
    main()
    stdout = capsys.readouterr().out
    (run_dir,) = (tmp_path / "logs" / "eval" / "runs").iterdir()
    assert (run_dir / "points.png").stat().st_size > 0
    written = pd.read_csv(run_dir / "point_errors.csv", dtype={"study_id": str, "series_id": str,
                                                                "true_series_id": str}, keep_default_na=False)
    expected = point_errors(predictions(case), read_coordinates(coords))
    assert list(written.row_id) == list(expected.row_id)
    assert np.allclose(written.distance_mm.astype(float), expected.distance_mm)
    assert list(written.hit) == list(expected.hit) and written.hit.sum() == 6  # 1002's L4/L5 on its truth too
    assert "point hit rate" in stdout and "foraminal" in stdout and "0.500" in stdout


def test_spinectx_eval_points_mode_fails_cleanly(case, tmp_path, monkeypatch, capsys):
    from spinectx.cli.eval import main

    monkeypatch.chdir(tmp_path)
    code, err = run_app(main, f"points={tmp_path / 'none.json'}", f"paths.root_dir={tmp_path}",
                        monkeypatch=monkeypatch, capsys=capsys)
    assert_clean_error(code, err, "spinectx-eval", "none.json", "predictions file not found")
    body = predictions(case)
    body["studies"][0]["points"][0]["file"] = str(tmp_path / "gone.dcm")
    pred = tmp_path / "predictions.json"
    pred.write_text(json.dumps(body))
    code, err = run_app(main, f"points={pred}", f"paths.root_dir={tmp_path}", monkeypatch=monkeypatch, capsys=capsys)
    assert_clean_error(code, err, "spinectx-eval", "gone.dcm", "not found", "spinal_canal_stenosis_l1_l2")
    pred.write_text(json.dumps(predictions(case)))
    code, err = run_app(main, f"points={pred}", f"coordinates={tmp_path / 'coords.csv'}", f"paths.root_dir={tmp_path}",
                        monkeypatch=monkeypatch, capsys=capsys)
    assert_clean_error(code, err, "spinectx-eval", "coords.csv", "file not found")
    code, err = run_app(main, f"coordinates={tmp_path / 'coords.csv'}", f"paths.root_dir={tmp_path}",
                        monkeypatch=monkeypatch, capsys=capsys)
    assert_clean_error(code, err, "spinectx-eval", "coordinates= is used with points=")
