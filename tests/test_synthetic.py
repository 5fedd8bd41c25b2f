"""Tests of the synthetic TianChi-layout generator (``spinectx.data.synthetic``)."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

from spinectx.data.synthetic import (
    DEFAULT_FREQUENCIES,
    DISCS,
    LABELS,
    LANDMARKS,
    VERTEBRAE,
    generate_dataset,
    render_study,
    sample_labels,
)

UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")
FILE_RE = re.compile(r"^image(\d+)\.dcm$")
SPLIT = "lumbar_train150"


# ----------------------------------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    ann = generate_dataset(root, studies=3, seed=11, split=SPLIT)
    return root, ann


@pytest.fixture(scope="module")
def studies():
    return [render_study(3, k) for k in range(8)]


def _read_study(folder: Path) -> dict[str, list[tuple[str, pydicom.Dataset]]]:
    by_series: dict[str, list[tuple[str, pydicom.Dataset]]] = defaultdict(list)
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f)
        by_series[ds.SeriesInstanceUID].append((f.name, ds))
    return by_series


def _normal(ds) -> np.ndarray:
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    return np.cross(iop[:3], iop[3:])


def _plane(ds) -> str:
    axis = int(np.argmax(np.abs(_normal(ds))))
    return {0: "sagittal", 1: "coronal", 2: "axial"}[axis]


def _in_slice_order(items):
    """Sort (name, ds) by ImagePositionPatient projected on the slice normal (SPEC §2)."""
    return sorted(items, key=lambda it: float(np.dot(np.array([float(v) for v in it[1].ImagePositionPatient]),
                                                     _normal(it[1]))))


def _patch_mean(img: np.ndarray, xy, r: int = 1) -> float:
    x, y = int(round(xy[0])), int(round(xy[1]))
    return float(img[y - r : y + r + 1, x - r : x + r + 1].astype(np.float64).mean())


# ----------------------------------------------------------------------------------------------------
# layout and annotation format
# ----------------------------------------------------------------------------------------------------


def test_layout(written):
    root, ann = written
    assert ann == root / f"{SPLIT}_annotation.json"
    split_dir = root / SPLIT
    assert sorted(p.name for p in split_dir.iterdir()) == ["study0", "study1", "study2"]
    for study in split_dir.iterdir():
        files = list(study.iterdir())
        assert files and all(f.is_file() for f in files), "a study folder must be flat"
        nums = []
        for f in files:
            m = FILE_RE.match(f.name)
            assert m, f.name
            nums.append(int(m.group(1)))
        assert sorted(nums) == list(range(len(files)))


def test_annotation_format(written):
    root, ann = written
    entries = json.loads(ann.read_text())
    assert isinstance(entries, list) and len(entries) == 3
    for e in entries:
        assert set(e) == {"studyUid", "version", "data"}
        assert e["version"] == "v0.1"
        assert len(e["data"]) == 1
        d = e["data"][0]
        assert set(d) == {"seriesUid", "instanceUid", "annotation"}
        assert len(d["annotation"]) == 1 and d["annotation"][0]["annotator"] == 54
        points = d["annotation"][0]["data"]["point"]
        assert 5 <= len(points) <= 12
        idents = [p["tag"]["identification"] for p in points]
        assert len(set(idents)) == len(idents)
        for p in points:
            assert len(p["coord"]) == 2 and all(type(c) is int for c in p["coord"])
            assert type(p["zIndex"]) is int
            tag = p["tag"]
            keys = set(tag) - {"identification"}
            assert len(keys) == 1
            group = keys.pop()
            if tag["identification"] in VERTEBRAE:
                assert group == "vertebra" and re.fullmatch(r"v[12]", tag["vertebra"])
            elif tag["identification"] in DISCS:
                assert group == "disc" and re.fullmatch(r"v[1-4](,v5)?", tag["disc"])
            else:  # an extra identification outside the 11
                assert group in ("disc", "vertebra")


def test_headers_series_and_annotated_frame(written):
    root, ann = written
    entries = {e["studyUid"]: e for e in json.loads(ann.read_text())}
    for k in range(3):
        by_series = _read_study(root / SPLIT / f"study{k}")
        assert len(by_series) == 3
        all_ds = [ds for items in by_series.values() for _, ds in items]
        study_uid = all_ds[0].StudyInstanceUID
        assert study_uid in entries
        sops = set()
        for ds in all_ds:
            assert ds.StudyInstanceUID == study_uid
            assert ds.Modality == "MR" and ds.SOPClassUID == MRImageStorage
            assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
            assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
            for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.FrameOfReferenceUID):
                assert len(uid) <= 64 and UID_RE.match(uid), uid
            sops.add(ds.SOPInstanceUID)
            assert ds.SamplesPerPixel == 1 and ds.PhotometricInterpretation == "MONOCHROME2"
            assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 12, 11, 0)
            assert float(ds.RescaleSlope) == 1.0 and float(ds.RescaleIntercept) == 0.0
            arr = ds.pixel_array
            assert arr.dtype == np.uint16 and arr.shape == (ds.Rows, ds.Columns)
            assert int(arr.max()) <= 4095 and int(arr.max()) > 500
        assert len(sops) == len(all_ds)

        planes = {uid: _plane(items[0][1]) for uid, items in by_series.items()}
        assert sorted(planes.values()) == ["axial", "sagittal", "sagittal"]
        sag = [uid for uid, p in planes.items() if p == "sagittal"]
        te = {uid: float(by_series[uid][0][1].EchoTime) for uid in sag}
        tr = {uid: float(by_series[uid][0][1].RepetitionTime) for uid in sag}
        t1_uid, t2_uid = sorted(sag, key=lambda u: te[u])
        assert te[t1_uid] < 30 and tr[t1_uid] < 1000
        assert te[t2_uid] > 80 and tr[t2_uid] > 2000
        ax_uid = next(uid for uid, p in planes.items() if p == "axial")
        assert float(by_series[ax_uid][0][1].EchoTime) > 80
        assert 5 <= len(by_series[ax_uid]) <= 6

        for uid, items in by_series.items():
            ordered = _in_slice_order(items)
            ds0 = ordered[0][1]
            # sagittal IOP exactly as specified, axial too
            iop = [float(v) for v in ds0.ImageOrientationPatient]
            assert iop == ([0, 1, 0, 0, 0, -1] if planes[uid] == "sagittal" else [1, 0, 0, 0, 1, 0])
            dy, dx = (float(v) for v in ds0.PixelSpacing)
            assert 0.45 <= dy <= 0.95 and 0.45 <= dx <= 0.95
            assert [ds.InstanceNumber for _, ds in ordered] == list(range(1, len(ordered) + 1))
            locs = [float(ds.SliceLocation) for _, ds in ordered]
            assert all(b > a for a, b in zip(locs, locs[1:]))
            # file names carry no order
            nums = [int(FILE_RE.match(name).group(1)) for name, _ in ordered]
            assert nums != sorted(nums) and nums != sorted(nums, reverse=True)
            if planes[uid] == "sagittal":
                n = len(ordered)
                assert n % 2 == 1 and 7 <= n <= 11
                assert 320 <= ds0.Rows <= 640 and 320 <= ds0.Columns <= 640
                pos = np.array([[float(v) for v in ds.ImagePositionPatient] for _, ds in ordered])
                steps = np.diff(pos, axis=0)
                assert np.allclose(steps[:, 1:], 0.0)  # stepping along x only
                assert np.allclose(np.abs(steps[:, 0]), float(ds0.SpacingBetweenSlices), atol=1e-3)
                assert 3.5 <= float(ds0.SpacingBetweenSlices) <= 4.5
                assert float(ds0.SliceThickness) <= float(ds0.SpacingBetweenSlices) + 1e-6

        # the annotated instance: middle slice of the T2 sagittal series, zIndex = its index
        entry = entries[study_uid]["data"][0]
        assert entry["seriesUid"] == t2_uid
        ordered = _in_slice_order(by_series[t2_uid])
        sop_order = [ds.SOPInstanceUID for _, ds in ordered]
        z = sop_order.index(entry["instanceUid"])
        assert z == len(sop_order) // 2
        points = entries[study_uid]["data"][0]["annotation"][0]["data"]["point"]
        assert all(p["zIndex"] == z for p in points)
        frame = ordered[z][1]
        for p in points:
            x, y = p["coord"]
            assert 0 <= x < frame.Columns and 0 <= y < frame.Rows


def test_series_descriptions_say_contrast_or_te_does(studies):
    for s in studies:
        t1, t2 = s.series["t1_sag"], s.series["t2_sag"]
        assert t1.echo_time < 30 < 80 < t2.echo_time
        assert 400 <= t1.repetition_time <= 700 and 2500 <= t2.repetition_time <= 4000
        if "T1" in t1.description.upper():
            assert "T2" not in t1.description.upper()
        if "T2" in t2.description.upper():
            assert "T1" not in t2.description.upper()


# ----------------------------------------------------------------------------------------------------
# determinism
# ----------------------------------------------------------------------------------------------------


def test_render_is_deterministic_and_seed_dependent():
    a, b, c = render_study(5, 2), render_study(5, 2), render_study(6, 2)
    assert a.annotation == b.annotation
    assert [n for n, _ in a.files] == [n for n, _ in b.files]
    for role in a.series:
        assert np.array_equal(a.series[role].pixels, b.series[role].pixels)
        assert a.series[role].sop_uids == b.series[role].sop_uids
    assert a.study_uid != c.study_uid
    assert a.annotation != c.annotation
    pa, pc = a.series["t2_sag"].pixels, c.series["t2_sag"].pixels
    assert pa.shape != pc.shape or not np.array_equal(pa, pc)


def test_written_bytes_identical_across_runs_and_workers(tmp_path):
    ann_a = generate_dataset(tmp_path / "a", studies=2, seed=4, split="s")
    ann_b = generate_dataset(tmp_path / "b", studies=3, seed=4, split="s", workers=2)
    # study k depends only on (seed, k): the first two studies of the 3-study run are the same
    assert json.loads(ann_b.read_text())[:2] == json.loads(ann_a.read_text())
    for k in range(2):
        fa = sorted((tmp_path / "a" / "s" / f"study{k}").iterdir())
        fb = sorted((tmp_path / "b" / "s" / f"study{k}").iterdir())
        assert [f.name for f in fa] == [f.name for f in fb]
        for x, y in zip(fa, fb):
            assert x.read_bytes() == y.read_bytes(), x.name
    # rewriting the same split replaces it and gives the same bytes
    before = ann_a.read_bytes()
    generate_dataset(tmp_path / "a", studies=2, seed=4, split="s")
    assert ann_a.read_bytes() == before
    # and what is written is what render_study returns
    s0 = render_study(4, 0)
    name = s0.series["t2_sag"].filenames[s0.annotated_index]
    ds = pydicom.dcmread(tmp_path / "a" / "s" / "study0" / name)
    assert np.array_equal(ds.pixel_array, s0.annotated_frame)


def test_refuses_to_wipe_foreign_content(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        generate_dataset(tmp_path, studies=1, seed=0, split="s")
    assert (tmp_path / "s" / "notes.txt").read_text() == "keep me"


def test_datasets_are_independent_objects(studies):
    s = studies[0]
    (_, d0), (_, d1) = s.files[0], s.files[1]
    before = d1.SeriesDescription, d1.PatientID
    d0.SeriesDescription = "CHANGED"
    d0.PatientID = "CHANGED"
    assert (d1.SeriesDescription, d1.PatientID) == before


# ----------------------------------------------------------------------------------------------------
# landmarks lie on the structures, classes are visible
# ----------------------------------------------------------------------------------------------------


def test_annotation_matches_landmarks(studies):
    for s in studies:
        points = s.annotation["data"][0]["annotation"][0]["data"]["point"]
        by_id = {p["tag"]["identification"]: p for p in points}
        for name, lm in s.landmarks.items():
            if not lm.annotated:
                assert name not in by_id
                continue
            p = by_id[name]
            assert p["coord"] == [int(np.floor(lm.xy[0] + 0.5)), int(np.floor(lm.xy[1] + 0.5))]
            assert p["tag"][lm.group] == lm.tag
            assert p["zIndex"] == s.annotated_index
        assert s.annotation["data"][0]["instanceUid"] == s.series["t2_sag"].sop_uids[s.annotated_index]
        assert s.annotated_index == s.series["t2_sag"].pixels.shape[0] // 2


def test_landmarks_inside_image_and_on_structure(studies):
    for s in studies:
        rows, cols = s.annotated_frame.shape
        for name in LANDMARKS:
            lm = s.landmarks[name]
            x, y = lm.coord
            assert 3 <= x < cols - 3 and 3 <= y < rows - 3, (s.index, name, lm.xy)
            code = int(s.label_map[y, x])
            if lm.group == "vertebra":
                assert code == LABELS["bone"], (s.index, name, code)
            else:
                assert code == LABELS["disc"], (s.index, name, code)
        # anatomical order head -> feet along the spine
        ys = [s.landmarks[n].xy[1] for n in ("T12-L1", "L1", "L1-L2", "L2", "L2-L3", "L3", "L3-L4", "L4", "L4-L5",
                                            "L5", "L5-S1")]
        steps = np.diff(ys)
        assert np.all(steps > 0)


def test_disc_contrast_on_t2_follows_desiccation_not_class(studies):
    """A hydrated disc is brighter than the adjacent bodies on T2; a desiccated one (the optional
    ``desiccation`` cue) is darker than every normal disc of its study; and a degenerated disc without
    that cue stays bright, so T2 brightness alone cannot give the class (issue 14 §0)."""
    ratios_normal, ratios_dark = [], []
    bright_degenerated = 0
    for s in studies:
        t2 = s.annotated_frame
        verts = {v: _patch_mean(t2, s.landmarks[v].xy) for v in VERTEBRAE}
        value, main = {}, {}
        for d in DISCS:
            lm = s.landmarks[d]
            value[d] = _patch_mean(t2, lm.xy)
            main[d] = lm.tag.split(",")[0]
            neighbours = [verts[v] for v in d.split("-") if v in verts]
            if main[d] == "v1":
                assert all(value[d] > nb for nb in neighbours), (s.index, d, value[d], neighbours)
                ratios_normal.append(value[d] / np.mean(neighbours))
            elif "desiccation" in s.cues[d]:
                ratios_dark.append(value[d] / np.mean(neighbours))
        normal = [value[d] for d in DISCS if main[d] == "v1"]
        dark = [value[d] for d in DISCS if main[d] != "v1" and "desiccation" in s.cues[d]]
        if normal and dark:
            assert min(normal) > max(dark), s.index
        if normal:
            bright_degenerated += sum(value[d] > 0.8 * np.mean(normal) for d in DISCS
                                      if main[d] != "v1" and "desiccation" not in s.cues[d])
    assert ratios_normal and ratios_dark
    assert np.mean(ratios_normal) > 1.6 and np.mean(ratios_normal) > 2 * np.mean(ratios_dark)
    assert bright_degenerated > 0


def test_vertebra_landmark_is_marrow_on_t1(studies):
    for s in studies:
        t1 = s.series["t1_sag"].pixels[s.annotated_index]
        for d in DISCS:
            upper, lower = d.split("-")
            for v in (upper, lower):
                if v in VERTEBRAE:  # T1: marrow brighter than disc
                    assert _patch_mean(t1, s.landmarks[v].xy, 2) > _patch_mean(t1, s.landmarks[d].xy, 1)


def _near(mask: np.ndarray, xy, radius_px: float) -> int:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return 0
    return int(np.sum((xs - xy[0]) ** 2 + (ys - xy[1]) ** 2 <= radius_px**2))


def test_disc_classes_have_their_features(studies):
    seen = Counter()
    for s in studies:
        dy, dx = s.series["t2_sag"].pixel_spacing
        mm = 1.0 / dx
        hern = s.label_map == LABELS["herniation"]
        node = s.label_map == LABELS["schmorl"]
        any_herniation = False
        for d in DISCS:
            lm = s.landmarks[d]
            main, _, extra = lm.tag.partition(",")
            seen[main] += 1
            if main in ("v3", "v4"):
                any_herniation = True
                assert _near(hern, lm.xy, 35 * mm) > 0, (s.index, d, lm.tag)
            if extra == "v5":
                seen["v5"] += 1
                assert _near(node, lm.xy, 30 * mm) > 0, (s.index, d, lm.tag)
        context_hernia = s.labels.disc["T11-T12"] in ("v3", "v4")
        if not any_herniation and not context_hernia:
            assert hern.sum() == 0
        if not any(s.labels.schmorl.values()):
            assert node.sum() == 0
    assert seen["v1"] and seen["v2"] and seen["v3"]


def test_extrusion_is_larger_than_protrusion():
    found = {}
    for k in range(60):
        labels = sample_labels(9, k)
        for d in DISCS:
            main = labels.disc[d]
            if main in ("v3", "v4") and main not in found:
                found[main] = (k, d)
        if len(found) == 2:
            break
    assert len(found) == 2
    size = {}
    for main, (k, d) in found.items():
        s = render_study(9, k)
        dy, dx = s.series["t2_sag"].pixel_spacing
        mask = s.label_map == LABELS["herniation"]
        n = _near(mask, s.landmarks[d].xy, 30 / dx)
        size[main] = n * dy * dx  # mm^2
    assert size["v4"] > 1.5 * size["v3"] > 0


def test_degenerated_vertebrae_are_heterogeneous(studies):
    cv = {"v1": [], "v2": []}
    for s in studies:
        t1 = s.series["t1_sag"].pixels[s.annotated_index].astype(np.float64)
        dy, dx = s.series["t1_sag"].pixel_spacing
        r = int(7 / dx)
        for v in VERTEBRAE:
            x, y = s.landmarks[v].coord
            win = t1[y - r : y + r + 1, x - r : x + r + 1]
            if s.landmarks[v].tag == "v1" or "marrow" in s.cues[v]:  # the mottled-marrow cue
                cv[s.landmarks[v].tag].append(win.std() / win.mean())
    assert cv["v1"] and cv["v2"]
    assert np.mean(cv["v2"]) > 1.5 * np.mean(cv["v1"])


def test_osteophytes_only_where_the_cue_is(studies):
    seen = 0
    for s in studies:
        dy, dx = s.series["t2_sag"].pixel_spacing
        spur = s.label_map == LABELS["osteophyte"]
        for v in VERTEBRAE:
            if "osteophyte" in s.cues[v]:
                assert s.landmarks[v].tag == "v2", (s.index, v)
                assert _near(spur, s.landmarks[v].xy, 30 / dx) > 0, (s.index, v)
                seen += 1
        if not any("osteophyte" in s.cues[b] for b in s.cues):
            assert spur.sum() == 0, s.index
    assert seen > 0


def test_degeneration_cues_are_random_subsets():
    """Issue 14 §0: a v2 vertebra shows a non-empty random subset of the cues (not always all, each
    sometimes alone); a normal one none; degenerated discs sometimes neither dark nor low."""
    from spinectx.data.synthetic.anatomy import DISC_CUES, VERTEBRA_CUES, build_spine, sample_acquisition

    subsets, disc_subsets = Counter(), Counter()
    for k in range(60):
        labels = sample_labels(5, k)
        rng = np.random.default_rng(k)
        spine, _ = build_spine(rng, labels, sample_acquisition(rng))
        for v in VERTEBRAE:
            body = spine.bodies[v]
            if body.cls == "v1":
                assert body.cues == () and body.modic_sides == () and body.osteophytes == (), (k, v)
            else:
                assert body.cues and set(body.cues) <= set(VERTEBRA_CUES), (k, v, body.cues)
                assert bool(body.modic_sides) == ("modic" in body.cues)
                assert bool(body.osteophytes) == ("osteophyte" in body.cues)
                subsets[body.cues] += 1
        for d in DISCS:
            disc = spine.discs[d]
            if disc.cls != "v1":
                disc_subsets[disc.cues] += 1
                assert ("desiccation" in disc.cues) == (disc.desiccation >= 0.55), (k, d, disc.desiccation)
            else:
                assert disc.cues == () and disc.desiccation <= 0.4
    n = sum(subsets.values())
    assert n > 50
    for cue in VERTEBRA_CUES:
        assert subsets[(cue,)] > 0, cue  # each cue alone
        assert sum(c for s_, c in subsets.items() if cue not in s_) > 0.3 * n, cue  # often absent
    assert subsets[VERTEBRA_CUES] < 0.3 * n  # all three together is the exception
    assert disc_subsets[()] > 0 and disc_subsets[DISC_CUES] > 0


def test_lateral_slices_fade_but_neighbours_resemble_middle(studies):
    for s in studies[:3]:
        stack = s.series["t2_sag"].pixels.astype(np.float64)
        mid = s.annotated_index
        bone = s.label_map == LABELS["bone"]
        d_near = np.abs(stack[mid + 1] - stack[mid]).mean()
        d_far = np.abs(stack[0] - stack[mid]).mean()
        assert 0 < d_near < d_far
        # the spine changes laterally: vertebral-body area shrinks / fades in the outermost slice
        assert np.abs(stack[0][bone] - stack[mid][bone]).mean() > np.abs(stack[mid + 1][bone] - stack[mid][bone]).mean()


# ----------------------------------------------------------------------------------------------------
# class frequencies, missing / extra landmarks
# ----------------------------------------------------------------------------------------------------


def test_class_frequencies_match_defaults():
    vert, disc = Counter(), Counter()
    v5 = missing = extra = 0
    n = 200
    for k in range(n):
        lab = sample_labels(0, k)
        vert.update(lab.vertebra[v] for v in VERTEBRAE)
        disc.update(lab.disc[d] for d in DISCS)
        v5 += sum(lab.schmorl[d] for d in DISCS)
        missing += len(lab.missing)
        extra += lab.extra
    nv, nd = n * len(VERTEBRAE), n * len(DISCS)
    for c, p in DEFAULT_FREQUENCIES["vertebra"].items():
        assert abs(vert[c] / nv - p) < 0.04, (c, vert[c] / nv, p)
    for c, p in DEFAULT_FREQUENCIES["disc"].items():
        assert abs(disc[c] / nd - p) < 0.04, (c, disc[c] / nd, p)
    assert abs(v5 / nd - DEFAULT_FREQUENCIES["disc_extra"]["v5"]) < 0.025
    assert 0.005 < missing / (n * len(LANDMARKS)) < 0.04
    assert 0.01 < extra / n < 0.12


def test_rendered_labels_follow_sample_labels(studies):
    for s in studies:
        lab = sample_labels(3, s.index)
        for name in LANDMARKS:
            assert s.landmarks[name].tag == lab.tag(name)[1]
            assert s.landmarks[name].annotated == (name not in lab.missing)


def test_custom_frequencies():
    lab = sample_labels(1, 0, {"vertebra": {"v1": 1.0, "v2": 0.0}, "disc": {"v4": 1}, "disc_extra": {"v5": 1.0}})
    assert all(lab.vertebra[v] == "v1" for v in VERTEBRAE)
    assert all(lab.tag(d) == ("disc", "v4,v5") for d in DISCS)
    with pytest.raises(ValueError):
        sample_labels(1, 0, {"disc": {"v5": 1.0}})
    with pytest.raises(KeyError):
        sample_labels(1, 0, {"bones": {"v1": 1.0}})


def test_missing_and_extra_points():
    n_points, extras = [], []
    for k in range(2):
        s = render_study(2, k, p_missing=0.4, p_extra=1.0)
        points = s.annotation["data"][0]["annotation"][0]["data"]["point"]
        n_points.append(len(points))
        rows, cols = s.annotated_frame.shape
        for p in points:
            ident = p["tag"]["identification"]
            if ident not in LANDMARKS:
                extras.append(ident)
                x, y = p["coord"]
                assert 0 <= x < cols and 0 <= y < rows
                assert s.landmarks[ident].extra
        assert {p["tag"]["identification"] for p in points} >= {n for n in LANDMARKS if s.landmarks[n].annotated}
    assert len(extras) == 2 and set(extras) <= {"T11-T12", "T12", "S1"}
    assert min(n_points) < 11
