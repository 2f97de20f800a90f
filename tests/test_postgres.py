"""A real PostgreSQL storage (``--storage postgresql://...``): ``.ci/run`` starts a throwaway server on
loopback (``.ci/postgres``) and exports its URL as ``XNAS_TEST_POSTGRES``; without one these tests
are skipped with that reason."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from nas.cli import main
from test_faults import FORMULA, _kill_when, _row_count, _rows

PG = os.environ.get("XNAS_TEST_POSTGRES")
pytestmark = pytest.mark.skipif(not PG, reason="no PostgreSQL server: .ci/run starts one (XNAS_TEST_POSTGRES)")


def _pg_trials(name: str) -> list[tuple]:
    from nas.integrations.optuna_study import optuna

    study = optuna.load_study(study_name=name, storage=PG)
    return [(t.number, t.state.name, t.values, t.params) for t in study.get_trials(deepcopy=False)]


def _sqlite_trials(run_dir: Path) -> list[tuple]:
    from nas.integrations.optuna_study import optuna

    study = optuna.load_study(study_name=run_dir.name, storage=f"sqlite:///{run_dir / 'study.db'}")
    return [(t.number, t.state.name, t.values, t.params) for t in study.get_trials(deepcopy=False)]


def _base(tmp_path: Path) -> list[str]:
    return ["sample", "--space", "movinet", "--strategy", "tpe", "--trials", "8", "--batch", "4", *FORMULA,
            "--runs-dir", str(tmp_path)]


def test_a_run_on_postgres_equals_the_same_run_on_sqlite(tmp_path: Path) -> None:
    name = f"pg-{uuid.uuid4().hex[:10]}"  # the server's database is shared: a fresh study name
    assert main([*_base(tmp_path), "--name", "lite"]) == 0
    assert main([*_base(tmp_path), "--name", name, "--storage", PG]) == 0
    assert _rows(tmp_path / name) == _rows(tmp_path / "lite")
    assert _pg_trials(name) == _sqlite_trials(tmp_path / "lite")
    assert not (tmp_path / name / "study.db").exists()


def test_a_postgres_run_killed_anywhere_resumes_to_the_uninterrupted_run(tmp_path: Path, capsys) -> None:
    name = f"pg-{uuid.uuid4().hex[:10]}"
    assert main([*_base(tmp_path), "--name", "lite"]) == 0
    killed = tmp_path / name
    assert _kill_when([*_base(tmp_path), "--name", name, "--storage", PG],
                      lambda: _row_count(killed / "results.csv") >= 5, 0.002)
    capsys.readouterr()
    # resuming without --storage would open another study: a one-line error naming the flag
    assert main([*_base(tmp_path), "--name", name, "--resume"]) == 2
    assert "--storage: got 'sqlite:///" in capsys.readouterr().err
    assert main([*_base(tmp_path), "--name", name, "--resume", "--storage", PG]) == 0
    assert _rows(killed) == _rows(tmp_path / "lite")
    assert _pg_trials(name) == _sqlite_trials(tmp_path / "lite")
