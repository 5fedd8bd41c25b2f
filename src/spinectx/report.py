"""Aggregate sweep results into the paper's tables and the data-fraction figure.

A sweep is any folder tree of job directories; a job directory holds ``.hydra/config.yaml`` (what
ran) and either ``metrics.json`` (finished: its ``evaluation`` block, else its best epoch) or
``error.txt`` (failed). Jobs are grouped into cells by (method, backbone, MSC, data fraction);
each cell reports mean ± std over its folds and how many runs it holds. Paper cells without a
finished run are listed as missing or failed, never dropped.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from spinectx.lit.callbacks import METRIC_KEYS
from spinectx.reference import METHOD_OF_MODEL, PaperRow, paper_rows


@dataclass
class Job:
    """One job directory: what ran and how it ended (``metrics`` in [0, 1], None when it failed)."""

    path: Path
    method: str
    backbone: str
    msc: bool
    fraction: float
    fold: int
    metrics: dict | None
    complexity: dict = field(default_factory=dict)
    error: str | None = None


def read_job(job_dir: Path) -> Job | None:
    """A job from its directory, or None when it is not a job (no ``.hydra/config.yaml``)."""
    config = job_dir / ".hydra" / "config.yaml"
    if not config.is_file():
        return None
    cfg = OmegaConf.load(config)
    model = cfg.get("model")
    if not model or "name" not in model:  # not a training job (e.g. an evaluation)
        return None
    data = cfg.get("data", {})
    metrics, complexity, error = None, {}, None
    metrics_file = job_dir / "metrics.json"
    if metrics_file.is_file():
        payload = json.loads(metrics_file.read_text())
        source = payload.get("evaluation") or payload
        if all(k in source for k in METRIC_KEYS):
            metrics = {k: float(source[k]) for k in METRIC_KEYS}
        complexity = payload.get("complexity", {})
    if (job_dir / "error.txt").is_file():
        lines = (job_dir / "error.txt").read_text().strip().splitlines()
        error = lines[-1] if lines else "failed"
    elif metrics is None:
        error = "unfinished (no metrics.json with the table metric)"
    return Job(
        path=job_dir,
        method=METHOD_OF_MODEL.get(str(model.get("name")), str(model.get("name"))),
        backbone=str(model.get("backbone")),
        msc=bool(model.get("msc")),
        fraction=float(data.get("fraction", 1.0)),
        fold=int(data.get("fold", 0)),
        metrics=metrics,
        complexity=complexity,
        error=error,
    )


def find_jobs(sweep: str | Path) -> list[Job]:
    """Every job directory below ``sweep`` (the sweep folder itself included)."""
    root = Path(sweep)
    if not root.is_dir():
        raise FileNotFoundError(f"sweep folder not found: {root}")
    jobs = []
    for config in sorted(root.rglob(".hydra/config.yaml")):
        job = read_job(config.parent.parent)
        if job is not None:
            jobs.append(job)
    return jobs


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def cell_row(jobs: list[Job], ref: PaperRow | None, method: str, backbone: str, msc: bool) -> dict:
    """One table row: mean ± std (percent) over the finished jobs, counts, paper values."""
    done = [j for j in jobs if j.metrics is not None]
    failed = [j for j in jobs if j.metrics is None]
    row = {"method": method, "backbone": backbone, "msc": msc, "runs": len(done), "failed": len(failed),
           "folds": sorted({j.fold for j in done})}
    complexity = next((j.complexity for j in done if j.complexity), {})
    row["params_M"] = complexity.get("params_M")
    row["flops_G"] = complexity.get("flops_G")
    for k in METRIC_KEYS:
        if done:
            row[k], row[f"{k}_std"] = mean_std([100 * j.metrics[k] for j in done])
        else:
            row[k] = row[f"{k}_std"] = None
    if ref is not None:
        row["paper_params_M"], row["paper_flops_G"] = ref.complexity()
        row.update({f"paper_{k}": v for k, v in ref.metrics.items()})
    row["status"] = "ok" if done and not failed else ("missing" if not jobs else ("failed" if not done else "some failed"))
    return row


def table_rows(jobs: list[Job], table: int) -> list[dict]:
    """The rows of paper table ``table`` (full-data jobs only), in the paper's order."""
    rows = []
    for ref in (r for r in paper_rows() if r.table == table):
        cell = [j for j in jobs if (j.method, j.backbone, j.msc) == (ref.method, ref.backbone, ref.msc) and j.fraction == 1.0]
        rows.append(cell_row(cell, ref, ref.method, ref.backbone, ref.msc))
    return rows


def _fmt(row: dict, key: str) -> str:
    if row.get(key) is None:
        return "—"
    return f"{row[key]:.2f} ± {row[f'{key}_std']:.2f}"


def table_markdown(rows: list[dict], title: str) -> str:
    head = (f"### {title}\n\n| Method | Backbone | MSC | Params (M) | FLOPs (G) | L-Disc | L-Vertebra | C-Disc | C-Vertebra "
            "| Score | runs | paper Score |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|\n")
    lines = []
    for r in rows:
        params = f"{r['params_M']:.2f}" if r.get("params_M") else f"({r.get('paper_params_M', '')})"
        flops = f"{r['flops_G']:.2f}" if r.get("flops_G") else f"({r.get('paper_flops_G', '')})"
        status = f"{r['runs']}" + (f", {r['failed']} failed" if r["failed"] else "") + ("" if r["runs"] else f" — {r['status']}")
        lines.append(f"| {r['method']} | {r['backbone']} | {'✓' if r['msc'] else '–'} | {params} | {flops} | "
                     + " | ".join(_fmt(r, k) for k in METRIC_KEYS) + f" | {status} | {r.get('paper_Score', '')} |")
    foot = ("\nMetrics in %, mean ± std over folds (runs = finished folds). Params/FLOPs measured from the model "
            "(in parentheses: the paper's, where no run finished). Paper Score for reference.\n")
    return head + "\n".join(lines) + "\n" + foot


def write_csv(rows: list[dict], path: Path) -> Path:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    return path


def fraction_rows(jobs: list[Job]) -> list[dict]:
    """Score (and the rest) per (method, backbone, MSC, fraction) over folds."""
    keys = sorted({(j.method, j.backbone, j.msc, j.fraction) for j in jobs})
    rows = []
    for method, backbone, msc, fraction in keys:
        cell = [j for j in jobs if (j.method, j.backbone, j.msc, j.fraction) == (method, backbone, msc, fraction)]
        row = cell_row(cell, None, method, backbone, msc)
        rows.append({"fraction": fraction, **row})
    return rows


def plot_fractions(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key in sorted({(r["method"], r["backbone"], r["msc"]) for r in rows}):
        pts = sorted((r["fraction"], r["Score"], r["Score_std"]) for r in rows
                     if (r["method"], r["backbone"], r["msc"]) == key and r["Score"] is not None)
        if not pts:
            continue
        x, y, e = zip(*pts)
        ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=f"{key[0]} {key[1]}{' +MSC' if key[2] else ''}")
    ax.set_xlabel("fraction of the training folds")
    ax.set_ylabel("Score (%)")
    ax.set_title("Score vs training data (mean ± std over folds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def build_report(sweep, out: str | Path) -> dict:
    """Write table1/table2 (.md + .csv) where the sweep has jobs for them, data_fraction (.png +
    .csv) where it has fractions below 1, and ``report.md``; returns what was written and the counts.
    ``sweep``: one folder or a list of folders (e.g. the three experiments' sweep folders)."""
    sweeps = [sweep] if isinstance(sweep, (str, Path)) else list(sweep)
    absent = [s for s in sweeps if not Path(s).is_dir()]
    if len(absent) == len(sweeps):
        raise FileNotFoundError(f"sweep folder(s) not found: {', '.join(map(str, absent))}")
    jobs = [j for s in sweeps if Path(s).is_dir() for j in find_jobs(s)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written, sections = [], []
    for table in (1, 2):
        rows = table_rows(jobs, table)
        if not any(r["runs"] or r["failed"] for r in rows):
            continue
        md = table_markdown(rows, f"Table {table}")
        (out / f"table{table}.md").write_text(md)
        written += [out / f"table{table}.md", write_csv(rows, out / f"table{table}.csv")]
        sections.append(md)
    if any(j.fraction < 1.0 for j in jobs):
        rows = fraction_rows(jobs)
        written += [write_csv(rows, out / "data_fraction.csv"), plot_fractions(rows, out / "data_fraction.png")]
        sections.append("### Data fraction\n\n![Score vs fraction](data_fraction.png)\n")
    failed = [j for j in jobs if j.metrics is None]
    lines = [f"# Report of {', '.join(str(s) for s in sweeps)}", "", f"{len(jobs)} jobs: {len(jobs) - len(failed)} finished, {len(failed)} failed or unfinished.", ""]
    lines += [f"- failed: `{j.path}`: {j.error}" for j in failed]
    lines += [f"- sweep folder not found (not run yet?): `{s}`" for s in absent]
    (out / "report.md").write_text("\n".join(lines) + "\n\n" + "\n".join(sections))
    written.append(out / "report.md")
    return {"jobs": len(jobs), "finished": len(jobs) - len(failed), "failed": len(failed), "written": [str(p) for p in written]}
