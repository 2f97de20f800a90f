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
        proc.stdout.close()


def test_the_cli_says_it_in_one_line(tmp_path: Path, capsys) -> None:
    fast = ["--executor", "local", "--evaluator", "formula", "--no-progress", "--runs-dir", str(tmp_path)]
    # the first run in its own process: an engine of it left in this one would checkpoint the SQLite WAL
    # into study.db whenever the garbage collector closes it -- maybe during the refused run below
    first = ["sample", "--space", "x3d", "--trials", "2", "--name", "s", *fast]
    subprocess.run([sys.executable, "-c", f"import sys; from nas.cli import main; sys.exit(main({first!r}))"],
                   check=True, capture_output=True, timeout=300)
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
        proc.stdout.close()


def test_a_killed_holders_lock_is_taken_over(tmp_path: Path) -> None:
    proc = _holder(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
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


# -- kill -9 at seeded random instants, then resume: the same results as the uninterrupted run --------

FORMULA = ["--executor", "local", "--evaluator", "formula", "--no-progress"]


def _rows(run_dir: Path) -> list[tuple[str, str, str, str]]:
    import csv

    with open(run_dir / "results.csv", newline="") as f:
        return [(r["trial"], r["hash"], r["status"], r["top1"]) for r in csv.DictReader(f)]


def _trials(run_dir: Path) -> list[tuple]:
    from nas.integrations.optuna_study import optuna

    storage = f"sqlite:///{run_dir / 'study.db'}"
    study = optuna.load_study(study_name=run_dir.name, storage=storage)
    return [(t.number, t.state.name, t.values, t.params) for t in study.get_trials(deepcopy=False)]


def _kill_when(cmd: list[str], ready, delay_s: float, timeout_s: float = 120, env: dict | None = None) -> bool:
    """Start the real CLI, SIGKILL it ``delay_s`` after ``ready()`` turns true; whether it was killed
    (False: it finished first). ``env``: variables added to this process's environment."""
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", *cmd], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    deadline = time.monotonic() + timeout_s
    try:
        while proc.poll() is None and not ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{cmd}: never ready")
            time.sleep(0.005)
        time.sleep(delay_s)
        killed = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return killed
    finally:
        if proc.poll() is None:
            proc.kill()


def _row_count(path: Path) -> int:
    try:
        return max(0, len(path.read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


def _sample_kill_resume(tmp_path: Path, strategy: str, kills: list[tuple[int, float]], trials: int = 16,
                        extra: tuple[str, ...] = ()) -> None:
    base = ["sample", "--space", "movinet", "--strategy", strategy, "--trials", str(trials), "--batch", "4",
            *FORMULA, *extra, "--runs-dir", str(tmp_path)]
    assert main([*base, "--name", "full"]) == 0
    killed_dir = tmp_path / "killed"
    for rows, delay in kills:
        assert _kill_when([*base, "--name", "killed"], lambda: _row_count(killed_dir / "results.csv") >= rows, delay)
        assert _row_count(killed_dir / "results.csv") < trials  # the kill landed inside the run
    assert main([*base, "--name", "killed", "--resume"]) == 0
    assert _rows(killed_dir) == _rows(tmp_path / "full")
    assert _trials(killed_dir) == _trials(tmp_path / "full")
    assert len(_trials(killed_dir)) == trials


@pytest.mark.parametrize("strategy,kills", [
    ("tpe", [(5, 0.003), (11, 0.0)]),
    pytest.param("random", [(2, 0.001)], marks=pytest.mark.slow),  # the default suite kills one strategy (CI time)
    pytest.param("nsga2", [(9, 0.002)], marks=pytest.mark.slow),
])
def test_sample_killed_anywhere_resumes_to_the_uninterrupted_run(tmp_path: Path, strategy: str, kills) -> None:
    _sample_kill_resume(tmp_path, strategy, kills)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["tpe", "random", "nsga2"])
@pytest.mark.parametrize("seed", range(4))
def test_sample_many_kill_points(tmp_path: Path, strategy: str, seed: int) -> None:
    import random

    rng = random.Random(seed)
    kills = sorted((rng.randrange(0, 40), rng.random() * 0.01) for _ in range(3))
    _sample_kill_resume(tmp_path, strategy, kills, trials=40)


def test_expand_killed_anywhere_resumes_to_the_uninterrupted_run(tmp_path: Path) -> None:
    base = ["expand", "--target-gflops", "0.3", "--formula", "x3d-factors", *FORMULA, "--runs-dir", str(tmp_path)]
    assert main([*base, "--name", "full"]) == 0
    killed = tmp_path / "killed"
    for rows, delay in [(3, 0.001), (11, 0.0)]:
        assert _kill_when([*base, "--name", "killed"], lambda: _row_count(killed / "results.csv") >= rows, delay)
    assert main([*base, "--name", "killed", "--resume"]) == 0
    assert _rows(killed) == _rows(tmp_path / "full")
    assert (killed / "trajectory.csv").read_text() == (tmp_path / "full" / "trajectory.csv").read_text()


@pytest.mark.parametrize("executor", ["local", pytest.param("ray", marks=pytest.mark.slow)])
def test_search_killed_anywhere_resumes_to_the_uninterrupted_run(tmp_path: Path, executor: str) -> None:
    from nas.drivers.tunas.testing import TINY_SPACE

    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE)
    base = ["search", "--space", str(space), "--target-gflops", "0.0015", "--search-steps", "32",
            "--search-size-scale", "1", "--search-batch-size", "2", "--val-multiplier", "2", "--search-train-clips", "4",
            "--clip", "4x2x32", "--top-k", "1", "--executor", executor, "--evaluator", "formula", "--no-progress",
            "--runs-dir", str(tmp_path / "runs")]
    assert main([*base, "--name", "full"]) == 0
    search = tmp_path / "runs" / "killed" / "search-0.0015"
    # killed after its first checkpoint (step 30 of 32; checkpoints however close together)
    assert _kill_when([*base, "--name", "killed"], lambda: (search / "checkpoint.pt").is_file(), 0.05,
                      env={"XNAS_CHECKPOINT_MIN_S": "0"})
    assert not (search / "argmax.yaml").is_file()  # killed inside the search
    assert main([*base, "--name", "killed", "--resume"]) == 0
    full = tmp_path / "runs" / "full" / "search-0.0015"
    for name in ("argmax.yaml", "policy.csv"):
        assert (search / name).read_text() == (full / name).read_text()
    if executor == "local":
        assert _rows(search.parent) == _rows(full.parent)
    else:  # the retrained rows come in finishing order
        assert sorted(r[1:] for r in _rows(search.parent)) == sorted(r[1:] for r in _rows(full.parent))


@pytest.mark.slow
def test_sample_on_ray_killed_mid_batch_resumes_to_the_uninterrupted_run(tmp_path: Path) -> None:
    extra = ("--executor", "ray", "--cpus-per-trial", "1")
    base = ["sample", "--space", "movinet", "--strategy", "tpe", "--trials", "12", "--batch", "4", "--evaluator",
            "formula", "--no-progress", *extra, "--runs-dir", str(tmp_path)]
    assert main([*base, "--name", "full"]) == 0
    killed = tmp_path / "killed"
    assert _kill_when([*base, "--name", "killed"], lambda: _row_count(killed / "results.csv") >= 5, 0.0, timeout_s=300)
    assert main([*base, "--name", "killed", "--resume"]) == 0
    # Ray runs a batch's trials in parallel and rows are written as each finishes: the row order within a
    # batch is the finishing order, run to run; the trials, their architectures and scores are the same
    assert sorted(_rows(killed)) == sorted(_rows(tmp_path / "full"))
    assert _trials(killed) == _trials(tmp_path / "full")


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local", "ray"])
@pytest.mark.parametrize("seed", range(2))
def test_expand_many_kill_points(tmp_path: Path, executor: str, seed: int) -> None:
    import random

    rng = random.Random(seed)
    base = ["expand", "--target-gflops", "0.3", "--formula", "x3d-factors", "--executor", executor, "--evaluator",
            "formula", "--no-progress", "--runs-dir", str(tmp_path)]
    assert main([*base, "--name", "full"]) == 0
    killed = tmp_path / "killed"
    for rows in sorted(rng.randrange(1, 25) for _ in range(2)):
        _kill_when([*base, "--name", "killed"], lambda: _row_count(killed / "results.csv") >= rows,
                   rng.random() * 0.01, timeout_s=300)
    assert main([*base, "--name", "killed", "--resume"]) == 0
    # Ray: rows (and the trial numbers an expansion gives them) come in finishing order
    assert sorted(r[1:] for r in _rows(killed)) == sorted(r[1:] for r in _rows(tmp_path / "full"))
    assert (killed / "trajectory.csv").read_text() == (tmp_path / "full" / "trajectory.csv").read_text()


def test_readers_never_rewrite_a_live_runs_results(tmp_path: Path) -> None:
    """``xnas report`` (a reader) leaves a torn last line to the run's writer: rewriting the file under a
    live writer would swap the file its next appends go to, and those rows would be lost."""
    from nas.commands.results import load_results
    from nas.runs import read_results

    fast = [*FORMULA, "--runs-dir", str(tmp_path)]
    assert main(["sample", "--space", "x3d", "--trials", "3", "--name", "s", *fast]) == 0
    path = tmp_path / "s" / "results.csv"
    torn = path.read_text() + "3,abc,half-a-ro"
    path.write_text(torn)
    assert len(read_results(path)) == 3 and len(load_results(tmp_path / "s")) == 3
    assert path.read_text() == torn  # untouched by readers
    assert main(["sample", "--space", "x3d", "--trials", "4", "--name", "s", *fast]) == 0  # the writer repairs
    assert len(read_results(path)) == 4 and path.read_text().endswith("\n")


def test_a_file_system_without_locks_warns_and_goes_on(tmp_path: Path, monkeypatch) -> None:
    import errno
    import fcntl

    real = fcntl.flock

    def no_locks(fd, op):
        if op & fcntl.LOCK_EX:
            raise OSError(errno.ENOLCK, "No locks available")
        return real(fd, op)

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.warns(RuntimeWarning, match="cannot lock .*one writer per run is not enforced"):
        run = Run.open("r", driver="test", config={"a": 1}, root=tmp_path)
    run.close()
    assert (tmp_path / "r" / "config.json").is_file()
