"""Study-level RSNA prediction (src/spinectx/rsna_inference.py) with three briefly trained view
checkpoints on generated studies: every study gives 25 rows (predicted or the prior with a reason),
the points come from the right series, the subarticular slice is the level's nearest axial slice,
and only the slices used are decoded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spinectx.data.geometry import nearest_slice, pixel_to_patient
from spinectx.data.rsna_submission import assemble_submission, view_prior_columns
from spinectx.inference import load_module
from spinectx.metrics.rsna import read_submission_csv, rsna_score, solution_from_train
from spinectx.rsna_inference import DESCRIPTIONS, predict_study, read_study_stacks
from tests.test_rsna_on_synthetic import quirk_study
from tests.test_train import make_cfg

VIEWS = ("spinal", "foraminal", "subarticular")


@pytest.fixture(scope="module")
def modules(tmp_path_factory, synthetic_rsna_root):
    from spinectx.cli.train import train

    out = {}
    for view in VIEWS:
        tmp = tmp_path_factory.mktemp(f"ckpt_{view}")
        cfg = make_cfg(tmp, synthetic_rsna_root, ["data=rsna2024", f"data.view={view}", "data.num_folds=3",
                                                  "trainer.max_epochs=1", "+trainer.limit_train_batches=1",
                                                  "evaluate=false", "overlay_studies=0"])
        train(cfg)
        out[view] = load_module(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", "cpu")
    return out


def descriptions(root: Path) -> dict[str, str]:
    frame = pd.read_csv(root / "train_series_descriptions.csv", dtype=str)
    return dict(zip(frame.series_id, frame.series_description))


def test_every_study_gives_its_25_rows_and_a_submission_that_scores(modules, synthetic_rsna_root, tmp_path):
    root = synthetic_rsna_root
    desc = descriptions(root)
    studies = sorted(p.name for p in (root / "train_images").iterdir() if p.is_dir())
    results = {s: predict_study(root / "train_images" / s, modules, desc) for s in studies}
    prior = {}
    for view, module in modules.items():
        prior.update(view_prior_columns(view, module.landmarks.names, module.class_prior))
    predicted = {r: p for res in results.values() for r, p in res.rows.items()}
    reasons = {r: why for res in results.values() for r, why in res.reasons.items()}
    frame, problems = assemble_submission(studies, predicted, prior, reasons)
    assert len(frame) == 25 * len(studies) and list(frame.row_id) == sorted(frame.row_id)
    for res in results.values():  # each row is predicted or has its reason, never both, never neither
        assert not set(res.rows) & set(res.reasons) and len(res.rows) + len(res.reasons) == 25
        assert len(res.points) == len(res.rows)
    # the study whose series is missing on disk: that view's rows take the prior, saying why
    gone = results[quirk_study(root, "missing_series")]
    assert 5 <= len(gone.reasons) and all("series in" in why or "spinal prediction" in why for why in gone.reasons.values())
    assert {p["row_id"] for p in problems} == set(reasons)
    path = tmp_path / "submission.csv"
    frame.to_csv(path, index=False)
    train = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    scored = rsna_score(read_submission_csv(path), solution_from_train(train))
    assert np.isfinite(scored["score"]) and scored["rows_scored"] > 150


def test_points_come_from_their_views_series_and_the_nearest_axial_slice(modules, synthetic_rsna_root):
    root = synthetic_rsna_root
    desc = descriptions(root)
    study = quirk_study(root, "axial_two_stacks")
    res = predict_study(root / "train_images" / study, modules, desc)
    stacks, _ = read_study_stacks(root / "train_images" / study, desc)
    by_row = {p["row_id"]: p for p in res.points}
    for row, p in by_row.items():
        expected = ("Sagittal T2/STIR" if "spinal" in row else "Sagittal T1" if "foraminal" in row else "Axial T2")
        assert desc[p["series_id"]] == expected, row
    # each level's subarticular slice is the axial slice nearest the spinal point of that level
    t2 = {h.instance_number: h for st in stacks[DESCRIPTIONS["spinal"]] for h in st.slices}
    for level in ("l1_l2", "l3_l4", "l5_s1"):
        canal = by_row[f"{study}_spinal_canal_stenosis_{level}"]
        point = pixel_to_patient(t2[canal["instance_number"]], (canal["x"], canal["y"]))
        pick = nearest_slice(stacks[DESCRIPTIONS["subarticular"]], point)
        if pick is None:
            assert f"{study}_left_subarticular_stenosis_{level}" in res.reasons
            continue
        left = by_row[f"{study}_left_subarticular_stenosis_{level}"]
        assert left["instance_number"] == pick.stack.slices[pick.index].instance_number
    # pixels are decoded only for the slices used: far fewer than the study's files
    files = len(list((root / "train_images" / study).glob("*/*.dcm")))
    assert 0 < res.pixel_reads < files  # each slice once; axial slices of unused levels never
