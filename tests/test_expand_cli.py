"""``xnas expand`` end to end with the ``x3d-factors`` formula (no training): outputs, resume after a
crash, and one-line errors for bad flags."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nas.cli import main

ROOT = Path(__file__).resolve().parents[1]
FORMULA = ["--executor", "local", "--evaluator", "formula", "--no-progress"]


def _xnas(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)


def test_expand_formula_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["expand", "--target-gflops", "0.6", "--runs-dir", str(tmp_path), "--name", "t", *FORMULA])
    out = capsys.readouterr().out
    assert code == 0
    run = tmp_path / "t"
    summary = json.loads((run / "expand.json").read_text())
    assert summary["landed"] and abs(summary["final"]["gflops"] / 0.6 - 1) <= 0.03
    assert [p["axis"] for p in summary["path"]][1:] == ["frame_stride", "frame_stride", "bottleneck", "spatial", "depth"]
    rows = list(csv.DictReader((run / "trajectory.csv").open()))
    assert len(rows) == 1 + 5 * 6
    for name in ["expand-step-00-start", "expand-step-05-depth", "expand-final"]:
        assert (run / "archs" / f"{name}.yaml").is_file()
    assert (run / "plots" / "expansion.png").is_file() and (run / "plots" / "pareto.png").is_file()
    assert "final: 0.6010 GFLOPs" in out and "multiply-adds" in out and "trajectory.csv" in out
    # every candidate is in the run's results table, once
    results = list(csv.DictReader((run / "results.csv").open()))
    assert len(results) == len({r["hash"] for r in results}) == 31


def test_resume_after_crash_does_not_redo_finished_trials(tmp_path: Path) -> None:
    args = ["expand", "--target-gflops", "0.6", "--runs-dir", str(tmp_path), "--name", "r", *FORMULA]
    crashed = _xnas(*args, "--fail-after-trials", "12")
    from nas.runs import FAULT_EXIT_CODE

    assert crashed.returncode == FAULT_EXIT_CODE, crashed.stderr[-2000:]
    rows = list(csv.DictReader((tmp_path / "r" / "results.csv").open()))
    assert len(rows) == 12
    done = _xnas(*args, "--resume")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = list(csv.DictReader((tmp_path / "r" / "results.csv").open()))
    assert len(rows) == len({r["hash"] for r in rows}) == 31  # the 12 finished ones were not redone
    # the start and step 1 come from the results on file; step 2 had 5 of its 6 done before the crash
    assert done.stderr.count("[r] evaluating ") == 4 and "evaluating 1 architecture(s) (5 cached)" in done.stderr
    summary = json.loads((tmp_path / "r" / "expand.json").read_text())
    assert summary["landed"]


@pytest.mark.parametrize("flags, message", [
    (["--target-gflops", "0.01"], "xnas: error: --target-gflops: got 0.01; allowed: a number above the start's cost"),
    (["--target-gflops", "1", "--axes", "frames,height"], "xnas: error: --axes: got 'height'; allowed: a comma-separated subset of frame_stride,frames,spatial,width,bottleneck,depth"),
    (["--target-gflops", "1", "--criterion", "best"], "xnas: error: --criterion: got 'best'; allowed: one of gain-per-log-cost, gain-per-gflop, accuracy, loss-drop-per-log-cost"),
    (["--target-gflops", "1", "--rate", "0.5"], "xnas: error: --rate: got 0.5"),
    (["--target-gflops", "1", "--from", "movinet-a0"], "xnas: error: --from: got 'movinet-a0'; allowed: an architecture with the six X3D factors"),
    (["--target-gflops", "1", "--from", "nope"], "xnas: error: --from: "),
    (["--target-gflops", "1", "--formula", "nope"], "xnas: error: --formula: got 'nope'"),
])
def test_bad_flags(tmp_path: Path, capsys: pytest.CaptureFixture, flags: list[str], message: str) -> None:
    code = main(["expand", *flags, "--runs-dir", str(tmp_path), *FORMULA])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(message) and err.count("\n") == 1, err


def test_resume_without_a_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["expand", "--target-gflops", "1", "--runs-dir", str(tmp_path), "--name", "none", "--resume", *FORMULA])
    assert code == 2 and "--resume: no run 'none'" in capsys.readouterr().err


@pytest.mark.slow
def test_expand_through_ray_with_the_formula(tmp_path: Path) -> None:
    """The default executor (local Ray) with the formula inside the trials: same path as in-process."""
    done = _xnas("expand", "--target-gflops", "0.3", "--runs-dir", str(tmp_path), "--name", "ray",
                 "--evaluator", "formula", "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "ray" / "expand.json").read_text())
    assert [p["axis"] for p in summary["path"]][1:] == ["frame_stride", "frame_stride", "bottleneck", "spatial"]
    assert summary["landed"]
    # CPUs per trial sized by each trial's step by default, as the run's config records
    config = json.loads((tmp_path / "ray" / "config.json").read_text())["config"]
    assert config["cpus_per_trial"] == "auto"


def test_interrupt_keeps_the_run(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C during a step: exit 130 with a hint to --resume, no traceback."""
    import nas.drivers.expand as driver

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(driver, "expand", interrupted)
    code = main(["expand", "--target-gflops", "1", "--runs-dir", str(tmp_path), "--name", "i", *FORMULA])
    assert code == 130
    assert "rerun with --resume --name i to continue" in capsys.readouterr().err


def test_expand_to_a_latency_target(tmp_path: Path, monkeypatch, capsys) -> None:
    """``--target-ms``: every step aims at 2x the parent's *predicted latency*, and the final
    architecture lands within the tolerance of the target in milliseconds (GFLOPs reported beside)."""
    from fixtures import latency_table_on_file

    from nas.dsl.arch import Arch

    table = latency_table_on_file(tmp_path / "latency", monkeypatch)
    code = main(["expand", "--target-ms", "3", "--runs-dir", str(tmp_path), "--name", "ms", *FORMULA])
    out = capsys.readouterr().out
    assert code == 0, out
    run = tmp_path / "ms"
    summary = json.loads((run / "expand.json").read_text())
    assert summary["target_ms"] == 3 and summary["target_gflops"] is None and summary["landed"]
    final = Arch.load(run / summary["final"]["file"])
    assert abs(table.predict_ms(final) / 3 - 1) <= 0.03
    assert summary["final"]["latency_ms"] == pytest.approx(table.predict_ms(final))
    rows = list(csv.DictReader((run / "trajectory.csv").open()))
    for r in rows:
        if r["role"] == "candidate" and r["ratio"]:
            assert float(r["latency_ms"]) > 0 and 1.3 < float(r["ratio"]) < 3.0  # x2 in latency, give or take rounding
    assert "ms predicted" in out and (run / "plots" / "expansion.png").is_file()
    results = list(csv.DictReader((run / "results.csv").open()))
    assert results and all(float(r["latency_ms"]) > 0 for r in results)
    # audited with its own formula, every replayed decision is the run's: the replay divides by the
    # log-ratio of the latency the run expanded in, not of GFLOPs
    capsys.readouterr()
    assert main(["fidelity", str(run), "--evaluator", "formula", "--formula", "x3d-factors", "--executor", "local",
                 "--no-progress", "--expand-steps", "1,2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steps"] and all(st["agree"] for st in report["steps"])
    assert json.loads((run / "config.json").read_text())["config"]["latency"]["threads"] == 1
    with pytest.raises(SystemExit):
        main(["expand", "--target-ms", "3", "--target-gflops", "1", *FORMULA])
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(["expand", "--target-ms", "0.0001", "--runs-dir", str(tmp_path), *FORMULA]) == 2
    assert "--target-ms: got 0.0001; allowed: a number above the start's predicted latency" in capsys.readouterr().err


@pytest.mark.parametrize("flags, layout", [([], "auto"), (["--layout", "channels_first"], "channels_first")])
def test_layout_flag_sets_the_proxy(flags: list[str], layout: str) -> None:
    """``--layout`` names the training memory format (a fixed one repeats exactly; ``auto`` times both)."""
    from nas.cli import build_parser
    from nas.commands._run_options import proxy_from_args
    from nas.commands.expand import DEFAULT_PROXY

    args = build_parser().parse_args(["expand", "--target-gflops", "1", *flags])
    assert proxy_from_args(args, DEFAULT_PROXY).layout == layout


def test_bad_layout_names_the_choices(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["expand", "--target-gflops", "1", "--layout", "nhwc", "--runs-dir", str(tmp_path), *FORMULA])
    err = capsys.readouterr().err
    assert err == "xnas: error: --layout: got 'nhwc'; allowed: one of auto, channels_last_3d, channels_first\n"
    assert code == 2
