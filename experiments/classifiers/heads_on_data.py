"""Classification heads on one or more TianChi-layout roots, each beside the level prior (issue 14 §0).

For every ``--root NAME=DIR`` this trains ``experiment=demo`` (the demo budget) once per one-stage head
(``cell``: the features at the landmark's own cell; ``bilstm`` / ``transformer``: ``model/context=…``),
then each two-stage head (``deepscorenet`` / ``timm_crop``: ``model=two_stage`` at the ``cell`` run's
points), evaluates every checkpoint with ``spinectx-eval`` and writes ``OUT/heads.md`` and
``OUT/heads.csv``: per root and head, L-Disc / L-Vertebra, and per group (disc, vertebra) the model's
AUC of P(abnormal) beside the level prior's AUC over the same located points
(``metrics.json["level_prior"]``, :mod:`spinectx.metrics.level_prior`).

    python experiments/classifiers/heads_on_data.py --root suite=DIR1 --root independent=DIR2 \
        --out logs/heads [--heads cell,bilstm,deepscorenet] [--trainer gpu] [--parallel 3] [-- EXTRA OVERRIDES]

A run whose ``metrics.json`` exists is not trained again (rerun the command to finish an interrupted
measurement); ``OUT/overrides.json`` records the extra overrides, and a rerun with other ones is
refused (use another ``--out``). Each run's log is ``OUT/NAME/HEAD/train.log`` / ``eval.log``.
``experiment=demo`` trains the paper's binary head (one P(abnormal) logit per landmark) for every head,
the two-stage crop classifiers included; the AUCs compare P(abnormal) either way.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ONE_STAGE = {"cell": [], "bilstm": ["model/context=bilstm"], "transformer": ["model/context=transformer"]}
TWO_STAGE = {"deepscorenet": ["model=two_stage"],
             "timm_crop": ["model=two_stage", "model/crop_net=timm"]}


def splits_of(root: str) -> str:
    """``data.splits`` of a TianChi root: every ``<split>_annotation.json`` in it, as a Hydra list."""
    found = sorted(p.name.removesuffix("_annotation.json") for p in Path(root).glob("*_annotation.json"))
    if not found:
        raise SystemExit(f"{root}: no <split>_annotation.json: not a TianChi-layout training root (SPEC §2)")
    return "[" + ",".join(found) + "]"


def run(cmd: list[str], log: Path) -> None:
    """Run ``cmd`` with its output in ``log``; raise naming the log when it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as fh:
        rc = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {rc}); see {log}")


def train(name: str, root: str, head: str, out: Path, args, extra: list[str]) -> Path:
    """Train ``head`` on ``root`` at the demo budget; returns its run folder (skipped when done)."""
    run_dir = out / name / head
    if (run_dir / "metrics.json").exists():
        return run_dir
    overrides = ONE_STAGE[head] if head in ONE_STAGE else TWO_STAGE[head]
    if head in TWO_STAGE:
        overrides = overrides + [f"model.stage1_ckpt={out / name / 'cell' / 'checkpoints' / 'last.ckpt'}"]
    cmd = [sys.executable, "-m", "spinectx.cli.train", "experiment=demo", f"data.root={root}",
           f"data.splits={splits_of(root)}", f"trainer={args.trainer}", "logger=none", f"hydra.run.dir={run_dir}",
           f"data.num_workers={args.workers}", *overrides, *extra]
    run(cmd, run_dir / "train.log")
    return run_dir


def evaluate(name: str, root: str, head: str, out: Path, args, extra_data: list[str]) -> dict:
    """``spinectx-eval`` of one run (the pair for two-stage heads) → its metrics.json."""
    run_dir = out / name / head
    eval_dir = run_dir / "eval"
    if not (eval_dir / "metrics.json").exists():
        if head in TWO_STAGE:
            ckpts = [f"ckpt_path={out / name / 'cell' / 'checkpoints' / 'last.ckpt'}",
                     f"classifier_ckpt={run_dir / 'checkpoints' / 'last.ckpt'}"]
        else:
            ckpts = [f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"]
        cmd = [sys.executable, "-m", "spinectx.cli.eval", *ckpts, f"data.root={root}", f"data.splits={splits_of(root)}",
               f"trainer={args.trainer}", f"hydra.run.dir={eval_dir}", f"data.num_workers={args.workers}",
               "overlay_studies=4", *extra_data]
        run(cmd, run_dir / "eval.log")
    return json.loads((eval_dir / "metrics.json").read_text())


def row(name: str, head: str, m: dict, run_dir: Path) -> dict:
    """One table row: L- metrics and, per group, model AUC vs level-prior AUC."""
    train_s = json.loads((run_dir / "metrics.json").read_text()).get("train_seconds")
    r = {"data": name, "head": head, "L-Disc": m.get("L-Disc"), "L-Vertebra": m.get("L-Vertebra"),
         "train_min": None if train_s is None else round(train_s / 60, 1)}
    for group, g in m["level_prior"].items():
        group = group.lower()
        r[f"{group}_auc"] = g["model_auc"]
        r[f"{group}_prior_auc"] = g["level_prior_auc"]
        r[f"{group}_points"] = g["points"]
    return r


def fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return "n/a" if v != v else f"{v:.3f}"
    return str(v)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", action="append", required=True, help="NAME=DIR of a TianChi-layout root")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--heads", default="cell,bilstm,transformer,deepscorenet,timm_crop")
    p.add_argument("--trainer", default="cpu")
    p.add_argument("--parallel", type=int, default=1, help="runs at a time (1 on a 2-core CPU)")
    p.add_argument("--workers", type=int, default=1, help="data.num_workers of each run")
    args, extra = p.parse_known_args()
    extra = [e for e in extra if e != "--"]
    options = [e for e in extra if e.startswith("-")]
    if options:
        p.error(f"unknown option(s) {options} (Hydra overrides go after --, e.g. -- trainer.max_epochs=14)")
    if args.parallel < 1 or args.workers < 0:
        p.error("--parallel must be ≥ 1 and --workers ≥ 0")
    bad = [r for r in args.root if "=" not in r or not r.split("=", 1)[0]]
    if bad:
        p.error(f"--root {bad[0]}: give NAME=DIR (e.g. --root independent=/data/indep)")
    heads = args.heads.split(",")
    unknown = [h for h in heads if h not in ONE_STAGE and h not in TWO_STAGE]
    if unknown:
        p.error(f"--heads: unknown {unknown}; choose from {list(ONE_STAGE) + list(TWO_STAGE)}")
    if any(h in TWO_STAGE for h in heads) and "cell" not in heads:
        p.error("--heads: the two-stage heads classify the cell run's points; include cell")
    names = [r.split("=", 1)[0] for r in args.root]
    if len(set(names)) < len(names):
        p.error(f"--root: each NAME once; got {names}")
    roots = dict(r.split("=", 1) for r in args.root)
    for name, root in roots.items():
        if not Path(root).is_dir():
            p.error(f"--root {name}={root}: not a folder")
    recorded = args.out / "overrides.json"
    if recorded.exists() and json.loads(recorded.read_text()) != extra:
        p.error(f"{args.out} holds runs made with the overrides {json.loads(recorded.read_text())}, not {extra}: "
                "their finished runs would be reused; give another --out")
    args.out.mkdir(parents=True, exist_ok=True)
    recorded.write_text(json.dumps(extra))
    extra_data = [e for e in extra if e.startswith("data.")]
    with ThreadPoolExecutor(args.parallel) as pool:  # one-stage heads first: the cell runs are stage 1
        for stage in ([h for h in heads if h in ONE_STAGE], [h for h in heads if h in TWO_STAGE]):
            jobs = [pool.submit(train, n, r, h, args.out, args, extra) for n, r in roots.items() for h in stage]
            for j in jobs:
                j.result()
        evals = {(n, h): pool.submit(evaluate, n, r, h, args.out, args, extra_data)
                 for n, r in roots.items() for h in heads}
        rows = [row(n, h, e.result(), args.out / n / h) for (n, h), e in evals.items()]
    args.out.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with (args.out / "heads.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    cols = ["data", "head", "L-Disc", "L-Vertebra", "disc_auc", "disc_prior_auc", "vertebra_auc",
            "vertebra_prior_auc", "train_min"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    (args.out / "heads.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
