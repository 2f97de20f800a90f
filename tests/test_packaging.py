"""The wheel ships the DSL documents, so an installed ``xnas`` finds its spaces."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from nas import arch_names, space_names

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_contains_every_space_and_reference(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("xnas-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for space in space_names():
        assert f"nas/_spaces/{space}.yaml" in names
    shipped = {Path(n).stem for n in names if n.startswith("nas/_spaces/") and n.count("/") == 3}
    assert shipped == set(arch_names())
