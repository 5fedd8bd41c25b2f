"""The paper's published numbers (ISBI 2022, arXiv 2203.08408, Tables 1–2), shipped with the
package so that profiles and reports can put them beside measured values."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources

# method names of the paper → model config names (conf/model/<name>.yaml)
MODEL_OF_METHOD = {"CCF-Net": "ccfnet", "SimpleBaseline": "simplebaseline", "SCN": "scn", "HRNet": "hrnet"}
METHOD_OF_MODEL = {v: k for k, v in MODEL_OF_METHOD.items()}


@dataclass(frozen=True)
class PaperRow:
    """One row of the paper's tables. Params in millions, FLOPs in G multiply-accumulates at
    512×512; metrics in percent. ``params_m``/``flops_g`` are as printed, ``corrected`` says the
    two were swapped in print and fixes them in :meth:`complexity`."""

    table: int
    method: str
    backbone: str
    msc: bool
    params_m: float
    flops_g: float
    metrics: dict[str, float]
    note: str

    @property
    def model(self) -> str:
        return MODEL_OF_METHOD[self.method]

    @property
    def swapped(self) -> bool:
        return "swapped" in self.note

    def complexity(self) -> tuple[float, float]:
        """(params M, MACs G) as they should read: the swapped row (CCF-Net R18 no-MSC) is put right."""
        return (self.flops_g, self.params_m) if self.swapped else (self.params_m, self.flops_g)


METRIC_COLUMNS = {"L_disc": "L-Disc", "L_vertebra": "L-Vertebra", "C_disc": "C-Disc",
                  "C_vertebra": "C-Vertebra", "score": "Score"}


def paper_rows() -> list[PaperRow]:
    """All rows of Tables 1 and 2 in the paper's order."""
    text = resources.files(__package__).joinpath("paper_tables.csv").read_text()
    rows = []
    for r in csv.DictReader(text.splitlines()):
        rows.append(PaperRow(
            table=int(r["table"]), method=r["method"], backbone=r["backbone"], msc=r["msc"] == "true",
            params_m=float(r["params_M"]), flops_g=float(r["flops_G"]),
            metrics={name: float(r[col]) for col, name in METRIC_COLUMNS.items()}, note=r["note"],
        ))
    return rows
