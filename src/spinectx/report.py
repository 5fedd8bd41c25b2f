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
    """One job directory: what ran and how it ended (``metrics`` in [0, 1], NaN for an undefined
    one such as a one-class AUC; None when the job failed)."""

    path: Path
    method: str
    backbone: str
    msc: bool
    fraction: float
    fold: int
    metrics: dict | None
    complexity: dict = field(default_factory=dict)
    error: str | None = None
    reused_from: str | None = None  # an identical cell of another sweep whose results this job copied
    task: str = ""  # the run's task_name (experiment=classifiers jobs go to classifiers.md, not the paper tables)


def _metric_value(value) -> float:
    """A metric as read from JSON or W&B: a number, or NaN for an undefined one (null / NaN)."""
    return math.nan if value is None else float(value)


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
    metrics, complexity, error, reused_from = None, {}, None, None
    metrics_file = job_dir / "metrics.json"
    if metrics_file.is_file():
        payload = json.loads(metrics_file.read_text())
        source = payload.get("evaluation") or payload
        if all(k in source for k in METRIC_KEYS):
            metrics = {k: _metric_value(source[k]) for k in METRIC_KEYS}
        complexity = payload.get("complexity", {})
        reused_from = payload.get("reused_from")
    if (job_dir / "error.txt").is_file():
        lines = (job_dir / "error.txt").read_text().strip().splitlines()
        error = lines[-1] if lines else "failed"
    elif metrics is None:
        error = "unfinished (no metrics.json with the table metric)"
    return Job(
        path=job_dir,
        method=_method_name(model),
        backbone=str(model.get("backbone")),
        msc=bool(model.get("msc")),
        fraction=float(data.get("fraction", 1.0)),
        fold=int(data.get("fold", 0)),
        metrics=metrics,
        complexity=complexity,
        error=error,
        reused_from=reused_from,
        task=str(cfg.get("task_name", "")),
    )


def _method_name(model) -> str:
    """The paper's method name of a job's model; a classification context other than the paper's
    cell read-out (``model/context=bilstm|transformer``) is appended, so such a run never fills a
    paper cell."""
    method = METHOD_OF_MODEL.get(str(model.get("name")), str(model.get("name")))
    kind = (model.get("context") or {}).get("kind", "none")
    return method if kind in (None, "none") else f"{method}+{kind}"


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


def _nested(config: dict, dotted: str, default=None):
    """``config["model"]["name"]`` for ``"model.name"``; also accepts flattened keys (``"model.name"``
    or ``"model/name"``), as W&B may store them."""
    for key in (dotted, dotted.replace(".", "/")):
        if key in config:
            return config[key]
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def wandb_jobs(project: str, groups: list[str] | None = None, api=None) -> list[Job]:
    """Jobs from a W&B project (``entity/project``; needs network and a login): one per run of the
    given groups (experiments), metrics from its summary (``final/*``, the held-out evaluation, else
    ``best/*``), what ran from its config. Crashed or failed runs become failed jobs."""
    if api is None:
        import wandb

        api = wandb.Api()
    filters = {"group": {"$in": list(groups)}} if groups else {}
    jobs = []
    for run in api.runs(project, filters=filters):
        config, summary = dict(run.config), dict(run.summary)
        name = _nested(config, "model.name")
        if name is None:
            continue
        metrics = None
        for prefix in ("final/", "best/"):
            if all(f"{prefix}{k}" in summary for k in METRIC_KEYS):
                metrics = {k: _metric_value(summary[f"{prefix}{k}"]) for k in METRIC_KEYS}
                break
        error = None
        if metrics is None:
            error = f"W&B run {run.state}" if run.state in ("failed", "crashed", "killed") else f"no table metric (W&B state {run.state})"
        jobs.append(Job(
            path=Path(getattr(run, "url", None) or f"wandb:{run.id}"),
            method=METHOD_OF_MODEL.get(str(name), str(name)),
            backbone=str(_nested(config, "model.backbone")),
            msc=bool(_nested(config, "model.msc", False)),
            fraction=float(_nested(config, "data.fraction", 1.0)),
            fold=int(_nested(config, "data.fold", 0)),
            metrics=metrics,
            complexity={k.removeprefix("complexity/"): v for k, v in summary.items() if k.startswith("complexity/")}
            or dict(_nested(config, "complexity", {}) or {}),
            error=error,
        ))
    return jobs


def without_copies(jobs: list[Job]) -> list[Job]:
    """Drop jobs that copied the results of another job in the list (a reused identical cell), so
    each computed run counts once."""
    present = {str(j.path.resolve()) for j in jobs if not str(j.path).startswith(("http", "wandb:"))}
    return [j for j in jobs if not (j.reused_from and str(Path(j.reused_from).resolve()) in present)]


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
        defined = [100 * j.metrics[k] for j in done if math.isfinite(j.metrics[k])]
        if defined:
            row[k], row[f"{k}_std"] = mean_std(defined)
        else:
            row[k] = row[f"{k}_std"] = None
        if len(defined) < len(done):  # undefined in some folds: mean ± std over the others
            row[f"{k}_n"] = len(defined)
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
    """``mean ± std`` over the cell's runs where the metric is defined; the bare value for a single
    one (no spread to show); ``n/a`` when it is undefined in every run, ``—`` without runs.
    ``(n/m)`` follows when it is defined in only n of the m runs."""
    runs = row.get("runs", 0)
    if row.get(key) is None:
        return "n/a" if runs else "—"
    defined = row.get(f"{key}_n", runs)
    text = f"{row[key]:.2f}" if defined < 2 else f"{row[key]:.2f} ± {row[f'{key}_std']:.2f}"
    return text + (f" ({defined}/{runs})" if defined < runs else "")


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
    foot = ("\nMetrics in %, mean ± std over folds (runs = finished folds; one run: its value). n/a: undefined (an AUC over "
            "located landmarks of one class); (n/m): defined in n of m folds, mean over those. Params/FLOPs measured from the "
            "model (in parentheses: the paper's, where no run finished). Paper Score for reference.\n")
    return head + "\n".join(lines) + "\n" + foot


def write_csv(rows: list[dict], path: Path) -> Path:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    return path


def fraction_rows(jobs: list[Job]) -> list[dict]:
    """Score (and the rest) per (method, backbone, MSC, fraction) over folds, for the methods that
    have jobs on less than all the data."""
    swept = {(j.method, j.backbone, j.msc) for j in jobs if j.fraction < 1.0}
    keys = sorted({(j.method, j.backbone, j.msc, j.fraction) for j in jobs if (j.method, j.backbone, j.msc) in swept})
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


# ------------------------------------------------------------------ experiment=classifiers (issue 14)
CLASSIFIER_TIANCHI = ("C-Disc", "C-Vertebra", "Score", "L-Disc", "L-Vertebra")
CLASSIFIER_RSNA = ("logloss", "hit_rate")
HEAD_ORDER = ("cell read-out", "bilstm", "transformer", "two-stage deepscorenet")


def classifier_head(model) -> str:
    """The classification head of a job's model config: ``cell read-out``, ``bilstm``,
    ``transformer`` (one stage), or ``two-stage <crop model>[+<context>]``."""
    kind = (model.get("context") or {}).get("kind", "none")
    if model.get("name") == "two_stage":
        arch = (model.get("crop_net") or {}).get("arch", "?")
        return f"two-stage {arch}" + ("" if kind in (None, "none") else f"+{kind}")
    return "cell read-out" if kind in (None, "none") else str(kind)


def classifier_jobs(sweep: str | Path) -> list[dict]:
    """The jobs of ``experiment=classifiers`` below ``sweep``: head, dataset (``TianChi`` or ``RSNA
    <view>``), fold, the metrics of its final evaluation, params / FLOPs (what it trained:
    for a two-stage head, stage 2 alone) and training time; ``error`` for a failed or unfinished job."""
    rows = []
    for config in sorted(Path(sweep).rglob(".hydra/config.yaml")):
        job = config.parent.parent
        cfg = OmegaConf.load(config)
        if cfg.get("task_name") != "classifiers" or not cfg.get("model"):
            continue
        data = cfg.get("data") or {}
        view = data.get("view")
        row = {"path": str(job), "head": classifier_head(cfg.model), "model": str(cfg.model.get("name")),
               "dataset": f"RSNA {view}" if view else "TianChi", "fold": int(data.get("fold", 0)),
               "metrics": None, "params_M": None, "flops_G": None, "train_min": None, "error": None}
        metrics_file = job / "metrics.json"
        if metrics_file.is_file():
            payload = json.loads(metrics_file.read_text())
            source = payload.get("evaluation")
            if source:
                row["metrics"] = {k: _metric_value(source.get(k)) for k in (*CLASSIFIER_TIANCHI, *CLASSIFIER_RSNA)
                                  if k in source}
            complexity = payload.get("complexity") or {}
            row["params_M"], row["flops_G"] = complexity.get("params_M"), complexity.get("flops_G")
            if payload.get("train_seconds") is not None:
                row["train_min"] = float(payload["train_seconds"]) / 60
        if (job / "error.txt").is_file():
            lines = (job / "error.txt").read_text().strip().splitlines()
            row["error"] = lines[-1] if lines else "failed"
        elif row["metrics"] is None:
            row["error"] = "unfinished (no final evaluation in metrics.json)"
        rows.append(row)
    return rows


def _head_key(head: str) -> tuple:
    return (HEAD_ORDER.index(head) if head in HEAD_ORDER else len(HEAD_ORDER), head)


def classifiers_markdown(jobs: list[dict]) -> str:
    """``classifiers.md``: per head, TianChi C-Disc / C-Vertebra / Score and the weighted log loss of
    each RSNA view (mean over folds, ``(n)`` runs), params, FLOPs and training time; failed jobs listed."""
    def cell(values: list[float], digits: int = 3) -> str:
        values = [v for v in values if v is not None and math.isfinite(v)]
        if not values:
            return "–"
        mean, std = mean_std(values)
        return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if len(values) > 1 else "")

    done = [j for j in jobs if j.get("metrics")]
    heads = sorted({j["head"] for j in jobs}, key=_head_key)
    views = sorted({j["dataset"] for j in jobs if j["dataset"].startswith("RSNA")},
                   key=lambda d: ("spinal", "foraminal", "subarticular").index(d.split()[-1])
                   if d.split()[-1] in ("spinal", "foraminal", "subarticular") else 9)
    lines = ["# Classification heads on the same folds (experiment=classifiers)", "",
             "Mean (± std over folds). TianChi: AUC-based C- metrics and the Score (SPEC §4), higher is better. "
             "RSNA: the view's weighted log loss (SPEC §6), lower is better. Params / FLOPs: what the job trained "
             "(a two-stage head: stage 2 alone, for one image's crops; its stage 1 is the cell read-out job of the same "
             "data and fold). Training time: trainer.fit wall time, minutes.", ""]
    if any(j["dataset"] == "TianChi" for j in jobs):
        lines += ["## TianChi", "", "| head | C-Disc | C-Vertebra | Score | L-Disc | L-Vertebra | runs | params (M) | FLOPs (G) | train (min) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for head in heads:
            js = [j for j in done if j["head"] == head and j["dataset"] == "TianChi"]
            if not js and not any(j["head"] == head and j["dataset"] == "TianChi" for j in jobs):
                continue
            vals = [cell([j["metrics"].get(k) for j in js]) for k in CLASSIFIER_TIANCHI]
            lines.append(f"| {head} | {' | '.join(vals)} | {len(js)} | {cell([j['params_M'] for j in js], 2)} | "
                         f"{cell([j['flops_G'] for j in js], 2)} | {cell([j['train_min'] for j in js], 1)} |")
        lines.append("")
    if views:
        lines += ["## RSNA 2024 (weighted log loss per view; hit rate in brackets)", "",
                  "| head | " + " | ".join(v.removeprefix("RSNA ") for v in views) + " | runs | params (M) | train (min) |",
                  "|---|" + "---:|" * (len(views) + 3)]
        for head in heads:
            js = [j for j in done if j["head"] == head and j["dataset"] in views]
            if not js and not any(j["head"] == head and j["dataset"] in views for j in jobs):
                continue
            cols = []
            for v in views:
                jv = [j for j in js if j["dataset"] == v]
                cols.append(f"{cell([j['metrics'].get('logloss') for j in jv])} "
                            f"({cell([j['metrics'].get('hit_rate') for j in jv], 2)})" if jv else "–")
            lines.append(f"| {head} | {' | '.join(cols)} | {len(js)} | {cell([j['params_M'] for j in js], 2)} | "
                         f"{cell([j['train_min'] for j in js], 1)} |")
        lines.append("")
    failed = [j for j in jobs if not j.get("metrics")]
    if failed:
        lines += ["## Failed or unfinished", ""] + [f"- {j['head']} · {j['dataset']} fold {j['fold']}: `{j['path']}`: "
                                                  f"{j['error']}" for j in failed] + [""]
    return "\n".join(lines)


def build_report(sweep, out: str | Path, jobs: list[Job] | None = None) -> dict:
    """Write table1/table2 (.md + .csv) where the sweep has jobs for them, data_fraction (.png +
    .csv) where it has fractions below 1, ``classifiers.md`` / ``.csv`` where it has ``experiment=classifiers``
    jobs (:func:`classifiers_markdown`), and ``report.md``; returns what was written and the counts.
    ``sweep``: one folder or a list of folders (e.g. the three experiments' sweep folders); or pass
    ``jobs`` (e.g. :func:`wandb_jobs`) with ``sweep`` naming their source."""
    sweeps = [sweep] if isinstance(sweep, (str, Path)) else list(sweep)
    absent, copies = [], 0
    if jobs is None:
        absent = [s for s in sweeps if not Path(s).is_dir()]
        if len(absent) == len(sweeps):
            raise FileNotFoundError(f"sweep folder(s) not found: {', '.join(map(str, absent))}")
        found = [j for s in sweeps if Path(s).is_dir() for j in find_jobs(s)]
        jobs = without_copies(found)
        copies = len(found) - len(jobs)
    jobs = [j for j in jobs if j.task != "classifiers"]  # classifiers.md reports those (below)
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
    classifier = [j for s in sweeps if Path(str(s)).is_dir() for j in classifier_jobs(s)]
    if classifier:
        md = classifiers_markdown(classifier)
        (out / "classifiers.md").write_text(md)
        fields = ["head", "dataset", "fold", *CLASSIFIER_TIANCHI, *CLASSIFIER_RSNA, "params_M", "flops_G", "train_min", "error", "path"]
        with (out / "classifiers.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            for j in classifier:
                writer.writerow({**{k: j.get(k) for k in fields}, **(j.get("metrics") or {})})
        written += [out / "classifiers.md", out / "classifiers.csv"]
        sections.append(md)
    if any(j.fraction < 1.0 for j in jobs):
        rows = fraction_rows(jobs)
        written += [write_csv(rows, out / "data_fraction.csv"), plot_fractions(rows, out / "data_fraction.png")]
        sections.append("### Data fraction\n\n![Score vs fraction](data_fraction.png)\n")
    failed = [j for j in jobs if j.metrics is None]
    lines = [f"# Report of {', '.join(str(s) for s in sweeps)}", "", f"{len(jobs)} jobs: {len(jobs) - len(failed)} finished, {len(failed)} failed or unfinished."
             + (f" {copies} more cells reused the results of an identical cell of another sweep (counted once)." if copies else "")
             + (f" Plus {len(classifier)} experiment=classifiers jobs ({sum(1 for j in classifier if j.get('metrics'))} "
                "finished): classifiers.md." if classifier else ""), ""]
    lines += [f"- failed: `{j.path}`: {j.error}" for j in failed]
    lines += [f"- sweep folder not found (not run yet?): `{s}`" for s in absent]
    (out / "report.md").write_text("\n".join(lines) + "\n\n" + "\n".join(sections))
    written.append(out / "report.md")
    return {"jobs": len(jobs), "finished": len(jobs) - len(failed), "failed": len(failed),
            "classifier_jobs": len(classifier), "written": [str(p) for p in written]}
