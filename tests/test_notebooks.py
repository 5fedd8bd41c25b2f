"""Notebooks run headless from top to bottom (nbclient)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

# results.ipynb needs a sweep report: tests/test_workflow.py runs it on a tiny sweep
NOTEBOOKS = sorted(p for p in (Path(__file__).parents[1] / "notebooks").glob("*.ipynb") if p.name != "results.ipynb")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, monkeypatch):
    monkeypatch.delenv("DATA_ROOT", raising=False)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, "the notebook should draw at least one figure"
