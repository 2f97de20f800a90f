"""Faults: one writer per run (a second process is refused, a killed holder's lock is taken over)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nas.cli import main
from nas.errors import RunError
from nas.runs import Run

HOLD = """
import sys, time
from nas.runs import Run
run = Run.open("r", driver="test", config={"a": 1}, root=sys.argv[1])
print("open", flush=True)
time.sleep(120)
"""


def _holder(root: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "open"
    return proc


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir()) if p.is_file()}


def test_a_second_process_is_refused_and_changes_nothing(tmp_path: Path, capsys) -> None:
    proc = _holder(tmp_path)
    try:
        before = _snapshot(tmp_path / "r")
        with pytest.raises(RunError, match=rf"run directory {tmp_path / 'r'} is in use by pid {proc.pid}"):
            Run.open("r", driver="test", config={"a": 1}, root=tmp_path)
        assert _snapshot(tmp_path / "r") == before
    finally:
        proc.kill()
        proc.wait()


def test_the_cli_says_it_in_one_line(tmp_path: Path, capsys) -> None:
    fast = ["--executor", "local", "--evaluator", "formula", "--no-progress", "--runs-dir", str(tmp_path)]
    assert main(["sample", "--space", "x3d", "--trials", "2", "--name", "s", *fast]) == 0
    capsys.readouterr()
    hold = ("import sys, time\nfrom pathlib import Path\nfrom nas.runs import RunLock\n"
            "lock = RunLock.acquire(Path(sys.argv[1]) / 's')\nprint('open', flush=True)\ntime.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "open"
        before = _snapshot(tmp_path / "s")
        assert main(["sample", "--space", "x3d", "--trials", "4", "--name", "s", *fast]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"is in use by pid {proc.pid}" in err[0] and err[0].startswith("xnas: error: --name:")
        assert _snapshot(tmp_path / "s") == before
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_holders_lock_is_taken_over(tmp_path: Path) -> None:
    proc = _holder(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run = Run.open("r", driver="test", config={"a": 1}, root=tmp_path)
    try:
        assert f"took over the lock of pid {proc.pid}" in (tmp_path / "r" / "run.log").read_text()
    finally:
        run.close()
    # a cleanly closed run leaves no pid behind: the next open takes over nothing
    again = Run.open("r", driver="test", config={"a": 1}, root=tmp_path)
    again.close()
    assert (tmp_path / "r" / "run.log").read_text().count("took over") == 1


def test_reopening_inside_the_holding_process_is_allowed(tmp_path: Path) -> None:
    first = Run.open("r", driver="test", config={"a": 1}, root=tmp_path)
    second = Run.open("r", driver="test", config={"a": 1}, root=tmp_path)
    second.close()
    proc = subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(120)", ""), str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert "is in use by pid" in proc.stderr  # still held by `first`
    first.close()
    time.sleep(0.1)
    proc = subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(120)", ""), str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
