"""The independent TianChi-layout generator (experiments/classifiers/independent_tianchi.py) read by
the suite's own TianChi reader, and its labels visible in the pixels."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from spinectx.data.dicom import read_frame
from spinectx.data.records import build_index
from spinectx.data.study import index_folder

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "classifiers" / "independent_tianchi.py"


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("independent_tianchi", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _points(entry: dict) -> dict:
    return {p["tag"]["identification"]: p for p in entry["data"][0]["annotation"][0]["data"]["point"]}


def test_the_suites_reader_loads_every_study_as_written(gen, tmp_path, landmarks):
    summary = gen.generate(tmp_path, studies=2, seed=11)
    entries = {e["studyUid"]: e for e in json.loads((tmp_path / "lumbar_train150_annotation.json").read_text())}
    index = build_index(tmp_path, ["lumbar_train150"], landmarks)
    assert len(index.records) == 2 and not index.skipped_studies and not index.problems
    assert sum(summary["counts"].get(f"vertebra_{c}", 0) for c in ("v1", "v2")) == 10
    for rec in index.records:
        entry = entries[rec.study_uid]
        points = _points(entry)
        assert np.isfinite(rec.keypoints).all() and rec.keypoints.shape == (11, 2)  # all 11 landmarks
        for k, name in enumerate(landmarks.names):
            tag = points[name]["tag"]
            assert rec.tags[k] == tuple((tag.get("vertebra") or tag["disc"]).split(","))
            assert list(rec.keypoints[k]) == points[name]["coord"]
            assert points[name]["zIndex"] == rec.slice_index  # zIndex = the frame's place along the normal
        assert rec.instance_uid == entry["data"][0]["instanceUid"] and not rec.problems
        assert rec.stack.startswith("sagittal T2") and len(rec.slices) >= 9
        assert abs(rec.slice_index - len(rec.slices) // 2) <= 2
        study = index_folder(rec.folder)[0]
        kinds = sorted((s.plane, s.weighting) for s in study.stacks)
        assert kinds == [("axial", "T2"), ("sagittal", "T1"), ("sagittal", "T2")], study.summary()
        annotated = next(s for s in study.stacks if s.series_uid == rec.series_uid)
        assert annotated.slices[rec.slice_index].echo_time >= 60  # a T2 frame, whatever the description says
        assert annotated.slices[rec.slice_index].pixel_spacing == rec.pixel_spacing


def test_a_cue_changes_the_pixels_near_its_landmark_only(gen, tmp_path, landmarks):
    """Same study (anatomy, noise, acquisition) at cue strength 0 and 1, with every landmark normal
    but L3 (degenerated vertebra) and L4-L5 (protrusion): the annotated frames differ near those
    two landmarks and nowhere else."""
    labels = {name: "v1" for name in landmarks.names} | {"L3": "v2", "L4-L5": "v3"}
    frames = {}
    for strength in (0.0, 1.0):
        out = tmp_path / f"s{strength}"
        result = gen.generate_study(out, index=3, seed=5, cue_strength=strength, labels=labels)
        [rec] = build_index(_with_annotation(out, result["entry"]), ["lumbar_train150"], landmarks).records
        frames[strength] = (read_frame(rec.frame_ref), rec)
    (off, rec), (on, _) = frames[0.0], frames[1.0]
    assert [t for t in rec.tags] == [tuple(labels[n].split(",")) for n in landmarks.names]
    diff = np.abs(on - off)
    rows, cols = np.indices(diff.shape)
    dy, dx = rec.pixel_spacing
    near = {}
    for name in ("L3", "L4-L5"):
        x, y = rec.keypoints[landmarks.index[name]]
        near[name] = np.hypot((cols - x) * dx, (rows - y) * dy) < 35.0  # mm: a body's half diagonal plus a corner spur
        assert (diff[near[name]] > 0).sum() > 20, f"no cue drawn near {name}"
    elsewhere = ~(near["L3"] | near["L4-L5"])
    assert diff[elsewhere].max() == 0


def _with_annotation(root: Path, entry: dict) -> Path:
    (root / "lumbar_train150_annotation.json").write_text(json.dumps([entry]))
    return root


def test_same_seed_same_study_and_labels_override_only_the_cues(gen, tmp_path):
    a = gen.generate_study(tmp_path / "a", index=1, seed=9)["entry"]
    b = gen.generate_study(tmp_path / "b", index=1, seed=9)["entry"]
    assert a == b
    files = sorted(p.name for p in (tmp_path / "a" / "lumbar_train150" / "study1").iterdir())
    folder_a, folder_b = (tmp_path / x / "lumbar_train150" / "study1" for x in ("a", "b"))
    assert all((folder_a / f).read_bytes() == (folder_b / f).read_bytes() for f in files)
    c = gen.generate_study(tmp_path / "c", index=1, seed=9, labels={"L1": "v2", "L5-S1": "v4,v5"})["entry"]
    pa, pc = _points(a), _points(c)
    assert pc["L1"]["tag"]["vertebra"] == "v2" and pc["L5-S1"]["tag"]["disc"] == "v4,v5"
    assert {n: p["coord"] for n, p in pa.items()} == {n: p["coord"] for n, p in pc.items()}  # same anatomy
    with pytest.raises(ValueError, match="unknown identifications"):
        gen.plan_study(9, 1, labels={"T11-T12": "v2"})


def test_class_frequencies_depend_on_the_level_like_the_released_counts(gen):
    rng = np.random.default_rng(0)
    draws = [gen._draw_labels(rng) for _ in range(3000)]
    abnormal = {name: np.mean([d[name] != "v1" for d in draws]) for name in draws[0]}
    assert abnormal["L5"] > abnormal["L1"] + 0.15 and abnormal["L4-L5"] > abnormal["T12-L1"] + 0.4
    vertebra_v2 = np.mean([abnormal[n] for n in ("L1", "L2", "L3", "L4", "L5")])
    assert 0.72 < vertebra_v2 < 0.86  # released: 814 / 1005 = 0.81
    codes = Counter(c for d in draws for n in gen.DISCS for c in d[n].split(","))
    discs = 3000 * 6
    assert 0.40 < codes["v1"] / discs < 0.55 and 0.02 < codes["v4"] / discs < 0.07  # released: 0.48, 0.04
    assert 0.03 < codes["v5"] / discs < 0.08  # released: 64 / 1206 = 0.053


def test_bad_arguments_are_refused(gen, tmp_path, capsys):
    for argv in (["--out", str(tmp_path), "--studies", "0"], ["--out", str(tmp_path), "--cue-strength", "-1"]):
        with pytest.raises(SystemExit) as exc:
            gen.main(argv)
        assert exc.value.code == 2
    assert "--studies must be at least 1" in capsys.readouterr().err


def test_out_with_other_content_is_refused_and_an_old_dataset_replaced(gen, tmp_path, capsys):
    other = tmp_path / "suite"
    (other / "lumbar_train").mkdir(parents=True)
    with pytest.raises(SystemExit) as exc:
        gen.main(["--out", str(other), "--studies", "1"])
    assert exc.value.code == 2 and "other content" in capsys.readouterr().err
    assert sorted(p.name for p in other.iterdir()) == ["lumbar_train"]  # nothing written beside it
    out = tmp_path / "indep"
    gen.generate(out, studies=2, seed=1)
    gen.generate(out, studies=1, seed=1)  # a smaller rerun leaves no study of the larger one behind
    assert sorted(p.name for p in (out / gen.SPLIT).iterdir()) == ["study1"]
