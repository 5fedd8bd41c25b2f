"""spinectx-profile out=FILE.csv: params and MACs of every paper table row, beside the paper.

Each row's network is built from the same model configs that training uses
(``model=<name> model.backbone=... model.msc=...``) at ``input_size``² and measured with
:func:`spinectx.models.complexity.measure` (paper convention; the executed MACs are an extra
column). Writes ``FILE.csv`` and ``FILE.md``; exits with status 1 if a row is out of tolerance.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from spinectx.cli import CONF_DIR
from spinectx.cli.failure import check_output_file, fail_cleanly

log = logging.getLogger("spinectx.profile")

COLUMNS = ("method", "backbone", "msc", "params_M", "flops_G", "paper_params_M", "paper_flops_G",
           "params_dev_pct", "flops_dev_pct", "tolerance_pct", "within", "executed_flops_G", "note")
# designs that the paper does not publish; derived in docs/models.md and held to the looser tolerance
DERIVED = {("SimpleBaseline", True), ("SCN", False), ("SCN", True)}


def build_net(model: str, backbone: str, msc: bool, landmarks: str):
    """The network of ``conf/model/<model>.yaml`` as training builds it (composed with Hydra)."""
    from hydra import compose

    from spinectx.lit.module import LandmarkModule

    cfg = compose("train", overrides=[f"model={model}", f"model.backbone={backbone}", f"model.msc={str(msc).lower()}",
                                      f"data/landmarks={landmarks}"])
    kwargs = OmegaConf.to_container(cfg.model, resolve=True)
    kwargs = {k: v for k, v in kwargs.items() if not k.startswith("_")}
    return LandmarkModule(landmarks=OmegaConf.to_container(cfg.data.landmarks, resolve=True), **kwargs).net


def profile_rows(input_size: int, landmarks: str, tolerance: dict, only: list[str] | None = None) -> list[dict]:
    from spinectx.models.complexity import measure
    from spinectx.reference import paper_rows

    refs = paper_rows()
    if only:
        unknown = set(only) - {r.method for r in refs}
        if unknown:
            raise ValueError(f"only: unknown method(s) {sorted(unknown)}; the paper has {sorted({r.method for r in refs})}")
        refs = [r for r in refs if r.method in only]
    rows = []
    for ref in refs:
        net = build_net(ref.model, ref.backbone, ref.msc, landmarks)
        paper = measure(net, (input_size, input_size), convention="paper")
        executed = measure(net, (input_size, input_size), convention="executed")
        paper_params, paper_flops = ref.complexity()
        tol = tolerance["derived"] if (ref.method, ref.msc) in DERIVED else tolerance["default"]
        dp = 100 * (paper.params_m / paper_params - 1)
        df = 100 * (paper.macs_g / paper_flops - 1)
        rows.append({
            "method": ref.method, "backbone": ref.backbone, "msc": str(ref.msc).lower(),
            "params_M": round(paper.params_m, 3), "flops_G": round(paper.macs_g, 2),
            "paper_params_M": paper_params, "paper_flops_G": paper_flops,
            "params_dev_pct": round(dp, 2), "flops_dev_pct": round(df, 2), "tolerance_pct": tol,
            "within": "yes" if abs(dp) <= tol and abs(df) <= tol else "NO",
            "executed_flops_G": round(executed.macs_g, 2),
            "note": "paper prints params/FLOPs swapped" if ref.swapped else ("derived design" if tol != tolerance["default"] else ""),
        })
        log.info("%-14s %-9s msc=%-5s %7.2f M (paper %6.2f)  %7.2f G (paper %6.2f)  %s", ref.method, ref.backbone,
                 rows[-1]["msc"], paper.params_m, paper_params, paper.macs_g, paper_flops, rows[-1]["within"])
    return rows


def markdown_table(rows: list[dict], input_size: int) -> str:
    head = ("| Method | Backbone | MSC | Params (M) | paper | FLOPs (G) | paper | Δ params | Δ FLOPs | executed MACs (G) |\n"
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
    body = "".join(
        f"| {r['method']} | {r['backbone']} | {'✓' if r['msc'] == 'true' else '–'} | {r['params_M']:.2f} | "
        f"{r['paper_params_M']:.2f} | {r['flops_G']:.2f} | {r['paper_flops_G']:.2f} | {r['params_dev_pct']:+.2f} % | "
        f"{r['flops_dev_pct']:+.2f} % | {r['executed_flops_G']:.2f} |\n"
        for r in rows
    )
    foot = (f"\nInput {input_size}×{input_size}. FLOPs = multiply-accumulates counted as the paper did (thop over the "
            "released code); executed = what this implementation computes (see docs/models.md).\n")
    return head + body + foot


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="profile")
@fail_cleanly("spinectx-profile")
def main(cfg: DictConfig) -> None:
    import sys

    from spinectx.data.errors import ConfigError, config_int

    out = Path(check_output_file(cfg.out, "out"))
    size = config_int("input_size", cfg.input_size, minimum=64)
    if size % 32:
        raise ConfigError(f"input_size must be a multiple of 32 (the networks' stride), got {cfg.input_size!r}")
    only = list(cfg.only) if cfg.get("only") else None
    rows = profile_rows(size, str(cfg.landmarks), dict(cfg.tolerance_pct), only)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    md = out.with_suffix(".md")
    md.write_text(markdown_table(rows, size))
    log.info("wrote %s and %s", out, md)
    bad = [r for r in rows if r["within"] != "yes"]
    if bad:
        log.error("%d row(s) outside tolerance: %s", len(bad), ", ".join(f"{r['method']} {r['backbone']} msc={r['msc']}" for r in bad))
        sys.exit(1)


if __name__ == "__main__":
    main()
