"""Trials on Ray Tune. Ray start-up costs seconds on a small machine, so the default suite shares one
local Ray session (module fixture) between two tests; the cluster-joining (``ray start --head`` +
``--address``) and ASHA tests are slow-marked."""
from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas
import pytest

from nas import load_space
from nas.dsl import Space
from nas.evaluator import FormulaEvaluator
from nas.formulas import get_formula
from nas.proxy import Proxy
from nas.runs import Run

TINY_SPACE = """
xnas: 1
kind: space
name: tiny
family: movinet
classes: 5
clip: {frames: 4, frame_stride: {choice: [1, 2]}, crop: 32}
activation: swish
gating: sigmoid
stem: {width: {choice: [8, 16], label: narrow}, kernel: 1x3x3, stride: [1, 2, 2]}
blocks:
  - width: {choice: [8, 16], label: narrow}
    stride: [1, 2, 2]
    layers:
      repeat: {choice: [1, 2]}
      each: {kernel: {choice: [1x3x3, 3x3x3]}, expand: {range: [16, 32], step: 8}}
head: {project: 32, width: 64, dropout: 0.0}
"""
TINY_PROXY = Proxy(steps=2, batch_size=4, size_scale=0.5, train_clips=16, val_clips=8, warmup_steps=0,
                   checkpoint_every=1, layout="channels_first")




def _archs(space, n, seed=0):
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        arch = space.freeze(space.random(rng))
        if arch not in out:
            out.append(arch)
    return out


def test_formula_trials_on_ray_match_in_process_and_record(ray_session, tmp_path, capsys):
    from nas.integrations.ray_tune import RayEvaluator

    space = load_space("movinet")
    pool = _archs(space, 40)
    archs = [a for a in pool if a.hash[0] in "0123"][:1] + [a for a in pool if a.hash[0] not in "0123"][:3]
    run = Run.open("r", driver="test", config={"space": "movinet"}, root=tmp_path)
    ray_eval = RayEvaluator("synthetic", TINY_PROXY, 0, log_dir=run.dir / "ray",
                            evaluator_spec={"kind": "formula", "name": "saturating-nan"})
    results = run.evaluator(ray_eval).evaluate(archs, [{"step": 1}] * 4)
    local = FormulaEvaluator(get_formula("saturating-nan"), "saturating-nan").evaluate(archs)
    assert [r.status for r in results] == [r.status for r in local] == ["failed", "ok", "ok", "ok"]
    assert [r.top1 for r in results[1:]] == [r.top1 for r in local[1:]]
    assert results[0].reason == "score is nan"  # the NaN trial is failed with its reason; the batch went on
    table = run.results()
    # rows are written as trials finish, so on Ray their order is the completion order
    assert sorted(table["hash"]) == sorted(a.hash for a in archs) and len(run.study.trials()) == 4
    err = capsys.readouterr().err
    assert "[ray] 4/4 done, 0 running, 1 failed; best top-1" in err  # the concise progress line
    assert "Trial status" not in err and "+----" not in err  # no Tune status tables
    assert (run.dir / "ray" / "tune").is_dir()
    # the same evaluation key as in-process: switching executors on resume hits the cache
    inner = FormulaEvaluator(get_formula("saturating-nan"), "saturating-nan")
    run.evaluator(inner).evaluate(archs)
    assert inner.calls == []


def test_real_training_trial_on_ray(ray_session, tmp_path):
    from nas.integrations.ray_tune import RayEvaluator

    space = Space.from_yaml(TINY_SPACE)
    arch = _archs(space, 1)[0]
    run = Run.open("t", driver="test", config={"space": "tiny"}, root=tmp_path)
    run.register_space(space)
    evaluator = RayEvaluator("synthetic", TINY_PROXY, 3, log_dir=run.dir / "ray", progress=False)
    (result,) = run.evaluator(evaluator).evaluate([arch])
    assert result.status == "ok", result.reason
    assert result.steps == 2 and 0 <= result.top1 <= 100 and result.seed == 3
    assert result.proxy_hash == TINY_PROXY.hash and result.gflops == arch.cost().gflops
    row = run.results().iloc[0]
    assert row["top1"] == result.top1 and row["eval_key"] == evaluator.cache_key
    trial = run.study.trials()[0]
    from nas.integrations.optuna_study import decode_sample

    assert space.freeze(decode_sample(space, trial["params"])) == arch  # params = the DSL sample
    assert not list((run.dir / "ray" / "checkpoints").glob("*.pt"))  # mid-trial checkpoint removed once recorded


def test_auto_cpus_per_trial_sizes_each_trial_on_ray(ray_session, tmp_path):
    """``cpus_per_trial="auto"``: Tune reserves each trial's own CPUs (read from its job), and the trials
    train with that many threads."""
    import json
    import pickle

    from nas.integrations.ray_tune import RayEvaluator

    space = Space.from_yaml(TINY_SPACE)
    archs = _archs(space, 2)
    run = Run.open("auto", driver="test", config={"space": "tiny"}, root=tmp_path)
    run.register_space(space)
    evaluator = RayEvaluator("synthetic", TINY_PROXY, 0, cpus_per_trial="auto", log_dir=run.dir / "ray",
                             progress=False)
    results = run.evaluator(evaluator).evaluate(archs)
    assert [r.status for r in results] == ["ok", "ok"], [r.reason for r in results]
    # what Tune reserved for each trial, from its experiment state (the resource request is pickled there)
    (state,) = (run.dir / "ray" / "tune").rglob("experiment_state-*.json")
    trials = [json.loads(t[0]) for t in json.loads(state.read_text())["trial_data"]]
    assert sorted((t["config"]["job"]["trial_cpus"], t["config"]["job"]["threads"]) for t in trials) == [(1, 1)] * 2
    assert [pickle.loads(bytes.fromhex(t["placement_group_factory"])).bundles for t in trials] == [[{"CPU": 1.0}]] * 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _loopback_cluster(num_cpus: int = 2):
    """``ray start --head`` on loopback (a separate process tree); yields ``(address, env)`` for the
    xnas processes that join it, and stops the cluster afterwards."""
    ray_bin = Path(sys.executable).parent / "ray"
    port = _free_port()
    temp = Path(f"/tmp/xnas-head-{os.getpid()}")
    # Ray maps 127.0.0.1 to this machine's network address unless "clusters" are off; with them off
    # (the switch meant for Windows/macOS) every node address is the loopback one. A throw-away
    # loopback cluster needs no token authentication (a real cluster keeps it: see the README).
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "RAY_AUTH_MODE": "disabled"}
    head = subprocess.Popen([str(ray_bin), "start", "--head", "--block", f"--port={port}",
                             "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}", "--include-dashboard=false",
                             "--disable-usage-stats", f"--temp-dir={temp}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(1)
        yield f"127.0.0.1:{port}", env
    finally:
        os.killpg(head.pid, 15)  # ray start --block stops the processes it started
        head.wait(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_join_a_cluster_started_on_loopback(tmp_path):
    """``ray start --head`` on loopback, then ``xnas sample --address`` joins it (a separate process)."""
    with _loopback_cluster() as (address, env):
        cmd = [sys.executable, "-m", "nas.cli", "sample", "--space", "x3d", "--trials", "3", "--evaluator",
               "formula", "--address", address, "--runs-dir", str(tmp_path), "--name", "c", "--max-gflops", "0"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        table = pandas.read_csv(tmp_path / "c" / "results.csv")
        assert len(table) == 3 and set(table["status"]) == {"ok"}
        assert "3/3 done" in done.stderr


@pytest.mark.slow
def test_a_data_parallel_trial_runs_on_ray_train_inside_its_tune_trial(tmp_path):
    """``--workers-per-trial 2`` on a loopback cluster: the Tune trial launches a Ray Train run of two
    gloo workers (one CPU each), which trains as the two local processes of ``--executor local`` do."""
    tiny = ["sample", "--space", "x3d", "--trials", "1", "--max-gflops", "100", "--steps", "4", "--batch-size", "4",
            "--size-scale", "0.1", "--train-clips", "8", "--val-clips", "8", "--runs-dir", str(tmp_path),
            "--workers-per-trial", "2", "--cpus-per-trial", "2", "--no-progress"]
    with _loopback_cluster() as (address, env):
        done = subprocess.run([sys.executable, "-m", "nas.cli", *tiny, "--address", address, "--name", "ray"],
                              capture_output=True, text=True, timeout=600, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
    local = subprocess.run([sys.executable, "-m", "nas.cli", *tiny, "--executor", "local", "--name", "local"],
                           capture_output=True, text=True, timeout=600)
    assert local.returncode == 0, local.stderr[-3000:]
    on_ray = pandas.read_csv(tmp_path / "ray" / "results.csv")
    here = pandas.read_csv(tmp_path / "local" / "results.csv")
    assert list(on_ray["status"]) == ["ok"] and list(on_ray["workers"]) == [2]
    assert on_ray["hash"][0] == here["hash"][0]
    assert on_ray["top1"][0] == here["top1"][0] and on_ray["loss"][0] == pytest.approx(here["loss"][0], rel=1e-3)
    assert list((tmp_path / "ray" / "ray" / "train").iterdir())  # the Ray Train run's folder


@pytest.mark.slow
def test_asha_stops_or_finishes_every_trial(ray_session, tmp_path):
    from nas.integrations.ray_tune import RayEvaluator

    space = Space.from_yaml(TINY_SPACE)
    archs = _archs(space, 4, seed=1)
    proxy = Proxy(steps=6, batch_size=4, size_scale=0.5, train_clips=16, val_clips=8, warmup_steps=0,
                  checkpoint_every=1, layout="channels_first")
    run = Run.open("a", driver="test", config={"space": "tiny"}, root=tmp_path)
    evaluator = RayEvaluator("synthetic", proxy, 0, scheduler="asha", log_dir=run.dir / "ray")
    results = run.evaluator(evaluator).evaluate(archs)
    assert {r.status for r in results} <= {"ok", "pruned"}
    assert any(r.status == "ok" and r.steps == 6 for r in results)
    for r in results:
        if r.status == "pruned":
            assert r.reason.startswith("stopped early by ASHA") and r.steps < 6 and math.isfinite(r.loss)
    states = {t["state"] for t in run.study.trials()}
    assert states <= {"COMPLETE", "PRUNED"}


@pytest.mark.slow
def test_kill_during_a_ray_batch_then_resume(tmp_path):
    """The fault-injection exit fires inside Tune's callback (mid-batch); the resume on Ray finishes the
    batch and ends with the results of an uninterrupted in-process run."""
    base = [sys.executable, "-m", "nas.cli", "sample", "--space", "x3d", "--trials", "6", "--batch", "3",
            "--evaluator", "formula", "--runs-dir", str(tmp_path)]
    killed = subprocess.run(base + ["--name", "k", "--fail-after-trials", "4"], capture_output=True, text=True,
                            timeout=300)
    assert killed.returncode == 75, killed.stderr[-2000:]
    resumed = subprocess.run(base + ["--name", "k", "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    straight = subprocess.run(base + ["--name", "s", "--executor", "local"], capture_output=True, text=True,
                              timeout=300)
    assert straight.returncode == 0, straight.stderr[-2000:]
    # Ray's own logs are in the run directory (through a short alias while Ray ran)
    assert (tmp_path / "k" / "ray" / "session_latest" / "logs").is_dir()
    cols = ["trial", "hash", "top1", "status"]
    # Ray trials of a batch finish in any order: rows are compared by trial number
    k = pandas.read_csv(tmp_path / "k" / "results.csv")[cols].sort_values("trial", ignore_index=True)
    s = pandas.read_csv(tmp_path / "s" / "results.csv")[cols].sort_values("trial", ignore_index=True)
    pandas.testing.assert_frame_equal(k, s)
