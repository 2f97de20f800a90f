"""Weight-inheriting expansion (issue 15): the trainer starts a child from its parent's trained weights,
the evaluators carry the parent per batch, and ``expand`` with an inheriting evaluator keeps every
trained model's weights so a resume never retrains a parent."""
from __future__ import annotations

import csv
import json

import pytest
import torch

from nas import load_arch
from nas.dsl.arch import Arch
from nas.drivers.expand import build_candidates, expand
from nas.evaluator import Inheritance, LocalEvaluator, for_parent
from nas.proxy import Proxy
from nas.runs import Run
from nas.train import evaluate

TINY = Proxy(steps=3, batch_size=4, size_scale=0.1, train_clips=16, val_clips=16, warmup_steps=1,
             checkpoint_every=0)


@pytest.fixture(scope="module")
def trained_parent(tmp_path_factory):
    """X3D-XS trained a few steps, its weights on disk."""
    path = tmp_path_factory.mktemp("weights") / "parent.pt"
    parent = load_arch("x3d-xs")
    result = evaluate(parent, "synthetic", TINY, seed=0, device="cpu", save_weights=path)
    assert result.status == "ok" and path.is_file()
    return parent, path, result


def test_saved_weights_reproduce_the_trained_result(trained_parent) -> None:
    parent, path, trained = trained_parent
    again = evaluate(parent, "synthetic", TINY, seed=0, device="cpu",
                     init={"parent": None, "weights": str(path), "train": False})
    assert again.steps == 0
    assert again.top1 == trained.top1
    assert again.loss == pytest.approx(trained.loss, abs=1e-5)


@pytest.mark.parametrize("axis", ["width", "depth"])
def test_a_function_preserving_child_scores_its_parent_before_fine_tuning(trained_parent, axis: str) -> None:
    parent, path, trained = trained_parent
    cands, _ = build_candidates(parent, step=1, rate=2.0)
    child = {c.axis: c.arch for c in cands}[axis]
    got = evaluate(child, "synthetic", TINY, seed=0, device="cpu",
                   init={"parent": parent.to_dict(), "weights": str(path), "noise": 0.0, "train": False})
    assert got.status == "ok", got.reason
    assert got.top1 == trained.top1
    assert got.loss == pytest.approx(trained.loss, abs=1e-4)


def test_an_input_axis_child_loads_the_parent_and_fine_tunes(trained_parent, tmp_path) -> None:
    parent, path, _ = trained_parent
    cands, _ = build_candidates(parent, step=1, rate=2.0)
    child = {c.axis: c.arch for c in cands}["frames"]
    out = tmp_path / "child.pt"
    got = evaluate(child, "synthetic", TINY, seed=0, device="cpu", save_weights=out,
                   init={"parent": parent.to_dict(), "weights": str(path), "noise": 0.01})
    assert got.status == "ok", got.reason
    blob = torch.load(out, weights_only=False)
    assert Arch.from_dict(blob["arch"]).clip == child.clip
    assert set(blob["model"]) == set(torch.load(path, weights_only=False)["model"])  # same keys


def test_a_missing_parent_is_a_failed_trial_that_names_the_file(tmp_path) -> None:
    parent = load_arch("x3d-xs")
    child = build_candidates(parent, step=1, rate=2.0)[0][0].arch
    inheritance = Inheritance(tmp_path / "weights").with_parent(parent)
    result = LocalEvaluator("synthetic", TINY, 0, "cpu", inheritance=inheritance).evaluate([child])[0]
    assert result.status == "failed"
    assert "weights" in result.reason and parent.hash in result.reason


def test_inheritance_settings_are_checked(tmp_path) -> None:
    with pytest.raises(ValueError, match="start_steps"):
        Inheritance(tmp_path, start_steps=0)
    with pytest.raises(ValueError, match="noise"):
        Inheritance(tmp_path, noise=-1)
    Inheritance(tmp_path, start_steps=0, start_checkpoint=tmp_path / "w.pt")  # evaluate a given start


def test_the_cache_key_names_what_the_weights_start_from(tmp_path) -> None:
    plain = LocalEvaluator("synthetic", TINY, 0)
    assert for_parent(plain, load_arch("x3d-xs")) is plain  # no inheritance: the same evaluator
    inh = LocalEvaluator("synthetic", TINY, 0, inheritance=Inheritance(tmp_path, start_steps=5))
    start_key = inh.cache_key
    child_key = for_parent(inh, load_arch("x3d-xs")).cache_key
    assert start_key.startswith(plain.cache_key) and "start-steps=5" in start_key
    assert f"inherit={load_arch('x3d-xs').hash}" in child_key and child_key != start_key
    start, init, save = inh.inheritance.job(load_arch("x2d"), TINY)
    assert start.steps == 5 and init is None and save.endswith(f"{load_arch('x2d').hash}.pt")


def test_ray_jobs_carry_the_parent_weights_as_a_path(tmp_path) -> None:
    from nas.integrations.ray_tune import RayEvaluator

    parent = load_arch("x3d-xs")
    child = build_candidates(parent, step=1, rate=2.0)[0][0].arch
    ev = RayEvaluator("synthetic", TINY, 0, log_dir=tmp_path / "ray", progress=False,
                      inheritance=Inheritance(tmp_path / "weights").with_parent(parent))
    job = ev._jobs([child])[0]
    assert json.loads(json.dumps(job)) == job  # plain JSON
    assert job["init"]["weights"] == str(tmp_path / "weights" / f"{parent.hash}.pt")
    assert job["init"]["parent"] == parent.to_dict()
    assert job["save_weights"].endswith(f"{child.hash}.pt")
    assert f"inherit={parent.hash}" in ev.cache_key


def test_expand_with_inheritance_keeps_weights_and_resumes_without_training(tmp_path, monkeypatch) -> None:
    start = load_arch("x2d")
    target = start.cost().gflops * 3

    def run_once(resume=False):
        run = Run.open("inh", driver="expand", config={"t": target}, root=tmp_path, resume=resume)
        inner = LocalEvaluator("synthetic", TINY, 0, "cpu",
                               inheritance=Inheritance(run.dir / "weights", start_steps=4))
        try:
            # three axes of six (a morphism of each kind: input, channels, blocks) keep the test short
            return expand(start, run.evaluator(inner), target_gflops=target, log=lambda _: None, val_clips=16,
                          axes=("frames", "width", "depth")), run
        finally:
            run.close()

    result, run = run_once()
    rows = list(csv.DictReader(open(run.dir / "results.csv")))
    assert all(r["status"] == "ok" for r in rows), [r["reason"] for r in rows]
    for r in rows:  # every trained model's weights are kept
        assert (run.dir / "weights" / f"{r['hash']}.pt").is_file()
    start_row = next(r for r in rows if r["hash"] == start.hash)
    assert "start-steps=4" in start_row["eval_key"] and start_row["steps"] == "4"
    first = result.steps[0]
    for c in first:  # step 1 inherits from the start
        row = next(r for r in rows if r["hash"] == c.arch.hash)
        assert f"inherit={start.hash}" in row["eval_key"]
    if len(result.steps) > 1:
        chosen = next(c for c in first if c.chosen)
        for c in result.steps[1]:
            assert f"inherit={chosen.arch.hash}" in next(r for r in rows if r["hash"] == c.arch.hash)["eval_key"]

    import nas.train

    def no_training(*args, **kwargs):
        raise AssertionError("a resumed run retrained a finished trial")

    monkeypatch.setattr(nas.train, "evaluate", no_training)
    again, _ = run_once(resume=True)
    assert again.final.arch.hash == result.final.arch.hash
    assert len(list(csv.DictReader(open(run.dir / "results.csv")))) == len(rows)


TINY_FLAGS = ["--executor", "local", "--no-progress", "--steps", "2", "--batch-size", "4", "--size-scale", "0.1",
              "--train-clips", "16", "--val-clips", "16"]


def test_xnas_expand_inherits_by_default(tmp_path, capsys) -> None:
    from nas.cli import main

    target = load_arch("x2d").cost().gflops * 1.9  # one step (6 candidates) and the contraction
    code = main(["expand", "--target-gflops", f"{target:.6f}", "--runs-dir", str(tmp_path), "--name", "e",
                 *TINY_FLAGS])
    capsys.readouterr()
    assert code in (0, 1)
    run = tmp_path / "e"
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["inherit"] == {"start_steps": 8, "noise": 0.01, "from_checkpoint": None}
    rows = list(csv.DictReader(open(run / "results.csv")))
    assert rows and all(r["status"] == "ok" for r in rows), [r["reason"] for r in rows]
    assert sum("inherit=" in r["eval_key"] for r in rows) == len(rows) - 1  # all but the start
    # once finished, only the chosen path's weights are kept (the final model's among them)
    trajectory = list(csv.DictReader(open(run / "trajectory.csv")))
    path_hashes = {r["arch_hash"] for r in trajectory if r["chosen"] in ("True", "true", "1")}
    assert len(path_hashes) >= 2
    kept = {p.stem for p in (run / "weights").glob("*.pt")}
    assert kept == path_hashes


@pytest.mark.parametrize("flags, message", [
    (["--no-inherit", "--start-steps", "3"], "xnas: error: --start-steps: got 3 with --no-inherit"),
    (["--from-checkpoint", "missing.pt"], "xnas: error: --from-checkpoint: got 'missing.pt'; allowed: an existing"),
    (["--start-steps", "0"], "xnas: error: --start-steps: got 0; allowed: an integer >= 1"),
    (["--inherit-noise", "2"], "xnas: error: --inherit-noise: got 2; allowed: a number in [0, 1]"),
])
def test_bad_inheritance_flags(tmp_path, capsys, flags, message) -> None:
    from nas.cli import main

    code = main(["expand", "--target-gflops", "1", "--runs-dir", str(tmp_path), *TINY_FLAGS, *flags])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(message) and err.count("\n") == 1, err
    assert not any(tmp_path.iterdir())  # nothing left behind
