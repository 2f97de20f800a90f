"""Run directories: files, cache, recording, resume repair, config identity, formulas, plots."""
from __future__ import annotations

import json
import math
import random

import pandas
import pytest

from nas import load_arch, load_space
from nas.errors import RunError
from nas.evaluator import FormulaEvaluator
from nas.formulas import FORMULAS, formula_names, get_formula, register_formula
from nas.plots import pareto_front, pareto_plot
from nas.runs import COLUMNS, Run, evaluation_key, read_results


def _archs(n: int, seed: int = 0):
    space = load_space("movinet")
    rng = random.Random(seed)
    return [space.freeze(space.random(rng)) for _ in range(n)]


def _open(tmp_path, name="r", **config):
    run = Run.open(name, driver="test", config={"space": "movinet", **config}, root=tmp_path)
    run.echo = False
    return run


def test_run_directory_layout_and_results_table(tmp_path):
    run = _open(tmp_path)
    inner = FormulaEvaluator(get_formula("saturating"), "saturating")
    archs = _archs(3)
    results = run.evaluator(inner).evaluate(archs, [{"driver": "test", "step": i, "axis": "w"} for i in range(3)])
    assert [r.arch_hash for r in results] == [a.hash for a in archs]
    for name in ("config.json", "results.csv", "study.db", "run.log"):
        assert (run.dir / name).is_file(), name
    assert (run.dir / "plots").is_dir()
    table = run.results()
    assert list(table.columns) == list(COLUMNS)
    assert list(table["hash"]) == [a.hash for a in archs]
    assert list(table["step"]) == [0, 1, 2]
    assert json.loads(table["tags"][0]) == {"driver": "test", "step": 0, "axis": "w"}
    # the frozen documents are written and load back to the same architecture
    for arch, rel in zip(archs, table["arch_path"]):
        assert load_arch(str(run.dir / rel)) == arch
    # exact floats: the CSV gives back the very numbers the evaluator returned
    assert list(table["top1"]) == [r.top1 for r in results]
    assert list(table["gflops"]) == [a.cost().gflops for a in archs]
    config = json.loads((run.dir / "config.json").read_text())
    assert config["driver"] == "test" and config["config"]["space"] == "movinet"


def test_optuna_trials_hold_sample_params_and_attrs(tmp_path):
    run = _open(tmp_path)
    archs = _archs(2, seed=3)
    run.evaluator(FormulaEvaluator(get_formula("saturating"), "saturating")).evaluate(archs, [{"step": 7}] * 2)
    space = load_space("movinet")
    trials = run.study.trials()
    assert len(trials) == 2
    for trial, arch in zip(trials, archs):
        assert trial["state"] == "COMPLETE"
        attrs = trial["user_attrs"]
        assert attrs["hash"] == arch.hash and attrs["status"] == "ok" and attrs["step"] == 7
        assert attrs["params"] == arch.cost().params and math.isclose(attrs["gflops"], arch.cost().gflops)
        sample = space.sample_of(arch)
        from nas.integrations.optuna_study import decode_sample

        assert space.freeze(decode_sample(space, trial["params"])) == arch
        assert set(trial["params"]) == set(sample)


def test_cache_hit_never_evaluates_twice_across_reopen(tmp_path):
    archs = _archs(3)
    run = _open(tmp_path)
    inner = FormulaEvaluator(get_formula("saturating"), "saturating")
    first = run.evaluator(inner).evaluate(archs)
    assert len(inner.calls) == 3
    again = run.evaluator(inner).evaluate(archs + archs[:1])  # duplicates and repeats: cache
    assert len(inner.calls) == 3
    assert [r.top1 for r in again] == [r.top1 for r in first] + [first[0].top1]
    reopened = _open(tmp_path)
    inner2 = FormulaEvaluator(get_formula("saturating"), "saturating")
    assert [r.top1 for r in reopened.evaluator(inner2).evaluate(archs)] == [r.top1 for r in first]
    assert inner2.calls == []
    assert len(reopened.results()) == 3 and len(reopened.study.trials()) == 3
    # another evaluation key (another formula) is another result, not a cache hit
    inner3 = FormulaEvaluator(get_formula("saturating-nan"), "saturating-nan")
    reopened.evaluator(inner3).evaluate(archs[:1])
    assert inner3.calls == [archs[0].hash]


def test_failed_trial_is_recorded_with_reason(tmp_path):
    run = _open(tmp_path)
    pool = _archs(40)
    archs = [a for a in pool if a.hash[0] in "0123"][:2] + [a for a in pool if a.hash[0] not in "0123"][:3]
    results = run.evaluator(FormulaEvaluator(get_formula("saturating-nan"), "saturating-nan")).evaluate(archs)
    failed = [r for r in results if r.status == "failed"]
    assert len(failed) == 2 and len(results) == 5  # two fail, the rest goes on
    table = run.results()
    assert set(table[table["status"] == "failed"]["reason"]) == {"score is nan"}
    states = {t["state"] for t in run.study.trials()}
    assert states == {"COMPLETE", "FAIL"}


def test_config_change_is_an_error_naming_the_field(tmp_path):
    _open(tmp_path, steps=10)
    with pytest.raises(RunError, match=r"config\.steps: got 20 but run 'r' was made with 10"):
        _open(tmp_path, steps=20)
    # result-neutral settings may change on resume
    run = Run.open("r", driver="test", config={"space": "movinet", "steps": 10, "executor": "local"},
                   root=tmp_path, resume=True)
    assert run.config["executor"] == "local"
    with pytest.raises(RunError, match="resume: no run 'nope'"):
        Run.open("nope", driver="test", config={}, root=tmp_path, resume=True)
    with pytest.raises(RunError, match="name: run 'r' was made by driver 'test'"):
        Run.open("r", driver="other", config={"space": "movinet", "steps": 10}, root=tmp_path)


def test_default_name_is_driver_and_config_hash(tmp_path):
    a = Run.open(None, driver="d", config={"x": 1, "executor": "ray"}, root=tmp_path)
    b = Run.open(None, driver="d", config={"x": 1, "executor": "local"}, root=tmp_path)
    c = Run.open(None, driver="d", config={"x": 2}, root=tmp_path)
    assert a.name == b.name and a.name.startswith("d-") and c.name != a.name


def test_torn_last_line_is_dropped_and_missing_trial_reconciled(tmp_path):
    run = _open(tmp_path)
    archs = _archs(3)
    run.evaluator(FormulaEvaluator(get_formula("saturating"), "saturating")).evaluate(archs)
    text = (run.dir / "results.csv").read_text()
    # a kill -9 in the middle of writing the third row
    (run.dir / "results.csv").write_text(text[: text.rindex("\n", 0, len(text) - 1) + 30])
    rows = read_results(run.dir / "results.csv")
    assert [r["hash"] for r in rows] == [a.hash for a in archs[:2]]
    # a study missing a trial whose row is on file gets it back on reopen
    import shutil

    shutil.copy(run.dir / "results.csv", tmp_path / "keep.csv")
    (run.dir / "study.db").unlink()
    reopened = _open(tmp_path)
    assert [t["user_attrs"]["hash"] for t in reopened.study.trials()] == [a.hash for a in archs[:2]]
    inner = FormulaEvaluator(get_formula("saturating"), "saturating")
    reopened.evaluator(inner).evaluate(archs)
    assert inner.calls == [archs[2].hash]


def test_a_results_file_from_before_a_column_was_added_reads_and_is_migrated_by_its_writer(tmp_path):
    """Runs recorded before ``workers`` existed stay readable (old rows read as one process), and the
    run's writer rewrites the file under the current header before its next append: one schema per file."""
    import csv

    from nas.runs import ADDED_COLUMNS

    run = _open(tmp_path)
    archs = _archs(3)
    run.evaluator(FormulaEvaluator(get_formula("saturating"), "saturating")).evaluate(archs[:2])
    path = run.dir / "results.csv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    old_columns = [c for c in COLUMNS if c not in ADDED_COLUMNS]
    with open(path, "w", newline="") as f:  # the file as an older xnas wrote it
        writer = csv.DictWriter(f, fieldnames=old_columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    before = path.read_text()
    read = read_results(path)
    assert [r["hash"] for r in read] == [a.hash for a in archs[:2]]
    assert [r["workers"] for r in read] == ["1", "1"] and set(read[0]) == set(COLUMNS)
    assert path.read_text() == before  # a reader never rewrites
    run.close()
    reopened = _open(tmp_path)
    inner = FormulaEvaluator(get_formula("saturating"), "saturating")
    reopened.evaluator(inner).evaluate(archs)
    assert inner.calls == [archs[2].hash]  # the old rows still serve the cache
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)
    assert [r["hash"] for r in read_results(path)] == [a.hash for a in archs]


def test_a_results_file_with_an_unknown_column_is_refused_by_name(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text(",".join([*COLUMNS, "from_the_future"]) + "\n")
    with pytest.raises(ValueError, match="from_the_future"):
        read_results(path)


def test_evaluation_key_requires_a_cache_key():
    class Anonymous:
        def evaluate(self, archs, tags=None):
            return []

    with pytest.raises(TypeError, match="cache_key"):
        evaluation_key(Anonymous())


def test_formula_registry():
    assert {"saturating", "saturating-nan"} <= set(formula_names())
    with pytest.raises(ValueError, match=r"evaluator\.formula: got 'nope'; allowed: .*saturating"):
        get_formula("nope")

    @register_formula("test-constant")
    def constant(arch):
        return 50.0

    try:
        assert get_formula("test-constant")(load_arch("x3d-xs")) == 50.0
        with pytest.raises(ValueError, match="already registered"):
            register_formula("test-constant")(lambda a: 1.0)
    finally:
        FORMULAS.pop("test-constant")
    # more compute, more (formula) accuracy
    assert get_formula("saturating")(load_arch("x3d-m")) > get_formula("saturating")(load_arch("x3d-xs"))


def test_pareto_front_and_plot(tmp_path):
    table = pandas.DataFrame({
        "name": ["a", "b", "c", "d", "e", "ref"], "hash": list("abcdef"),
        "gflops": [1.0, 2.0, 3.0, 4.0, 0.5, 2.5], "top1": [50.0, 40.0, 60.0, math.nan, 30.0, 99.0],
        "status": ["ok", "ok", "ok", "failed", "ok", "ok"],
        "tags": ["{}"] * 5 + ['{"role": "baseline"}'],
    })
    front = pareto_front(table)
    assert list(front["name"]) == ["e", "a", "c"]  # b is dominated by a, d failed, ref is a baseline
    path = pareto_plot(table, tmp_path / "plots" / "p.png", baselines=[load_arch("x3d-xs")], chosen=["c"])
    assert path.is_file() and path.stat().st_size > 5000
    assert path.with_suffix(".svg").read_text().lstrip().startswith("<?xml")


def test_memory_refusal_is_retried_when_the_run_resumes(tmp_path):
    import dataclasses

    from nas.proxy import MEMORY_REFUSAL

    class RefusesFirst(FormulaEvaluator):
        """Refuses every candidate for memory on its first use, then scores them."""

        refuse = True

        def evaluate(self, archs, tags=None):
            results = super().evaluate(archs, tags)
            if not RefusesFirst.refuse:
                return results
            return [dataclasses.replace(r, status="failed", reason=MEMORY_REFUSAL + "needs about 30 GiB",
                                        top1=math.nan) for r in results]

    archs = _archs(2)
    run = _open(tmp_path)
    first = run.evaluator(RefusesFirst(get_formula("saturating"), "saturating")).evaluate(archs)
    assert {r.status for r in first} == {"failed"}
    RefusesFirst.refuse = False  # e.g. resumed with more --memory-per-trial, or on a bigger machine
    reopened = _open(tmp_path)
    inner = RefusesFirst(get_formula("saturating"), "saturating")
    again = reopened.evaluator(inner).evaluate(archs)
    assert len(inner.calls) == 2 and {r.status for r in again} == {"ok"}


def test_run_recorded_before_a_proxy_field_existed_resumes_only_under_its_old_behaviour(tmp_path):
    """A config.json written before ``zero_init_residual`` existed ran with zero-initialised residual
    branches: it resumes with that setting and refuses the new default, naming the field."""
    from nas.proxy import Proxy

    old = Proxy().to_dict()
    del old["zero_init_residual"]
    Run.open("r", driver="test", config={"proxy": old}, root=tmp_path).close()
    with pytest.raises(RunError, match=r"config\.proxy\.zero_init_residual: got false but run 'r' was made with true"):
        Run.open("r", driver="test", config={"proxy": Proxy().to_dict()}, root=tmp_path)
    legacy = {**old, "zero_init_residual": True}
    run = Run.open("r", driver="test", config={"proxy": legacy}, root=tmp_path)
    assert run.config["proxy"]["zero_init_residual"] is True
    run.close()
