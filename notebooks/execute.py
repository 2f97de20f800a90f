"""Execute the notebooks in place so they are saved with their outputs (plots inline), as a code host
renders them: ``.venv/bin/python notebooks/execute.py [NOTEBOOK ...]`` (default: every notebook here).

Each runs on its default inputs (the runs recorded under ``experiments/`` and the example run in
``example-runs/``) unless its environment variable says otherwise (see each notebook's first cell).
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def execute(path: Path) -> None:
    """Run every cell of ``path`` in a fresh kernel started in this folder; write the outputs back."""
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    nbformat.write(nb, path)
    print(f"executed {path.name}")


if __name__ == "__main__":
    for name in sys.argv[1:] or sorted(p.name for p in HERE.glob("*.ipynb")):
        execute(HERE / name)
