"""``xnas sample`` / ``plot`` / ``report`` end to end, in-process trials scored by named formulas; the
crash/resume test runs the CLI in a subprocess that the fault-injection switch kills."""
from __future__ import annotations

import json
import subprocess
import sys

import pandas
import pytest

from nas.cli import main
from nas.registry import load_space
from nas.runs import FAULT_EXIT_CODE

FAST = ["--executor", "local", "--evaluator", "formula", "--no-progress"]


def _sample(tmp_path, *extra: str) -> int:
    return main(["sample", "--runs-dir", str(tmp_path), *FAST, *extra])


def test_nsga2_writes_run_directory_plot_and_report(tmp_path, capsys):
    assert _sample(tmp_path, "--space", "x3d", "--strategy", "nsga2", "--trials", "8", "--name", "n",
                   "--baselines", "x3d-xs,x3d-s", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    run = tmp_path / "n"
    for name in ("config.json", "study.db", "results.csv", "run.log", "plots/pareto.png", "plots/pareto.svg"):
        assert (run / name).is_file(), name
    table = pandas.read_csv(run / "results.csv")
    assert len(table) == 10  # 8 sampled + 2 baselines
    assert summary["evaluated"] == 10 and summary["pareto"]
    assert sorted(table[table["tags"].str.contains("baseline")]["name"]) == ["x3d-s", "x3d-xs"]
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["objectives"] == ["top1", "gflops"] and config["evaluator"] == "formula:saturating"
    assert main(["report", str(run), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pareto"] == summary["pareto"]
    gflops = [r["gflops"] for r in report["pareto"]]
    top1 = [r["top1"] for r in report["pareto"]]
    assert gflops == sorted(gflops) and top1 == sorted(top1)  # a front: more cost, more accuracy
    (run / "plots" / "pareto.png").unlink()
    assert main(["plot", str(run), "--baselines", "x3d-m"]) == 0
    assert (run / "plots" / "pareto.png").is_file()


def test_tpe_with_target_uses_the_absolute_reward(tmp_path):
    from nas.integrations.optuna_study import abs_reward

    assert _sample(tmp_path, "--space", "movinet", "--strategy", "tpe", "--trials", "5", "--batch", "2",
                   "--target-gflops", "0.5", "--name", "t") == 0
    import optuna

    study = optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path / 't' / 'study.db'}")
    assert len(study.trials) == 5
    for trial in study.trials:
        attrs = trial.user_attrs
        table = pandas.read_csv(tmp_path / "t" / "results.csv").set_index("hash")
        assert trial.value == pytest.approx(abs_reward(table.loc[attrs["hash"], "top1"], attrs["gflops"], 0.5))


def test_target_ms_rewards_predicted_latency_and_records_it(tmp_path, monkeypatch):
    from nas.dsl.arch import Arch
    from nas.integrations.optuna_study import abs_reward

    from fixtures import latency_table_on_file

    table = latency_table_on_file(tmp_path / "latency", monkeypatch)
    assert _sample(tmp_path, "--space", "x3d", "--strategy", "tpe", "--trials", "4", "--batch", "2",
                   "--target-ms", "20", "--name", "ms") == 0
    import optuna

    rows = pandas.read_csv(tmp_path / "ms" / "results.csv").set_index("hash")
    config = json.loads((tmp_path / "ms" / "config.json").read_text())["config"]
    assert config["target_ms"] == 20 and config["objectives"] == ["reward"] and config["latency"]["threads"] == 1
    study = optuna.load_study(study_name="ms", storage=f"sqlite:///{tmp_path / 'ms' / 'study.db'}")
    assert len(study.trials) == 4
    for trial in study.trials:
        h = trial.user_attrs["hash"]
        arch = Arch.load(tmp_path / "ms" / rows.loc[h, "arch_path"])
        predicted = table.predict_ms(arch)
        assert rows.loc[h, "latency_ms"] == pytest.approx(predicted)
        if trial.value is not None:
            assert trial.value == pytest.approx(abs_reward(rows.loc[h, "top1"], predicted, 20))
    assert (tmp_path / "ms" / "plots" / "pareto_latency.png").is_file()
    (tmp_path / "ms" / "plots" / "pareto_latency.png").unlink()
    assert main(["plot", str(tmp_path / "ms"), "--cost", "latency"]) == 0
    assert (tmp_path / "ms" / "plots" / "pareto_latency.png").is_file()
    # nsga2 trades top-1 against predicted latency under the target
    assert _sample(tmp_path, "--space", "x3d", "--strategy", "nsga2", "--trials", "2", "--target-ms", "20",
                   "--name", "ms2") == 0
    config = json.loads((tmp_path / "ms2" / "config.json").read_text())["config"]
    assert config["objectives"] == ["top1", "latency_ms"]
    assert main(["plot", str(tmp_path / "ms2" / ".." / "ms2"), "--cost", "gflops"]) == 0


def test_a_latency_plot_needs_recorded_latencies(tmp_path, capsys):
    assert _sample(tmp_path, "--space", "x3d", "--trials", "2", "--name", "g") == 0
    capsys.readouterr()
    assert main(["plot", str(tmp_path / "g"), "--cost", "latency"]) == 2
    assert "--cost: got 'latency'" in capsys.readouterr().err


def test_one_cost_target_at_a_time(tmp_path, capsys):
    assert _sample(tmp_path, "--space", "x3d", "--trials", "2", "--target-ms", "5", "--target-gflops", "1") == 2
    assert "--target-ms: got 5 with --target-gflops 1; allowed: one cost target" in capsys.readouterr().err


def test_usage_errors_are_one_line(tmp_path, capsys):
    assert _sample(tmp_path, "--space", "x3d", "--trials", "2", "--formula", "nope") == 2
    assert "--formula: got 'nope'; allowed:" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # checked before the run folder was made
    assert _sample(tmp_path, "--space", "x3d", "--trials", "2", "--name", "x", "--resume") == 2
    assert "--resume: no run 'x'" in capsys.readouterr().err
    assert _sample(tmp_path, "--space", "x3d", "--trials", "2", "--name", "y") == 0
    assert _sample(tmp_path, "--space", "x3d", "--trials", "2", "--name", "y", "--seed", "1") == 2
    assert "config.seed: got 1 but run 'y' was made with 0" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2


def _args(tmp_path, name: str, *extra: str) -> list[str]:
    return ["sample", "--runs-dir", str(tmp_path), *FAST, "--space", "x3d", "--strategy", "tpe", "--trials", "9",
            "--batch", "2", "--formula", "saturating-nan", "--name", name, *extra]


def test_crash_and_resume_end_like_an_uninterrupted_run(tmp_path, capsys):
    # the crash is a real process exit (os._exit in a subprocess); resume and the reference run are in-process
    killed = subprocess.run([sys.executable, "-m", "nas.cli", *_args(tmp_path, "a", "--fail-after-trials", "3")],
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == FAULT_EXIT_CODE, killed.stderr
    assert len(pandas.read_csv(tmp_path / "a" / "results.csv")) == 3
    assert main(_args(tmp_path, "a", "--resume")) == 0
    assert "resumed run a (3 results on file)" in capsys.readouterr().err
    assert main(_args(tmp_path, "b")) == 0
    a = pandas.read_csv(tmp_path / "a" / "results.csv")
    b = pandas.read_csv(tmp_path / "b" / "results.csv")
    assert len(a) == len(b) == 9  # no trial redone, none missing
    assert a["hash"].is_unique
    cols = ["trial", "hash", "top1", "status", "reason", "gflops", "step"]
    pandas.testing.assert_frame_equal(a[cols], b[cols])
    assert (a["status"] == "failed").any()  # NaN trials are recorded as failed, the run went on
    import optuna

    def values(name):
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / name / 'study.db'}")
        return [(t.number, t.state.name, t.value, t.params) for t in study.trials]

    assert values("a") == values("b")


def test_candidates_over_the_cost_cap_are_recorded_untrained(tmp_path, capsys):
    assert _sample(tmp_path, "--space", "x3d", "--strategy", "random", "--trials", "8", "--name", "cap",
                   "--max-gflops", "2", "--json") == 0
    table = pandas.read_csv(tmp_path / "cap" / "results.csv")
    over = table[table["gflops"] > 2]
    assert len(table) == 8 and len(over) > 0 and (table["gflops"] <= 2).any()  # this seed draws both kinds
    assert (over["status"] == "failed").all()
    assert over["reason"].str.startswith("not trained: ").all() and over["reason"].str.contains("cost cap 2").all()
    assert (table[table["gflops"] <= 2]["status"] == "ok").all()
    import optuna

    study = optuna.load_study(study_name="cap", storage=f"sqlite:///{tmp_path / 'cap' / 'study.db'}")
    assert len(study.trials) == 8  # every sampled candidate is a trial
    refused = [t for t in study.trials if t.user_attrs["gflops"] > 2]
    # refused ones are PRUNED with their violation, which TPE and NSGA-II read (a FAIL trial they skip)
    assert [t.state.name for t in refused] == ["PRUNED"] * len(over)
    assert [t.constraints["cost_cap"] for t in refused] == pytest.approx([t.user_attrs["gflops"] - 2 for t in refused])


def test_default_cost_cap_is_the_space_s_largest_reference(tmp_path, capsys):
    from nas.registry import load_arch

    assert _sample(tmp_path, "--space", "x3d", "--trials", "2", "--name", "d", "--json") == 0
    config = json.loads((tmp_path / "d" / "config.json").read_text())["config"]
    assert config["max_gflops"] == round(load_arch("x3d-l").cost().gflops, 4)
    assert "x3d-l" in (tmp_path / "d" / "run.log").read_text()


def test_clip_fixes_the_clip_like_a_search(tmp_path, capsys):
    assert _sample(tmp_path, "--space", "movinet", "--clip", "8x5x112", "--trials", "3", "--max-gflops", "0",
                   "--name", "c") == 0
    table = pandas.read_csv(tmp_path / "c" / "results.csv")
    assert len(table) == 3 and table["name"].str.startswith("movinet-8x5x112-").all()
    from nas.dsl import Arch

    for path in table["arch_path"]:
        doc = Arch.load(tmp_path / "c" / path).doc
        assert doc["clip"] == {"frames": 8, "frame_stride": 5, "crop": 112}
        assert doc["head"]["dropout"] == load_space("movinet").dims()["head/dropout"].default
    capsys.readouterr()
    # a clip outside the space's clip choices is searched as given (stride 10: movinet offers 1-6) ...
    assert _sample(tmp_path, "--space", "movinet", "--clip", "8x10x113", "--trials", "1", "--max-gflops", "0",
                   "--name", "wide") == 0
    path = pandas.read_csv(tmp_path / "wide" / "results.csv")["arch_path"][0]
    assert Arch.load(tmp_path / "wide" / path).doc["clip"] == {"frames": 8, "frame_stride": 10, "crop": 113}
    capsys.readouterr()
    # ... but not one the family refuses, nor a clip on a family whose clip is a factor
    assert _sample(tmp_path, "--space", "movinet", "--clip", "8x5x4", "--trials", "1") == 2
    assert "--clip: clip/crop: got 4; allowed: an integer in [8, 4096]" in capsys.readouterr().err
    assert _sample(tmp_path, "--space", "x3d", "--clip", "8x5x112", "--trials", "1") == 2
    assert "family 'x3d' has none" in capsys.readouterr().err


def test_timeout_stops_asking_and_a_rerun_goes_on(tmp_path):
    assert _sample(tmp_path, "--space", "x3d", "--trials", "12", "--batch", "4", "--timeout", "1e-9", "--name", "t") == 0
    assert len(pandas.read_csv(tmp_path / "t" / "results.csv")) == 4  # the first batch always runs
    assert "--timeout 1e-09 s reached after 4 trial(s)" in (tmp_path / "t" / "run.log").read_text()
    assert _sample(tmp_path, "--space", "x3d", "--trials", "12", "--batch", "4", "--name", "t", "--resume") == 0
    assert len(pandas.read_csv(tmp_path / "t" / "results.csv")) == 12
