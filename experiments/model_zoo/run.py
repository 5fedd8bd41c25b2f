"""Train every row of the paper's Tables 1-2 briefly on synthetic data and tabulate the metric.

    python experiments/model_zoo/run.py [--out DIR] [--only CCF-Net,HRNet] [extra spinectx-train overrides...]

For each row it runs ``spinectx-train experiment=zoo model=... model.backbone=... model.msc=...``
twice: once trained (4 short epochs, conf/experiment/zoo.yaml) and once with
``trainer.max_epochs=0``, i.e. the untrained copy evaluated on the same held-out fold. Rows whose
``metrics.json`` already exists are not rerun (delete the row's folder to redo it). Writes
``results.csv`` and ``results.md`` into ``--out`` (default: experiments/model_zoo/results).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from spinectx.lit.callbacks import METRIC_KEYS
from spinectx.reference import paper_rows

HERE = Path(__file__).resolve().parent


def run_dir(out: Path, ref, variant: str) -> Path:
    return out / f"{ref.model}-{ref.backbone}-msc{str(ref.msc).lower()}" / variant


def train(ref, variant: str, out: Path, extra: list[str]) -> dict:
    """Run one job (``trained`` or ``untrained``) unless its metrics exist; return its metrics.json."""
    directory = run_dir(out, ref, variant)
    metrics = directory / "metrics.json"
    if metrics.is_file() and "evaluation" in json.loads(metrics.read_text()):
        return json.loads(metrics.read_text())
    overrides = ["experiment=zoo", f"model={ref.model}", f"model.backbone={ref.backbone}",
                 f"model.msc={str(ref.msc).lower()}", f"hydra.run.dir={directory}", *extra]
    if variant == "untrained":
        overrides += ["trainer.max_epochs=0", "model.scheduler.T_0=1", "logger=none", "overlay_studies=0"]
    start = time.perf_counter()
    log = directory.parent / f"{variant}.log"
    directory.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as fh:
        proc = subprocess.run([str(Path(sys.executable).parent / "spinectx-train"), *overrides],
                              stdout=fh, stderr=subprocess.STDOUT, env=os.environ.copy())
    if proc.returncode != 0 or not metrics.is_file():
        print(f"  FAILED ({variant}), see {log}", flush=True)
        return {}
    result = json.loads(metrics.read_text())
    result["seconds"] = round(time.perf_counter() - start, 1)
    metrics.write_text(json.dumps(result, indent=2))
    return result


def pct(result: dict, *keys: str) -> str:
    """Mean of ``keys`` of the final evaluation, in percent ('' when missing)."""
    values = [result.get("evaluation", {}).get(k) for k in keys]
    return "" if None in values else f"{100 * sum(values) / len(values):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--only", default="", help="comma-separated methods (CCF-Net, SimpleBaseline, SCN, HRNet)")
    args, extra = parser.parse_known_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    only = {m for m in args.only.split(",") if m}
    rows = []
    for ref in paper_rows():
        if only and ref.method not in only:
            continue
        print(f"{ref.method} {ref.backbone} msc={ref.msc}", flush=True)
        untrained = train(ref, "untrained", args.out, extra)
        trained = train(ref, "trained", args.out, extra)
        row = {"table": ref.table, "method": ref.method, "backbone": ref.backbone, "msc": str(ref.msc).lower(),
               "params_M": trained.get("complexity", {}).get("params_M", ""),
               "untrained_L": pct(untrained, "L-Disc", "L-Vertebra"), "untrained_Score": pct(untrained, "Score"),
               **{k: pct(trained, k) for k in METRIC_KEYS}, "train_seconds": trained.get("seconds", "")}
        rows.append(row)
        print("  " + "  ".join(f"{k} {v}" for k, v in row.items() if k not in ("table", "method", "backbone", "msc")), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "results.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| Table | Method | Backbone | MSC | Params (M) | untrained L | untrained Score | L-Disc | L-Vertebra | C-Disc | C-Vertebra | Score | train s |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['table']} | {r['method']} | {r['backbone']} | {'✓' if r['msc'] == 'true' else '–'} | {r['params_M']} | "
                     f"{r['untrained_L']} | {r['untrained_Score']} | " + " | ".join(r[k] for k in METRIC_KEYS) + f" | {r['train_seconds']} |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
