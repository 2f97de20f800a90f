"""The analysis notebook executes (nbclient) against tiny runs made here, so it never rots."""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

from nas.cli import main

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "tradeoffs.ipynb"


def test_tradeoffs_notebook_runs_on_tiny_runs(tmp_path, monkeypatch):
    fast = ["--executor", "local", "--evaluator", "formula", "--no-progress", "--runs-dir", str(tmp_path)]
    assert main(["sample", "--space", "x3d", "--strategy", "random", "--trials", "4", "--name", "r",
                 "--baselines", "x3d-xs", *fast]) == 0
    assert main(["sample", "--space", "x3d", "--strategy", "tpe", "--trials", "4", "--name", "t", *fast]) == 0
    out = tmp_path / "tradeoffs.png"
    monkeypatch.setenv("XNAS_RUNS", f"{tmp_path / 'r'},{tmp_path / 't'}")
    monkeypatch.setenv("XNAS_NOTEBOOK_OUT", str(out))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    assert out.is_file() and out.stat().st_size > 5000
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "r: " in text and "t: " in text and "Pareto-optimal" in text
