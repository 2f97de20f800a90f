"""The notebooks execute (nbclient) against tiny runs made here, so they never rot, and every cell
that draws shows its figure inline (an ``image/png`` output), as a reader opening them sees it."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from nas.cli import main

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
FORMULA = ["--executor", "local", "--evaluator", "formula", "--no-progress"]


def _execute(name: str) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []  # the saved outputs must not satisfy the checks below
    NotebookClient(nb, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


def _plots_inline(nb: nbformat.NotebookNode) -> list[int]:
    """How many ``image/png`` outputs each drawing cell produced (cells that call ``plt.subplots``)."""
    return [sum("image/png" in out.get("data", {}) for out in cell.get("outputs", []))
            for cell in nb.cells if cell.cell_type == "code" and "plt.subplots" in cell.source]


def _text(nb: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                   for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_tradeoffs_notebook_runs_on_tiny_runs(tmp_path, monkeypatch):
    fast = [*FORMULA, "--runs-dir", str(tmp_path)]
    assert main(["sample", "--space", "x3d", "--strategy", "random", "--trials", "4", "--name", "r",
                 "--baselines", "x3d-xs", *fast]) == 0
    assert main(["sample", "--space", "x3d", "--strategy", "tpe", "--trials", "4", "--name", "t", *fast]) == 0
    out = tmp_path / "tradeoffs.png"
    monkeypatch.setenv("XNAS_RUNS", f"{tmp_path / 'r'},{tmp_path / 't'}")
    monkeypatch.setenv("XNAS_NOTEBOOK_OUT", str(out))
    nb = _execute("tradeoffs.ipynb")
    assert out.is_file() and out.stat().st_size > 5000
    text = _text(nb)
    assert "r: " in text and "t: " in text and "Pareto-optimal" in text
    assert _plots_inline(nb) == [1]


def test_expansion_notebook_shows_every_decision_with_its_margin(tmp_path, monkeypatch):
    assert main(["expand", "--target-gflops", "0.1", "--formula", "x3d-factors", *FORMULA,
                 "--runs-dir", str(tmp_path), "--name", "e"]) == 0
    monkeypatch.setenv("XNAS_RUN", str(tmp_path / "e"))
    nb = _execute("expansion.ipynb")
    assert _plots_inline(nb) == [1, 1]
    text = _text(nb)
    assert "margin" in text and "inside_noise" in text


@pytest.mark.parametrize("search", ["committed example", "fresh run"])
def test_tunas_notebook_shows_the_policy_evolving(search, tmp_path, monkeypatch):
    from nas.drivers.tunas.testing import TINY_SPACE

    if search == "fresh run":
        space = tmp_path / "tiny.yaml"
        space.write_text(TINY_SPACE)
        assert main(["search", "--space", str(space), "--target-gflops", "0.0015", "--search-steps", "10",
                     "--search-size-scale", "1", "--search-batch-size", "2", "--val-multiplier", "2",
                     "--search-train-clips", "4", "--clip", "4x2x32", "--top-k", "1", "--no-retrain", *FORMULA,
                     "--runs-dir", str(tmp_path), "--name", "s"]) == 0
        monkeypatch.setenv("XNAS_SEARCH", str(tmp_path / "s" / "search-0.0015"))
    else:
        monkeypatch.delenv("XNAS_SEARCH", raising=False)
    nb = _execute("tunas.ipynb")
    assert _plots_inline(nb) == [1, 1, 1]
    assert "margin_over_second" in _text(nb)


def test_saved_notebooks_carry_their_plots() -> None:
    """Saved with outputs (``notebooks/execute.py``), so a code host renders the figures."""
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        counts = _plots_inline(nb)
        assert counts and all(n >= 1 for n in counts), f"{path.name}: {counts}"
