"""spinectx-bench: the benchmark code runs end to end on tiny settings and measures what it says
(no speed is asserted; speed is printed by `make bench`)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from test_workflow import run


def test_growth_exponents_of_an_exact_power_law():
    from spinectx.cli.bench import growth

    pts = [{"image_size": s, "batch_size": 8, "compute_s": 0.8 * (s / 256) ** 2, "peak_rss_bytes": 1e9 + 100 * s**2} for s in (128, 256, 512)]
    pts += [{"image_size": 256, "batch_size": b, "compute_s": 0.1 * b, "peak_rss_bytes": 1e9} for b in (1, 2, 4)]
    g = growth(pts, batch=8, size_at=256)
    assert g["time_vs_pixels_exponent"] == pytest.approx(1.0)
    assert g["memory_bytes_per_pixel"] == pytest.approx(100.0) and g["memory_fixed_bytes"] == pytest.approx(1e9)
    assert g["time_vs_batch_exponent"] == pytest.approx(1.0, abs=1e-6)


def test_bias_field_multiplies_and_never_wraps():
    from spinectx.bench.pipeline import bias_field_keeps_range

    r = bias_field_keeps_range(order=3, coefficient=0.5)
    assert r["equals_input_times_field"] and r["field_positive"]
    assert r["max_out"] > 1.0  # intensities above the normalised range stay above it


def test_pixel_reads_are_counted(synthetic_root):
    from spinectx.bench.inference import count_pixel_reads
    from spinectx.data.dicom import read_frame, read_header

    files = sorted((synthetic_root / "lumbar_train" / "study0").glob("*.dcm"))
    with count_pixel_reads() as counts:
        for f in files[:3]:
            read_header(f)
        read_frame(files[0])
    assert counts == {"headers": 3, "pixels": 1}


def test_pad_study_adds_unused_series(tmp_path, synthetic_root):
    import shutil

    from spinectx.cli.bench import pad_study
    from spinectx.data.study import index_study

    study = tmp_path / "study"
    shutil.copytree(synthetic_root / "lumbar_train" / "study0", study)
    before = index_study(study)
    assert pad_study(study, 34) == 34 == len(list(study.glob("*.dcm")))
    after = index_study(study)
    assert len(after.series) > len(before.series)
    assert after.inference_stack().series_uid == before.inference_stack().series_uid  # the same frame is predicted


@pytest.mark.slow  # ~100 s: every benchmark section end to end (make test-all); its parts are unit-tested above
def test_bench_end_to_end_on_tiny_settings(tmp_path, synthetic_root, synthetic_rsna_root):
    out = tmp_path / "bench"
    run("spinectx.cli.bench", f"out={out}", f"data_overrides=['data.root={synthetic_root}','data.synthetic=null','data.num_workers=0']",
        "pipeline.size=64", "pipeline.samples=8", "pipeline.naive_samples=4",
        "step.size=64", "step.batch=2", "step.steps=2", "step.warmup=1", "step.rounds=1",
        "precision.size=64", "precision.batch=2", "precision.steps=1", "precision.warmup=0",
        "inference.size=64", "inference.studies=2", "scaling.sizes=[64,96]", "scaling.batch=2", "scaling.batches=[1]",
        "scaling.batch_size_at=64", "scaling.steps=1", "data_wait.size=64", "data_wait.batch=2", "data_wait.steps=3",
        "rsna.size=64", "rsna.train_size=64", "rsna.studies=2", "rsna.warmup=0", "rsna.samples=4", "rsna.views=[spinal]", "rsna.threads=1",
        f"rsna.data_overrides=['data.root={synthetic_rsna_root}','data.synthetic=null','data.num_workers=0']",
        cwd=tmp_path, timeout=900)
    results = json.loads((out / "bench.json").read_text())
    pipe = results["pipeline"]
    assert pipe["ccfnet"]["codec"] != pipe["dense"]["codec"]
    assert pipe["ccfnet"]["samples_per_s"] > 0 and pipe["ccfnet"]["naive_samples_per_s"] > 0
    step = results["step"]
    assert len(step["plain_times"]) == len(step["lightning_times"]) == 2
    assert math.isclose(step["overhead_pct"], 100 * (step["lightning_s"] / step["plain_s"] - 1))
    assert {"fp32", "bf16_mixed", "bf16_mixed_channels_last"} <= set(results["precision"])
    inf = results["inference"]
    assert inf["studies"] == 2 and min(inf["files_per_study"]) >= 32
    assert inf["pixel_reads_per_study"] == 1.0  # headers only for every other file
    assert {(p["image_size"], p["batch_size"]) for p in results["scaling"]["points"]} == {(64, 2), (96, 2), (64, 1)}
    assert all(p["peak_rss_bytes"] > 1e8 for p in results["scaling"]["points"])
    assert 0.0 <= results["data_wait"]["data_wait_share"] < 1.0
    figures = [r["figure"] for r in results["summary"]]
    assert any(f.startswith("data pipeline, CCF-Net") for f in figures)
    assert any(f.startswith("inference per study") for f in figures)
    assert any(f.startswith("RSNA study → 25 rows") for f in figures) and results["rsna"]["tta_on"]["all_25_rows"]
    assert (out / "bench_scaling.png").stat().st_size > 10_000
    assert "| figure |" in (out / "bench.md").read_text()
    assert np.isfinite(results["scaling"]["time_vs_pixels_exponent"])


def test_the_cache_float16_cast_is_exact():
    from spinectx.data.cache import to_float32

    half = np.array([[0.0, 1e-4, 0.5, 1.0, 3.75, 65504.0], [-2.0, np.inf, -np.inf, 6e-8, 1.5, 0.1]], dtype=np.float16)
    out = to_float32(half)
    assert out.dtype == np.float32 and out.shape == half.shape
    assert np.array_equal(out, half.astype(np.float32))
    transposed = to_float32(half.T)  # a non-contiguous view is handled too
    assert np.array_equal(transposed, half.T.astype(np.float32))


def test_dicom_reads_are_counted_per_file(synthetic_rsna_root):
    from spinectx.bench.rsna import count_dicom_reads
    from spinectx.data.dicom import read_frame, read_header

    files = sorted(next((synthetic_rsna_root / "train_images").iterdir()).rglob("*.dcm"))[:3]
    with count_dicom_reads() as reads:
        for f in files:
            read_header(f)
        read_header(files[0])
        read_frame(files[1])
    assert reads.headers == {str(files[0].resolve()): 2, str(files[1].resolve()): 1, str(files[2].resolve()): 1}
    assert reads.pixels == {str(files[1].resolve()): 1}
    import pydicom

    assert not hasattr(pydicom.dcmread, "call_count")  # unwrapped after the block


def test_bench_rsna_section_on_tiny_settings(tmp_path, synthetic_rsna_root):
    out = tmp_path / "bench"
    run("spinectx.cli.bench", f"out={out}", "sections=[rsna]", "device=cpu", "rsna.size=64", "rsna.train_size=64",
        "rsna.studies=2", "rsna.warmup=0", "rsna.samples=4", "rsna.views=[spinal]", "rsna.threads=1",
        f"rsna.data_overrides=['data.root={synthetic_rsna_root}','data.synthetic=null','data.num_workers=0']",
        cwd=tmp_path, timeout=300)
    results = json.loads((out / "bench.json").read_text())
    assert set(results) == {"machine", "rsna", "summary"}
    r = results["rsna"]
    assert (r["size"], r["slices"], r["threads"]) == (64, 3, 1)
    for key in ("tta_on", "tta_off"):
        s = r[key]
        assert s["studies"] == len(s["per_study"]) == 2
        assert s["all_25_rows"] and s["rows_predicted_mean"] > 0
        for p in s["per_study"]:
            assert p["seconds"] > 0 and p["rows_predicted"] + p["rows_prior"] == 25
            assert 0 < p["pixel_reads"] <= p["dicom_files"]
            assert p["pixel_reads"] == p["frames_decoded"] == p["files_with_pixels_read"]  # each used slice decoded once
            assert p["max_header_reads_per_file"] == 1 and p["files_with_header_read"] == p["dicom_files"]
            # the middle three sagittal T2 slices, through the network together
            assert p["slices_predicted"]["spinal"] == 3 and p["model_calls"]["spinal"] == 1
        assert s["seconds_median"] > 0 and s["pixel_reads_within_files"] and s["max_pixel_reads_per_file"] == 1
    train = r["training"]
    assert list(train) == ["spinal"]
    assert train["spinal"]["samples_per_s"] > 0 and train["spinal"]["sample_shape"] == [3, 64, 64]
    figures = [row["figure"] for row in results["summary"]]
    assert any(f.startswith("RSNA study → 25 rows") for f in figures)
    assert any(f.startswith("RSNA 2.5-D training samples, spinal") for f in figures)
    rows = {row["figure"].strip(" …"): row for row in results["summary"]}
    assert rows["header reads per file (max)"]["met"] == "yes"
    assert rows["pixel reads per study, mean (max) of DICOM files per study"]["met"] == "yes"
    assert "| RSNA study" in (out / "bench.md").read_text()
