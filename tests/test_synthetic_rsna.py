"""Tests of the synthetic RSNA 2024 layout writer (``spinectx.data.synthetic.rsna``) and of the
TianChi writer's output staying byte-identical across the split of ``synthetic.py`` into a package."""

from __future__ import annotations

import hashlib
import sys
from collections import Counter, defaultdict

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, RLELossless
from scipy.ndimage import map_coordinates

from spinectx.data.synthetic import (
    QUIRKS,
    generate_dataset,
    generate_rsna_dataset,
    render_rsna_study,
    sample_rsna_labels,
    study_quirk,
)
from tests.conftest import RSNA_SEED, RSNA_STUDIES

SEED = 3
STUDIES = 9  # every quirk sits in the first 9 studies of each block of 25

# spelled out literally (not imported) so that a spelling change in the writer fails here
LEVELS = ["L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1"]
CONDITIONS = ["Spinal Canal Stenosis", "Left Neural Foraminal Narrowing", "Right Neural Foraminal Narrowing",
              "Left Subarticular Stenosis", "Right Subarticular Stenosis"]
COLUMNS = [f"{c}_{lv}" for c in ("spinal_canal_stenosis", "left_neural_foraminal_narrowing",
                                  "right_neural_foraminal_narrowing", "left_subarticular_stenosis",
                                  "right_subarticular_stenosis")
           for lv in ("l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1")]
SEVERITIES = ["Normal/Mild", "Moderate", "Severe"]
DESCRIPTION_OF = {"Spinal Canal Stenosis": "Sagittal T2/STIR", "Left Neural Foraminal Narrowing": "Sagittal T1",
                  "Right Neural Foraminal Narrowing": "Sagittal T1", "Left Subarticular Stenosis": "Axial T2",
                  "Right Subarticular Stenosis": "Axial T2"}
BALANCED = {**{g: {"normal_mild": 1, "moderate": 1, "severe": 1} for g in ("spinal", "foraminal", "subarticular")},
            "levels": {lv: 1 for lv in ("l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1")}}


# ----------------------------------------------------------------------------------------------------
# fixtures and helpers
# ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsna(synthetic_rsna_root):
    """The dataset on disk (9 studies: one per quirk, seed 3; tests/conftest.py) and its three CSVs."""
    root = synthetic_rsna_root
    assert (SEED, STUDIES) == (RSNA_SEED, RSNA_STUDIES)
    read = lambda name: pd.read_csv(root / name, dtype=str, keep_default_na=False)  # noqa: E731
    return root, read("train.csv"), read("train_label_coordinates.csv"), read("train_series_descriptions.csv")


@pytest.fixture(scope="module")
def headers(rsna):
    """(study_id, series_id) → {instance_number: header} of every file on disk."""
    root = rsna[0]
    out: dict[tuple[int, int], dict[int, pydicom.Dataset]] = defaultdict(dict)
    for path in sorted((root / "train_images").glob("*/*/*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        out[(int(path.parts[-3]), int(path.parts[-2]))][int(path.stem)] = ds
    return out


def quirk_study(rsna, quirk: str) -> int:
    """study_id of the study with ``quirk``."""
    index = next(k for k in range(STUDIES) if study_quirk(SEED, k) == quirk)
    return int(rsna[1]["study_id"].iloc[index])


def to_patient(ds: pydicom.Dataset, x: float, y: float) -> np.ndarray:
    """LPS mm of pixel (column x, row y) from the header's geometry."""
    iop = np.array(ds.ImageOrientationPatient, dtype=float)
    dy, dx = (float(v) for v in ds.PixelSpacing)
    return np.array(ds.ImagePositionPatient, dtype=float) + x * dx * iop[:3] + y * dy * iop[3:]


def normal_of(ds: pydicom.Dataset) -> np.ndarray:
    iop = np.array(ds.ImageOrientationPatient, dtype=float)
    return np.cross(iop[:3], iop[3:])


def run_length(img: np.ndarray, x: float, y: float, direction, spacing, half_mm: float, thr: float) -> float:
    """Length (mm) of the run of pixels above ``thr`` through (x, y) along ``direction`` (column, row)."""
    dy, dx = spacing
    s = np.arange(-half_mm, half_mm + 1e-9, 0.1)
    inside = map_coordinates(img, [y + s / dy * direction[1], x + s / dx * direction[0]], order=1) > thr
    c = len(s) // 2
    if not inside[c]:
        return 0.0
    lo, hi = c, c
    while lo > 0 and inside[lo - 1]:
        lo -= 1
    while hi < len(s) - 1 and inside[hi + 1]:
        hi += 1
    return (hi - lo + 1) * 0.1


def window(img: np.ndarray, x: float, y: float, half: int) -> np.ndarray:
    r, c = int(round(y)), int(round(x))
    return img[max(r - half, 0): r + half + 1, max(c - half, 0): c + half + 1]


# ----------------------------------------------------------------------------------------------------
# TianChi: the package split changed no byte
# ----------------------------------------------------------------------------------------------------


def test_tianchi_output_is_unchanged_by_the_package_split(tmp_path):
    """A guard against unintended changes of the TianChi output. SHA-1s recomputed when issue 14 made
    the degeneration cues random subsets (they had been computed with the single-module synthetic.py
    before the package split; pydicom 3.0.2, numpy 2.4, OpenCV 5.0; another OpenCV may resample the
    texture fields differently: then recompute them from a commit known to be good)."""
    ann = generate_dataset(tmp_path, studies=4, seed=3)
    sha = lambda p: hashlib.sha1(p.read_bytes()).hexdigest()  # noqa: E731
    study0 = tmp_path / "lumbar_train" / "study0"
    assert sha(ann) == "8d56100049bd27c6fedec668c36c690e3cf5a280"
    assert sha(study0 / "image0.dcm") == "c4226b3eeb7e2ad88bb97dcd8ed27e2b0c563c44"  # sagittal T2
    assert sha(study0 / "image17.dcm") == "be90d10cd57be50cc5404458f1d7c9d3203cd27c"  # sagittal T1
    assert sha(study0 / "image10.dcm") == "6a3f7909ece8c6c93a89328a3676ef9efee7b281"  # axial T2


# ----------------------------------------------------------------------------------------------------
# layout, spellings, joins
# ----------------------------------------------------------------------------------------------------


def test_layout_and_spellings(rsna, headers):
    root, train, coords, series = rsna
    assert sorted(p.name for p in root.iterdir()) == [
        "train.csv", "train_images", "train_label_coordinates.csv", "train_series_descriptions.csv"]
    assert list(train.columns) == ["study_id", *COLUMNS]
    assert list(coords.columns) == ["study_id", "series_id", "instance_number", "condition", "level", "x", "y"]
    assert list(series.columns) == ["study_id", "series_id", "series_description"]
    assert len(train) == STUDIES and train["study_id"].is_unique
    assert (train["study_id"].astype(int).diff().dropna() > 0).all()  # sorted as on Kaggle
    assert set(train[COLUMNS].to_numpy().ravel()) <= {*SEVERITIES, ""}
    assert set(coords["condition"]) == set(CONDITIONS) and set(coords["level"]) == set(LEVELS)
    assert set(series["series_description"]) == {"Sagittal T1", "Sagittal T2/STIR", "Axial T2"}
    for frame in (train[["study_id"]], coords[["study_id", "series_id", "instance_number"]], series[["series_id"]]):
        for column in frame:
            assert frame[column].str.fullmatch(r"[1-9][0-9]*").all(), column  # integers, as on Kaggle
    assert series["series_id"].is_unique
    for study_id, group in series.groupby("study_id"):
        kinds = Counter(group["series_description"])
        assert kinds["Sagittal T1"] == 1 and kinds["Sagittal T2/STIR"] == 1 and kinds["Axial T2"] >= 1, study_id
    coords_xy = coords[["x", "y"]].astype(float).to_numpy()
    assert np.isfinite(coords_xy).all() and (coords_xy > 0).all()
    # files: <study>/<series>/<InstanceNumber>.dcm with the ids in the headers
    for (study_id, series_id), files in headers.items():
        for number, ds in files.items():
            assert int(ds.InstanceNumber) == number
            assert ds.StudyInstanceUID == str(study_id) and ds.SeriesInstanceUID == str(series_id)
            assert ds.SOPInstanceUID == f"{study_id}.{series_id}.{number}"
            assert ds.Modality == "MR" and ds.PhotometricInterpretation == "MONOCHROME2"
            assert 192 <= ds.Rows <= 512 and 192 <= ds.Columns <= 512
            for key in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness"):
                assert key in ds, key


def test_csv_joins(rsna, headers):
    root, train, coords, series = rsna
    missing_study = quirk_study(rsna, "missing_series")
    described = {(int(r.study_id), int(r.series_id)): r.series_description for r in series.itertuples()}
    on_disk = {key for key in described if (root / "train_images" / str(key[0]) / str(key[1])).is_dir()}
    missing = [k for k in described if k not in on_disk]
    assert len(missing) == 1 and missing[0][0] == missing_study
    assert set(headers) == on_disk
    assert {int(s) for s in train["study_id"]} == {k[0] for k in described}
    for row in coords.itertuples():
        key = (int(row.study_id), int(row.series_id))
        assert key in described, key
        assert described[key] == DESCRIPTION_OF[row.condition], row
        if key not in on_disk:
            assert key[0] == missing_study
            continue
        ds = headers[key][int(row.instance_number)]  # the instance number is a file
        assert 0 <= float(row.x) < ds.Columns and 0 <= float(row.y) < ds.Rows
    # 25 rows per labelled study, none for the study without labels
    per_study = coords.groupby("study_id").size()
    assert set(per_study) == {25}
    assert int(quirk_study(rsna, "blank_all")) not in set(per_study.index.astype(int))
    assert not coords.duplicated(["study_id", "condition", "level"]).any()


# ----------------------------------------------------------------------------------------------------
# geometry
# ----------------------------------------------------------------------------------------------------


def test_sagittal_labels_lie_in_the_axial_slice_of_their_level(rsna, headers):
    _, _, coords, _ = rsna
    missing = quirk_study(rsna, "missing_series")
    checked = 0
    for study_id, rows in coords.groupby("study_id"):
        if int(study_id) == missing:
            continue
        point, header = {}, {}
        for r in rows.itertuples():
            ds = headers[(int(r.study_id), int(r.series_id))][int(r.instance_number)]
            point[(r.condition, r.level)] = to_patient(ds, float(r.x), float(r.y))
            header[(r.condition, r.level)] = ds
        spinal_x = {lv: float(header[("Spinal Canal Stenosis", lv)].ImagePositionPatient[0]) for lv in LEVELS}
        for lv in LEVELS:
            axial = header[("Left Subarticular Stenosis", lv)]
            n, ipp = normal_of(axial), np.array(axial.ImagePositionPatient, float)
            thickness = float(axial.SliceThickness)
            for condition in CONDITIONS[:3]:
                distance = abs(float(np.dot(point[(condition, lv)] - ipp, n)))
                assert distance < thickness, (study_id, lv, condition, distance, thickness)
                checked += 1
            # the patient's left is +x (LPS): left labels lie left of right ones, foramina either side of the midline
            left_f = point[("Left Neural Foraminal Narrowing", lv)]
            right_f = point[("Right Neural Foraminal Narrowing", lv)]
            assert left_f[0] > spinal_x[lv] > right_f[0]
            left_s, right_s = point[("Left Subarticular Stenosis", lv)], point[("Right Subarticular Stenosis", lv)]
            assert left_s[0] > right_s[0]
            # on axial frames (row direction +x) columns increase towards the patient's left
            same_slice = header[("Left Subarticular Stenosis", lv)] is header[("Right Subarticular Stenosis", lv)]
            if same_slice:
                assert float(axial.ImageOrientationPatient[0]) == 1.0
                xl = rows[(rows.condition == "Left Subarticular Stenosis") & (rows.level == lv)]["x"].astype(float)
                xr = rows[(rows.condition == "Right Subarticular Stenosis") & (rows.level == lv)]["x"].astype(float)
                assert xl.iloc[0] > xr.iloc[0]
    assert checked >= 3 * 5 * (STUDIES - 2)


def test_spatial_order_and_stacks(headers, rsna):
    """Sagittal stacks run left → right, slices are parallel within a stack; only the quirk studies
    number instances against the spatial order or hold two orientations in one series."""
    reversed_study, two_stacks = quirk_study(rsna, "instance_reversed"), quirk_study(rsna, "axial_two_stacks")
    reversed_seen = stacks_seen = 0
    for (study_id, series_id), files in headers.items():
        by_iop = defaultdict(list)
        for number, ds in files.items():
            by_iop[tuple(float(v) for v in ds.ImageOrientationPatient)].append((number, ds))
        if study_id == two_stacks and len(by_iop) == 2:
            stacks_seen += 1
        else:
            assert len(by_iop) == 1, (study_id, series_id)
        for iop, members in by_iop.items():
            n = np.cross(np.array(iop[:3]), np.array(iop[3:]))
            along = lambda e: float(np.dot(np.array(e[1].ImagePositionPatient, float), n))  # noqa: E731
            numbers = [m for m, _ in sorted(members, key=along)]
            if numbers == sorted(numbers, reverse=True) and len(numbers) > 1:
                assert study_id == reversed_study
                reversed_seen += 1
            else:
                assert numbers == sorted(numbers), (study_id, series_id)
    assert reversed_seen == 1 and stacks_seen == 1


# ----------------------------------------------------------------------------------------------------
# severities are visible
# ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def balanced_studies():
    """4 studies rendered in memory with every grade equally likely at every level (no quirk)."""
    return [render_rsna_study(4, k, frequencies=BALANCED) for k in range(9, 13)]


def measured_sizes(studies) -> tuple[dict[str, dict[int, list[float]]], list[tuple[float, float]]]:
    """Measured size (mm) at every label point, per family and grade:

    * spinal: the canal's bright (CSF) width across the canal through the label on the T2 slice (the
      canal's axis from the neighbouring levels' labels), L2/L3–L5/S1 (the conus may fill the canal at L1/L2);
    * foraminal: the bright (fat) run through the label along the image row on the T1 slice;
    * subarticular: the bright (CSF) run through the label along the image column on the axial slice.

    Also returns (measured, drawn) canal widths.
    """
    out: dict[str, dict[int, list[float]]] = {f: defaultdict(list) for f in ("spinal", "foraminal", "subarticular")}
    canal: list[tuple[float, float]] = []
    for st in studies:
        spinal = {p.level: p for p in st.points if p.condition == "Spinal Canal Stenosis"}
        for p in st.points:
            ser = st.series_by_id(p.series_id)
            img = ser.pixels[ser.frame_of(p.instance_number)].astype(float)
            dy, dx = ser.pixel_spacing
            grade = st.labels.grade(p.condition, p.level)
            if p.condition == "Spinal Canal Stenosis":
                k = LEVELS.index(p.level)
                if k == 0:
                    continue
                a, b = spinal[LEVELS[k - 1]], spinal[LEVELS[min(k + 1, 4)]]
                axis = np.array([(b.x - a.x) * dx, (b.y - a.y) * dy])
                axis /= np.linalg.norm(axis)
                thr = 0.6 * np.percentile(window(img, p.x, p.y, int(15 / dx)), 97)
                out["spinal"][grade].append(run_length(img, p.x, p.y, (axis[1], -axis[0]), (dy, dx), 10, thr))
                canal.append((out["spinal"][grade][-1], st.truth[p.level]["canal_width"]))
            else:
                family = "foraminal" if "Foraminal" in p.condition else "subarticular"
                box = window(img, p.x, p.y, int(20 / dx))
                thr = 0.5 * (np.percentile(box, 99) + np.median(box))
                direction = (1, 0) if family == "foraminal" else (0, 1)
                out[family][grade].append(run_length(img, p.x, p.y, direction, (dy, dx), 12, thr))
    return out, canal


def test_each_grade_has_a_measurably_smaller_structure(balanced_studies):
    sizes, canal = measured_sizes(balanced_studies)
    for family, per_grade in sizes.items():
        assert all(len(per_grade[g]) >= 3 for g in range(3)), (family, {g: len(v) for g, v in per_grade.items()})
        # Normal/Mild > Moderate > Severe for every point, not only on average
        assert min(per_grade[0]) > max(per_grade[1]), (family, per_grade)
        assert min(per_grade[1]) > max(per_grade[2]), (family, per_grade)
    # the canal's measured CSF width is the drawn one
    for measured, drawn in canal:
        assert abs(measured - drawn) < 1.5, (measured, drawn)


def test_left_and_right_are_drawn_independently(balanced_studies):
    """Where the two sides' grades differ, so do the drawn foramina / recesses, the milder side larger."""
    seen = 0
    for st in balanced_studies:
        for lv in LEVELS:
            for family, key in (("Neural Foraminal Narrowing", "foramen"), ("Subarticular Stenosis", "recess")):
                left, right = st.labels.grade(f"Left {family}", lv), st.labels.grade(f"Right {family}", lv)
                if left != right:
                    size = {side: np.ravel(st.truth[lv][key][side])[0] for side in ("left", "right")}
                    assert (size["left"] > size["right"]) == (left < right), (lv, family)
                    seen += 1
    assert seen >= 10


# ----------------------------------------------------------------------------------------------------
# frequencies
# ----------------------------------------------------------------------------------------------------


def test_frequencies_follow_the_real_training_labels():
    drawn = [sample_rsna_labels(0, k) for k in range(9, 209)]  # 200 studies, none with blank cells
    counts: dict[str, Counter] = defaultdict(Counter)
    abnormal_at: dict[str, Counter] = defaultdict(Counter)
    for labels in drawn:
        assert not labels.blank or labels.quirk in ("blank_some", "blank_all")
        for (condition, level), severity in labels.severity.items():
            family = condition.split()[-2] if condition != "Spinal Canal Stenosis" else "Spinal"
            counts[family][severity] += 1
            abnormal_at[level][severity != "Normal/Mild"] += 1
    expected = {"Spinal": (0.84, 0.09, 0.07), "Foraminal": (0.72, 0.22, 0.06), "Subarticular": (0.66, 0.23, 0.11)}
    for family, shares in expected.items():
        total = sum(counts[family].values())
        for severity, share in zip(SEVERITIES, shares):
            assert abs(counts[family][severity] / total - share) < 0.035, (family, severity, counts[family])
    rate = {lv: abnormal_at[lv][True] / sum(abnormal_at[lv].values()) for lv in LEVELS}
    assert rate["L4/L5"] > rate["L3/L4"] > rate["L2/L3"] > rate["L1/L2"] and rate["L4/L5"] > 2 * rate["L1/L2"]


def test_frequencies_can_be_overridden_and_are_checked():
    severe = sample_rsna_labels(0, 12, frequencies={"spinal": {"severe": 1.0}})
    assert all(severe.severity[("Spinal Canal Stenosis", lv)] == "Severe" for lv in LEVELS)
    default = sample_rsna_labels(0, 12)
    cell = ("Left Subarticular Stenosis", "L2/L3")
    assert severe.severity[cell] == default.severity[cell]  # other groups keep their defaults
    with pytest.raises(ValueError, match="unknown RSNA frequency group 'disc'"):
        sample_rsna_labels(0, 0, frequencies={"disc": {"v1": 1}})
    with pytest.raises(ValueError, match="unknown classes"):
        sample_rsna_labels(0, 0, frequencies={"spinal": {"Mild": 1}})
    with pytest.raises(ValueError, match="sum to zero"):
        sample_rsna_labels(0, 0, frequencies={"foraminal": {"Severe": 0}})
    with pytest.raises(ValueError, match="unknown levels"):
        sample_rsna_labels(0, 0, frequencies={"levels": {"L6/L7": 1}})


# ----------------------------------------------------------------------------------------------------
# quirks
# ----------------------------------------------------------------------------------------------------


def test_quirk_schedule():
    for seed in (0, 1, 7):
        first = [study_quirk(seed, k) for k in range(25)]
        assert sorted(q for q in first[:9]) == sorted(QUIRKS) and first[9:] == [None] * 16
        second = [study_quirk(seed, k) for k in range(25, 50)]
        assert sorted(second[:9]) == sorted(QUIRKS) and second[9:] == [None] * 16
    assert [study_quirk(0, k) for k in range(9)] != [study_quirk(1, k) for k in range(9)]  # seeded order


def test_every_quirk_is_on_disk(rsna, headers):
    root, train, coords, series = rsna
    axial = series[series.series_description == "Axial T2"]

    # two stacks of different angulation under one SeriesInstanceUID
    study = quirk_study(rsna, "axial_two_stacks")
    (series_id,) = axial[axial.study_id.astype(int) == study].series_id.astype(int)
    iops = {tuple(ds.ImageOrientationPatient) for ds in headers[(study, series_id)].values()}
    assert len(iops) == 2 and len({ds.SeriesInstanceUID for ds in headers[(study, series_id)].values()}) == 1

    # two axial series; L4/L5 and L5/S1 subarticular labels on the second
    study = quirk_study(rsna, "two_axial_series")
    first, second = axial[axial.study_id.astype(int) == study].series_id.astype(int)
    sub = coords[(coords.study_id.astype(int) == study) & coords.condition.str.contains("Subarticular")]
    on = {lv: set(sub[sub.level == lv].series_id.astype(int)) for lv in LEVELS}
    assert on == {"L1/L2": {first}, "L2/L3": {first}, "L3/L4": {first}, "L4/L5": {second}, "L5/S1": {second}}

    # instance numbers above 1 with gaps (every series of the study)
    study = quirk_study(rsna, "instance_offset")
    for (s, _), files in headers.items():
        numbers = sorted(files)
        if s == study:
            assert numbers[0] > 1 and numbers[-1] - numbers[0] + 1 > len(numbers)
        else:
            assert numbers == list(range(1, len(numbers) + 1))

    # a listed series missing on disk, its labels kept
    study = quirk_study(rsna, "missing_series")
    gone = [int(s) for s in series[series.study_id.astype(int) == study].series_id
            if not (root / "train_images" / str(study) / s).exists()]
    assert len(gone) == 1 and (coords.series_id.astype(int) == gone[0]).sum() >= 5

    # blank severities: a few cells (labels still placed), all cells (no labels)
    cells = train.set_index(train.study_id.astype(int))[COLUMNS]
    blanks = (cells == "").sum(axis=1)
    assert blanks[quirk_study(rsna, "blank_all")] == 25
    assert 1 <= blanks[quirk_study(rsna, "blank_some")] <= 3
    assert set(blanks[blanks > 0].index) == {quirk_study(rsna, "blank_all"), quirk_study(rsna, "blank_some")}
    assert (coords.study_id.astype(int) == quirk_study(rsna, "blank_some")).sum() == 25

    # spinal labels on two neighbouring slices of one stack
    for study in train.study_id.astype(int):
        spinal = coords[(coords.study_id.astype(int) == study) & (coords.condition == "Spinal Canal Stenosis")]
        numbers = set(spinal.instance_number.astype(int))
        if study == quirk_study(rsna, "spinal_two_slices"):
            assert len(numbers) == 2 and max(numbers) - min(numbers) == 1 and spinal.series_id.nunique() == 1
        elif len(spinal):
            assert len(numbers) == 1

    # a few RLE Lossless files, decoding to the same kind of image
    study = quirk_study(rsna, "rle")
    syntax = {(s, series_id, number): ds.file_meta.TransferSyntaxUID
              for (s, series_id), files in headers.items() for number, ds in files.items()}
    rle = [key for key, uid in syntax.items() if uid == RLELossless]
    assert len(rle) == 3 and {key[0] for key in rle} == {study} and len({key[1] for key in rle}) == 1
    assert set(syntax.values()) == {RLELossless, ExplicitVRLittleEndian}
    for s, series_id, number in rle:
        ds = pydicom.dcmread(root / "train_images" / str(s) / str(series_id) / f"{number}.dcm")
        pixels = ds.pixel_array
        assert pixels.shape == (ds.Rows, ds.Columns) and pixels.dtype == np.uint16 and pixels.max() > 500


# ----------------------------------------------------------------------------------------------------
# determinism, atomic writing, arguments, command line
# ----------------------------------------------------------------------------------------------------


def test_same_bytes_from_every_run_and_any_number_of_workers(rsna, tmp_path):
    root = rsna[0]
    again = generate_rsna_dataset(tmp_path / "again", studies=STUDIES, seed=SEED, workers=2)
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (root / rel).read_bytes() == (again / rel).read_bytes(), rel
    # another seed, another study 0
    this, other = render_rsna_study(SEED, 0), render_rsna_study(SEED + 1, 0)
    assert this.study_id != other.study_id and this.series[1].pixels.shape != other.series[1].pixels.shape or \
        not np.array_equal(this.series[1].pixels, other.series[1].pixels)


def test_writing_is_atomic_and_never_clobbers_other_files(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        generate_rsna_dataset(out, studies=1, seed=0)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    (out / "notes.txt").unlink()
    generate_rsna_dataset(out, studies=2, seed=0)
    generate_rsna_dataset(out, studies=1, seed=1)  # a previous dataset is replaced as a whole
    assert len(pd.read_csv(out / "train.csv")) == 1
    assert len(list((out / "train_images").iterdir())) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temporary folders left
    for bad in ({"studies": 0}, {"workers": 0}, {"frequencies": {"spinal": {"Severe": -1}}}):
        with pytest.raises(ValueError):
            generate_rsna_dataset(tmp_path / "bad", **{"studies": 1, **bad})
    assert not (tmp_path / "bad").exists()


def run_synth(*args, monkeypatch, capsys) -> tuple[int | None, str]:
    """spinectx-synth in this process → (exit status or None, stderr)."""
    from spinectx.cli.synth import main

    monkeypatch.setattr(sys, "argv", ["spinectx-synth", *args])
    try:
        main()
    except SystemExit as stop:
        return stop.code, capsys.readouterr().err
    return None, capsys.readouterr().err


def test_command_line_writes_the_rsna_layout(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, err = run_synth(f"out={tmp_path}/ds", "format=rsna2024", "studies=2", "seed=1",
                          "frequencies={spinal: {severe: 1}}", monkeypatch=monkeypatch, capsys=capsys)
    assert code in (None, 0), err
    train = pd.read_csv(tmp_path / "ds" / "train.csv", dtype=str, keep_default_na=False)
    assert len(train) == 2 and set(train[COLUMNS[:5]].to_numpy().ravel()) <= {"Severe", ""}
    assert not (tmp_path / "outputs").exists()
    for args, message in ((["format=nifti"], "format must be one of tianchi, rsna2024, got 'nifti'"),
                          (["format=rsna2024", "studies=0"], "studies must be an integer ≥ 1, got 0"),
                          (["format=rsna2024", "frequencies={spinal: {mild: 1}}"], "frequencies: RSNA spinal"),
                          (["frequencies={disc: {v9: 1}}"], "frequencies: disc frequencies")):
        code, err = run_synth(f"out={tmp_path}/bad", *args, monkeypatch=monkeypatch, capsys=capsys)
        assert code == 2 and f"spinectx-synth: error: {message}" in err and "Traceback" not in err, err
    assert not (tmp_path / "bad").exists()
