"""spinectx-bench (make bench): every performance figure measured in one run, beside its reference.

Writes ``OUT/bench.json`` (all measurements + the summary rows), ``OUT/bench.md`` (the table),
``OUT/bench_scaling.png`` (step time and peak memory vs image size and batch size) and prints the
table. Targets are recorded as met or not; the command does not fail on a missed target (speed is
reported, not asserted). ``sections=[pipeline,step]`` runs a subset.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from spinectx.cli import CONF_DIR
from spinectx.cli.failure import fail_cleanly

log = logging.getLogger("spinectx.bench")


def _overrides(cfg: DictConfig, model: list[str], size: int, batch: int | None = None, extra: list[str] = ()) -> list[str]:
    out = [*map(str, model), f"data.synthetic.studies={int(cfg.studies)}", "logger=none", "trainer=cpu",
           *map(str, cfg.get("data_overrides") or []), f"data.image_size={size}", *extra]
    if batch is not None:
        out.append(f"data.batch_size={batch}")
    return out


def _build(overrides: list[str]):
    """(datamodule after setup, LandmarkModule) of a composed training config."""
    from hydra import compose

    tc = compose("train", overrides=overrides)
    datamodule = hydra.utils.instantiate(tc.data, _convert_="all")
    datamodule.setup("fit")
    module = hydra.utils.instantiate(tc.model, landmarks=OmegaConf.to_container(tc.data.landmarks, resolve=True),
                                     input_size=int(tc.data.image_size))
    return datamodule, module


def bench_pipeline(cfg: DictConfig) -> dict:
    from spinectx.bench.pipeline import bias_field_keeps_range, naive_sample, samples_per_second, stage_times, warm_cache

    p = cfg.pipeline
    out = {}
    for key, model in (("ccfnet", cfg.model), ("dense", cfg.dense_model)):
        datamodule, module = _build(_overrides(cfg, list(model), int(p.size)))
        ds = datamodule.train_set
        warm_cache(ds)
        fast = samples_per_second(ds.__getitem__, module.codec, int(p.samples))
        naive = samples_per_second(naive_sample(ds, ds.transform), module.codec, int(p.naive_samples))
        out[key] = {"codec": type(module.codec).__name__, "size": int(p.size), "samples_per_s": fast,
                    "naive_samples_per_s": naive, "speedup_vs_naive": fast / naive,
                    "stages_ms": stage_times(ds, module.codec, 100), "augment": repr(ds.transform)}
        log.info("pipeline %s: %.0f samples/s per worker (naive pydicom re-read: %.0f/s)", key, fast, naive)
    out["bias_field_range"] = bias_field_keeps_range()
    return out


def _module_and_batches(cfg: DictConfig, spec: DictConfig, count: int = 3) -> tuple:
    """The benchmarked module at ``spec.size`` and ``count`` fixed batches of ``spec.batch``
    held-out samples (evaluation transform), reused by every timed step."""
    from torch.utils.data import default_collate

    datamodule, module = _build(_overrides(cfg, list(cfg.model), int(spec.size), int(spec.batch)))
    ds, batch = datamodule.val_set, int(spec.batch)
    return module, [default_collate([ds[(i * batch + j) % len(ds)] for j in range(batch)]) for i in range(count)]


def bench_step(cfg: DictConfig) -> dict:
    import statistics

    from spinectx.bench.step import lightning_loop, plain_loop, training_flops

    s = cfg.step
    device = _device(cfg)
    module, batches = _module_and_batches(cfg, s)
    plain, light = [], []
    for _ in range(int(s.rounds)):  # alternate, so drift in machine load hits both alike
        plain += plain_loop(module, batches, int(s.steps), int(s.warmup), str(s.precision), device=device)
        light += lightning_loop(module, batches, int(s.steps), int(s.warmup), _lightning_precision(str(s.precision)),
                                device=device)
    p, q = statistics.median(plain), statistics.median(light)
    flops = training_flops(module.net, int(s.size), int(s.batch))
    log.info("step: plain %.3f s, Lightning %.3f s (%+.1f %%)", p, q, 100 * (q / p - 1))
    out = {"size": int(s.size), "batch": int(s.batch), "device": device, "precision": str(s.precision),
           "channels_last": bool(module.hparams.channels_last), "plain_s": p, "lightning_s": q,
           "overhead_pct": 100 * (q / p - 1), "images_per_s": int(s.batch) / q, "tflops_achieved": flops / q / 1e12,
           "plain_times": plain, "lightning_times": light}
    if cfg.get("peak_tflops"):
        out["share_of_peak"] = out["tflops_achieved"] / float(cfg.peak_tflops)
    return out


def _device(cfg: DictConfig) -> str:
    import torch

    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(cfg.device)


def _lightning_precision(precision: str) -> str:
    return {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}.get(precision, precision)


def bench_precision(cfg: DictConfig) -> dict:
    import statistics

    import torch

    from spinectx.bench.step import plain_loop

    s = cfg.precision
    device = _device(cfg)
    module, batches = _module_and_batches(cfg, s)
    out = {"size": int(s.size), "batch": int(s.batch), "device": device,
           "capability": torch.cuda.get_device_name(0) if device == "cuda" else torch.backends.cpu.get_cpu_capability()}
    for key, precision, cl in (("fp32", "32", False), ("fp32_channels_last", "32", True), ("bf16_mixed", "bf16", False),
                               ("bf16_mixed_channels_last", "bf16", True)):
        out[key] = statistics.median(plain_loop(module, batches, int(s.steps), int(s.warmup), precision, cl, device))
        log.info("precision %s: %.3f s/step", key, out[key])
    return out


def pad_study(folder: Path, min_files: int) -> int:
    """Add copies of the study's series other than the predicted one (axial first; new series and
    instance UIDs) until the folder holds ``min_files`` DICOM files, as real studies hold more
    series than are used. Returns the number of files."""
    import pydicom
    from pydicom.uid import generate_uid

    from spinectx.data.study import index_study

    index = index_study(folder)
    used = index.inference_stack().series_uid
    others = sorted((s for s in index.stacks if s.series_uid != used), key=lambda s: s.plane != "axial")
    sources = [Path(h.path) for s in others for h in s.slices]
    n, copy = len(list(folder.glob("*.dcm"))), 0
    while n < min_files and sources:
        copy += 1
        series_uid = generate_uid()
        for f in sources:
            if n >= min_files:
                break
            ds = pydicom.dcmread(f)
            ds.SeriesInstanceUID = series_uid
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.SeriesNumber = int(ds.get("SeriesNumber", 0) or 0) + 100 * copy
            ds.save_as(folder / f"extra{copy}_{f.name}")
            n += 1
    return n


def bench_inference(cfg: DictConfig, workdir: Path) -> dict:
    import lightning as L
    import torch

    from spinectx.bench.inference import predict_folder
    from spinectx.data.synthetic import generate_dataset
    from spinectx.inference import load_module

    s = cfg.inference
    root = workdir / "inference"
    generate_dataset(root, studies=int(s.studies), seed=7, split="lumbar_testA")
    folder = root / "lumbar_testA"
    files = [pad_study(d, int(s.min_files)) for d in sorted(folder.iterdir()) if d.is_dir()]
    _, module = _build(_overrides(cfg, list(cfg.model), int(s.size)))
    device = _device(cfg)
    ckpt = workdir / "untrained.ckpt"  # prediction speed does not depend on the weights
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": L.__version__}, ckpt)
    start = time.perf_counter()
    loaded = load_module(ckpt, device=device)
    load_s = time.perf_counter() - start
    predict_folder(loaded, folder, workdir / "warmup.json")  # first calls (allocator, kernels) untimed
    out = predict_folder(loaded, folder, workdir / "submission.json")
    out.update(model_load_s=load_s, size=int(s.size), files_per_study=files, device=device,
               threads=torch.get_num_threads())
    log.info("inference: %.3f s per study (%d files each, %.1f pixel reads per study)", out["seconds_per_study"],
             min(files), out["pixel_reads_per_study"])
    return out


def _rsna_build(cfg: DictConfig, view: str, size: int, setup: bool = True):
    """(datamodule, LandmarkModule, data root) of one RSNA view: the benchmarked model with a
    multiclass head, ``rsna.slices`` input slices, at ``size`` px (the synthetic set is generated
    on first use when the datamodule is set up)."""
    from hydra import compose

    r = cfg.rsna
    tc = compose("train", overrides=[*map(str, cfg.model), "model.class_head=multiclass", "data=rsna2024_synthetic",
                                     f"data.view={view}", f"data.synthetic.studies={int(r.studies)}", "logger=none",
                                     "trainer=cpu", f"data.slices={int(r.slices)}", *map(str, r.get("data_overrides") or []),
                                     f"data.image_size={size}"])
    datamodule = hydra.utils.instantiate(tc.data, _convert_="all")
    if setup:
        datamodule.setup("fit")
    module = hydra.utils.instantiate(tc.model, landmarks=OmegaConf.to_container(tc.data.landmarks, resolve=True),
                                     input_size=size, input_slices=int(r.slices))
    return datamodule, module, Path(str(tc.data.root))


def bench_rsna(cfg: DictConfig) -> dict:
    """RSNA 2024: study folder → 25 rows (three views' untrained modules, flip TTA on and off) and
    2.5-D training samples/s per worker for each of ``rsna.views``."""
    import torch

    from spinectx.bench.rsna import study_dirs, time_studies, thread_limit, training_throughput
    from spinectx.data.rsna import read_series_descriptions

    r = cfg.rsna
    size, device, threads = int(r.size), _device(cfg), r.get("threads")
    out: dict = {"size": int(size), "slices": int(r.slices), "device": device,
                 "threads": int(threads) if threads else torch.get_num_threads()}
    modules, root = {}, None
    for view in ("spinal", "foraminal", "subarticular"):
        datamodule, module, root = _rsna_build(cfg, view, size, setup=root is None)  # the first setup writes the data
        modules[view] = module.to(device).eval()
    problems: list[str] = []
    descriptions = read_series_descriptions(root / "train_series_descriptions.csv", problems)
    folders = study_dirs(root, int(r.studies))
    for key, tta in (("tta_on", True), ("tta_off", False)):
        for module in modules.values():
            module.hparams.tta = tta
        with thread_limit(threads):
            out[key] = time_studies(folders, modules, descriptions, warmup=int(r.warmup))
        log.info("rsna study → 25 rows, tta=%s: %.2f s per study (median; %.1f model calls, %.1f pixel reads of %.0f files)",
                 tta, out[key]["seconds_median"], out[key]["model_calls_mean"], out[key]["pixel_reads_mean"],
                 out[key]["dicom_files_mean"])
    out["training"] = {}
    for view in r.views:
        datamodule, module, _ = _rsna_build(cfg, str(view), int(r.train_size))
        t = training_throughput(datamodule.train_set, module.codec, int(r.samples))
        out["training"][str(view)] = {"size": int(r.train_size), **t}
        log.info("rsna training samples, %s, %d px: %.0f samples/s per worker", view, int(r.train_size), t["samples_per_s"])
    return out


def run_probe(overrides: list[str], steps: int, warmup: int = 3) -> dict:
    """A training probe in a fresh process (so its peak memory is its own)."""
    spec = json.dumps({"overrides": overrides, "steps": steps, "warmup": warmup})
    env = {**os.environ, "SPINECTX_CONF": CONF_DIR}
    proc = subprocess.run([sys.executable, "-m", "spinectx.bench.probe", spec], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark probe {overrides} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_scaling(cfg: DictConfig) -> dict:
    s = cfg.scaling
    points = []
    grid = [(int(z), int(s.batch)) for z in s.sizes]
    grid += [(int(s.batch_size_at), int(b)) for b in s.batches if (int(s.batch_size_at), int(b)) not in grid]
    for size, batch in grid:
        extra = ["data.num_rep=20"]
        r = run_probe(_overrides(cfg, list(cfg.model), size, batch, extra), int(s.steps), warmup=2)
        points.append(r)
        log.info("scaling %d px × %d: %.3f s/step, peak RSS %.2f GB", size, batch, r["compute_s"], r["peak_rss_bytes"] / 1e9)
    return {"points": points, **growth(points, int(s.batch), int(s.batch_size_at))}


def _series(points: list[dict], batch: int, size_at: int) -> tuple[list[dict], list[dict]]:
    """The scaling points along image size (at ``batch``) and along batch size (at ``size_at``)."""
    by_size = sorted((p for p in points if p["batch_size"] == batch), key=lambda p: p["image_size"])
    by_batch = sorted((p for p in points if p["image_size"] == size_at), key=lambda p: p["batch_size"])
    return by_size, by_batch


def _line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares ``y = slope · x + intercept``."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((a - mx) ** 2 for a in xs)
    slope = sum((a - mx) * (b - my) for a, b in zip(xs, ys)) / den if den else float("nan")
    return slope, my - slope * mx


def growth(points: list[dict], batch: int, size_at: int) -> dict:
    """How cost grows: log-log slopes of step time vs pixels per image (at ``batch``) and vs batch
    size (at ``size_at``), and a straight-line fit of peak memory vs pixels per image
    (bytes per pixel and the fixed part)."""
    def exponent(xs, ys):
        return _line([math.log(x) for x in xs], [math.log(y) for y in ys])[0]

    by_size, by_batch = _series(points, batch, size_at)
    out = {}
    if len(by_size) > 1:
        pixels = [p["image_size"] ** 2 for p in by_size]
        out["time_vs_pixels_exponent"] = exponent(pixels, [p["compute_s"] for p in by_size])
        # per pixel of each image, the batch held fixed
        out["memory_bytes_per_pixel"], out["memory_fixed_bytes"] = _line(pixels, [p["peak_rss_bytes"] for p in by_size])
    if len(by_batch) > 1:
        out["time_vs_batch_exponent"] = exponent([p["batch_size"] for p in by_batch], [p["compute_s"] for p in by_batch])
    return out


def plot_scaling(scaling: dict, path: Path, batch: int, size_at: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_size, by_batch = _series(scaling["points"], batch, size_at)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, series, key, label in ((axes[0], by_size, "image_size", f"image size (px), batch {batch}"),
                                   (axes[1], by_batch, "batch_size", f"batch size, {size_at} px")):
        x = [p[key] for p in series]
        ax.plot(x, [p["compute_s"] for p in series], "o-", color="tab:blue", label="step time (s)")
        ax.set_xlabel(label)
        ax.set_ylabel("seconds per training step", color="tab:blue")
        ax.grid(alpha=0.3)
        twin = ax.twinx()
        twin.plot(x, [p["peak_rss_bytes"] / 1e9 for p in series], "s--", color="tab:red", label="peak RSS (GB)")
        twin.set_ylabel("peak RSS of the training process (GB)", color="tab:red")
    fig.suptitle("CCF-Net training step on this machine: time and memory")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def bench_data_wait(cfg: DictConfig) -> dict:
    s = cfg.data_wait
    r = run_probe(_overrides(cfg, list(cfg.model), int(s.size), int(s.batch), ["data.num_rep=20"]), int(s.steps))
    log.info("data wait at %d px: %.1f %% of each step (%d workers)", s.size, 100 * r["data_wait_share"], r["num_workers"])
    return r


def summary_rows(results: dict, cfg: DictConfig) -> list[dict]:
    """Figure | measured | reference | ratio | target | met, from whatever sections ran."""
    t = cfg.targets
    rows = []

    def add(figure, measured, reference="", ratio="", target="", met=None):
        rows.append({"figure": figure, "measured": measured, "reference": reference, "ratio": ratio, "target": target,
                     "met": "" if met is None else ("yes" if met else "NO")})

    if "pipeline" in results:
        for key, name in (("ccfnet", "CCF-Net"), ("dense", "dense heatmap")):
            r = results["pipeline"].get(key)
            if not r:
                continue
            ok = r["samples_per_s"] >= t.pipeline_samples_per_s if key == "ccfnet" else None
            add(f"data pipeline, {name}, {r['size']} px (samples/s per worker)", f"{r['samples_per_s']:.0f}",
                f"{r['naive_samples_per_s']:.0f} (pydicom re-read)", f"{r['speedup_vs_naive']:.1f}×",
                f"≥ {t.pipeline_samples_per_s}" if key == "ccfnet" else "", ok)
        r = results["pipeline"].get("ccfnet")
        if r:
            ref = float(cfg.reference_release_samples_per_s)
            st = r["stages_ms"]
            add("  … vs the paper's released pipeline (quoted)", f"{r['samples_per_s']:.0f}", f"{ref:.0f}",
                f"{r['samples_per_s'] / ref:.1f}×")
            add("  … per sample: read / augment (bias field) / encode (ms)",
                f"{st['read_ms']:.2f} / {st['augment_ms']:.2f} ({st['bias_field_ms']:.2f}) / {st['encode_ms']:.2f}")
        b = results["pipeline"].get("bias_field_range")
        if b:
            add("bias field keeps intensities > range (no 8-bit wrap)", f"max {b['max_in']:.1f} → {b['max_out']:.1f}",
                "", "", "img × field exactly", b["equals_input_times_field"] and b["field_positive"])
    if "step" in results:
        r = results["step"]
        add(f"training step, Lightning vs plain loop ({r['size']} px × {r['batch']}) (s)", f"{r['lightning_s']:.3f}",
            f"{r['plain_s']:.3f}", f"{r['overhead_pct']:+.1f} %", f"≤ {t.lightning_overhead_pct} %",
            r["overhead_pct"] <= t.lightning_overhead_pct)
        add(f"  … throughput on {r['device']} ({r['precision']}, channels_last={r['channels_last']})",
            f"{r['images_per_s']:.1f} img/s", f"{1e3 * r['tflops_achieved']:.0f} GFLOP/s achieved",
            f"{100 * r['share_of_peak']:.1f} % of peak" if "share_of_peak" in r else "")
    if "precision" in results:
        r = results["precision"]
        for key in ("fp32_channels_last", "bf16_mixed", "bf16_mixed_channels_last"):
            add(f"step {key} vs fp32 ({r['size']} px × {r['batch']}, {r['capability']}) (s)", f"{r[key]:.3f}",
                f"{r['fp32']:.3f}", f"{r[key] / r['fp32']:.2f}×")
    if "inference" in results:
        r = results["inference"]
        add(f"inference per study, {r['size']} px, tta={r['tta']} (s)", f"{r['seconds_per_study']:.3f}", "", "",
            f"≤ {t.seconds_per_study}", r["seconds_per_study"] <= t.seconds_per_study)
        add("  … pixel decodes per study (files per study)", f"{r['pixel_reads_per_study']:.1f}",
            f"{min(r['files_per_study'])}–{max(r['files_per_study'])} files", "", "1", r["pixel_reads_per_study"] <= 1.0)
    if "rsna" in results:
        _rsna_rows(results["rsna"], t, add)
    if "data_wait" in results:
        r = results["data_wait"]
        add(f"data wait share of a step, {r['image_size']} px × {r['batch_size']}, {r['num_workers']} workers",
            f"{100 * r['data_wait_share']:.1f} %", f"step {r['step_s']:.3f} s", "", f"< {100 * t.data_wait_share:.0f} %",
            r["data_wait_share"] < t.data_wait_share)
    if "scaling" in results:
        sc = results["scaling"]
        big = [p for p in sc["points"] if p["image_size"] == 512 and p["batch_size"] == 8]
        if big:
            gb = big[0]["peak_rss_bytes"] / 1e9
            add("peak RSS of training at 512 px × 8 (GB)", f"{gb:.2f}", f"{big[0]['peak_total_rss_bytes'] / 1e9:.2f} with workers",
                "", f"< {t.train_rss_gb_512_b8}", gb < t.train_rss_gb_512_b8)
        if "time_vs_pixels_exponent" in sc:
            add("step time ∝ pixels^k", f"k = {sc['time_vs_pixels_exponent']:.2f}")
        if "time_vs_batch_exponent" in sc:
            add("step time ∝ batch^k", f"k = {sc['time_vs_batch_exponent']:.2f}")
        if "memory_bytes_per_pixel" in sc:
            add("peak RSS ≈ fixed + per pixel × H·W (batch 8)",
                f"{sc['memory_fixed_bytes'] / 1e9:.2f} GB + {sc['memory_bytes_per_pixel'] / 1e3:.2f} kB/px")
    return rows


def _rsna_rows(r: dict, t: DictConfig, add) -> None:
    """Summary rows of the ``rsna`` section (see :func:`bench_rsna`)."""
    on, off = r["tta_on"], r["tta_off"]
    target = float(t.rsna_seconds_per_study)
    add(f"RSNA study → 25 rows, 3 views, {r['size']} px × {r['slices']} slices, tta=on, {r['device']}, "
        f"{r['threads']} threads (s per study, median)",
        f"{on['seconds_median']:.2f}", f"mean {on['seconds_mean']:.2f}, max {on['seconds_max']:.2f}",
        f"{target / on['seconds_median']:.2f}×", f"≤ {target:g}", on["seconds_median"] <= target)
    add("  … tta=off (s per study, median)", f"{off['seconds_median']:.2f}", f"mean {off['seconds_mean']:.2f}",
        f"tta costs {on['seconds_median'] / off['seconds_median']:.2f}×", f"≤ {target:g}", off["seconds_median"] <= target)
    add("  … model calls per study (slices through the network; s per call, tta on / off)",
        f"{on['model_calls_mean']:.1f} ({on['slices_predicted_mean']:.1f} slices)",
        f"{on['seconds_per_model_call']:.3f} / {off['seconds_per_model_call']:.3f} s")
    add("  … pixel reads per study, mean (max) of DICOM files per study", f"{on['pixel_reads_mean']:.1f} ({on['pixel_reads_max']})",
        f"{on['dicom_files_mean']:.0f} files ({on['dicom_files_min']}–{on['dicom_files_max']})",
        f"{on['pixel_reads_mean'] / on['dicom_files_mean']:.0%} decoded", "≤ 1 per file",
        on["max_pixel_reads_per_file"] <= 1 and on["pixel_reads_within_files"])
    add("  … header reads per file (max)", f"{on['max_header_reads_per_file']}",
        "every file" if on["headers_of_every_file"] else "not every file", "", "1", on["max_header_reads_per_file"] == 1)
    add("  … rows per study: predicted / prior-filled (mean)", f"{on['rows_predicted_mean']:.1f} / {on['rows_prior_mean']:.1f}",
        "", "", "25", on["all_25_rows"])
    goal = float(t.rsna_samples_per_s)
    for view, v in r.get("training", {}).items():
        st = v["stages_ms"]
        add(f"RSNA 2.5-D training samples, {view}, {v['size']} px × {v['sample_shape'][0]} slices (samples/s per worker)",
            f"{v['samples_per_s']:.0f}",
            f"read {st['read_ms']:.1f} / augment {st['augment_ms']:.1f} / encode {st['encode_ms']:.1f} ms",
            f"{v['samples_per_s'] / goal:.2f}×", f"≥ {goal:g}", v["samples_per_s"] >= goal)


def markdown(rows: list[dict]) -> str:
    head = "| figure | measured | reference | ratio | target | met |\n|---|---:|---:|---:|---:|---|\n"
    return head + "".join(f"| {r['figure']} | {r['measured']} | {r['reference']} | {r['ratio']} | {r['target']} | {r['met']} |\n"
                          for r in rows)


def print_rows(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="spinectx-bench")
    for col in ("figure", "measured", "reference", "ratio", "target", "met"):
        table.add_column(col, justify="left" if col == "figure" else "right")
    for r in rows:
        table.add_row(*(str(r[c]) for c in ("figure", "measured", "reference", "ratio", "target", "met")))
    Console(width=160).print(table)


SECTIONS = ("pipeline", "step", "precision", "inference", "rsna", "scaling", "data_wait")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="bench")
@fail_cleanly("spinectx-bench")
def main(cfg: DictConfig) -> None:
    import platform

    import torch

    unknown = set(cfg.sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"spinectx-bench: unknown section(s) {sorted(unknown)}; choose from {list(SECTIONS)}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                                 "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                                 "platform": platform.platform(), "torch": torch.__version__,
                                 "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}}
    with tempfile.TemporaryDirectory() as tmp:
        runners = {"pipeline": bench_pipeline, "step": bench_step, "precision": bench_precision,
                   "inference": lambda c: bench_inference(c, Path(tmp)), "rsna": bench_rsna, "scaling": bench_scaling,
                   "data_wait": bench_data_wait}
        for section in (s for s in SECTIONS if s in cfg.sections):
            log.info("— %s", section)
            results[section] = runners[section](cfg)
    rows = summary_rows(results, cfg)
    results["summary"] = rows
    (out / "bench.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "bench.md").write_text(markdown(rows))
    if "scaling" in results:
        plot_scaling(results["scaling"], out / "bench_scaling.png", int(cfg.scaling.batch), int(cfg.scaling.batch_size_at))
    print_rows(rows)
    log.info("wrote %s", ", ".join(str(p) for p in sorted(out.iterdir())))


if __name__ == "__main__":
    main()
