"""``xnas fidelity``: rank statistics against hand-checked values, and audits of real runs of every
driver with the formula evaluator (its own formula gives tau = 1; a noisy copy gives the tau of the
formula values; constant scores are a one-line error; a killed audit resumes without redoing)."""
from __future__ import annotations

import csv
import itertools
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nas.cli import main
from nas.dsl import Arch
from nas.drivers.expand import criterion_score
from nas.fidelity import (
    FidelityError,
    bootstrap_ci,
    kendall_tau_b,
    rank_agreement,
    select_rows,
    spearman_rho,
)
from nas.formulas import FORMULAS, get_formula, hash_normal, register_formula
from nas.runs import read_results
from nas.drivers.tunas.testing import TINY_SPACE

LOCAL = ["--executor", "local", "--no-progress"]


# ------------------------------------------------------------------------------------------------
# Statistics


def test_kendall_tau_b_matches_the_definition_with_ties() -> None:
    # hand count: 10 pairs; x ties (0,3), (1,4); y ties (0,3); concordant (0,4), (3,4); the other 6 discordant
    # (scipy.stats.kendalltau's documented example: -0.4714)
    x, y = [12, 2, 1, 12, 2], [1, 4, 7, 1, 0]
    assert kendall_tau_b(x, y) == pytest.approx((2 - 6) / math.sqrt((10 - 2) * (10 - 1)))
    assert kendall_tau_b(x, y) == pytest.approx(-0.47140452079103173)
    assert kendall_tau_b([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau_b([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert math.isnan(kendall_tau_b([1, 1, 1], [1, 2, 3]))


def test_spearman_rho_uses_average_ranks() -> None:
    # ranks of y = [5, 6, 7, 8, 7]: [1, 2, 3.5, 5, 3.5]
    rx, ry = [1, 2, 3, 4, 5], [1, 2, 3.5, 5, 3.5]
    mx, my = 3.0, 3.0
    expected = sum((a - mx) * (b - my) for a, b in zip(rx, ry)) / math.sqrt(
        sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    assert spearman_rho([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(expected)
    assert spearman_rho([3, 1, 2], [30, 10, 20]) == pytest.approx(1.0)


def test_bootstrap_interval_brackets_the_estimate_and_is_seeded() -> None:
    x = list(range(20))
    y = [v + 6 * math.sin(3 * v) for v in x]
    lo, hi = bootstrap_ci(x, y, kendall_tau_b, seed=1)
    assert lo <= kendall_tau_b(x, y) <= hi < 1.0
    assert (lo, hi) == bootstrap_ci(x, y, kendall_tau_b, seed=1)


def test_constant_or_too_few_scores_are_an_error_not_nan() -> None:
    with pytest.raises(FidelityError, match=r"the run's scores are all 16\.67 over 4 architectures"):
        rank_agreement([16.67] * 4, [1, 2, 3, 4])
    with pytest.raises(FidelityError, match="the reference's scores are all 50"):
        rank_agreement([1, 2, 3], [50, 50, 50])
    with pytest.raises(FidelityError, match="got 2 architecture"):
        rank_agreement([1, 2], [1, 2])


def test_criterion_score_replays_the_expansion_trade_offs() -> None:
    assert criterion_score("accuracy", 40, 1, 2, 30, 1, 1) == 40
    assert criterion_score("gain-per-log-cost", 40, 1, 2, 30, 1, 1) == pytest.approx(10 / math.log(2))
    assert criterion_score("gain-per-gflop", 40, 1, 3, 30, 1, 1) == pytest.approx(5)
    assert criterion_score("loss-drop-per-log-cost", 40, 0.5, 2, 30, 1.0, 1) == pytest.approx(0.5 / math.log(2))


def test_noisy_formula_copy_is_deterministic_and_validated() -> None:
    noisy, base = get_formula("saturating+noise:5"), get_formula("saturating")
    from nas import load_arch

    arch = load_arch("x3d-s")
    assert noisy(arch) == pytest.approx(base(arch) + 5 * hash_normal(arch.hash))
    assert noisy(arch) == get_formula("saturating+noise:5")(arch)
    with pytest.raises(ValueError, match=r"allowed: NAME\+noise:S"):
        get_formula("saturating+noise:loud")
    draws = [hash_normal(f"{i:016x}") for i in range(4000)]
    assert abs(sum(draws) / len(draws)) < 0.05 and abs(sum(d * d for d in draws) / len(draws) - 1) < 0.08


def test_sample_selection_is_an_unbiased_seeded_subset() -> None:
    rows = [{"hash": f"h{i}", "status": "ok", "top1": str(i), "tags": ""} for i in range(40)]
    rows.append({"hash": "bad", "status": "failed", "top1": "nan", "tags": ""})
    picked = select_rows(rows, "sample", sample=10, seed=3)
    assert len(picked) == 10 and picked == select_rows(rows, "sample", sample=10, seed=3)
    assert [int(r["top1"]) for r in picked] == sorted(int(r["top1"]) for r in picked)   # run order kept
    assert len(select_rows(rows, "sample", sample=100)) == 40                              # failed left out


# ------------------------------------------------------------------------------------------------
# Audits of real runs (formula evaluator, in-process)


@pytest.fixture(scope="module")
def _expand_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("expand") / "runs"
    assert main(["expand", "--target-gflops", "0.5", "--evaluator", "formula", *LOCAL, "--runs-dir", str(runs),
                 "--name", "e"]) == 0
    return runs / "e"


@pytest.fixture
def expand_run(_expand_template: Path, tmp_path: Path) -> Path:
    """A finished formula expansion run (x2d to 0.5 GFLOPs), a fresh copy per test."""
    return Path(shutil.copytree(_expand_template, tmp_path / "e"))


def _independent_tau(pairs: list[tuple[float, float]]) -> float:
    """tau-b written out again, pair by pair (no ties expected with continuous formula values)."""
    s = sum(math.copysign(1, (a1 - a2) * (b1 - b2)) for (a1, b1), (a2, b2) in itertools.combinations(pairs, 2))
    return s / (len(pairs) * (len(pairs) - 1) / 2)


def test_expand_run_audited_with_its_own_formula_agrees_perfectly(expand_run: Path, tmp_path: Path, capsys) -> None:
    run = expand_run
    capsys.readouterr()
    assert main(["fidelity", str(run), "--evaluator", "formula", "--formula", "x3d-factors", *LOCAL,
                 "--expand-steps", "1,2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kendall_tau"] == pytest.approx(1.0) and report["spearman_rho"] == pytest.approx(1.0)
    assert report["ci90"]["kendall_tau"] == [pytest.approx(1.0), pytest.approx(1.0)]
    assert report["n"] == 13                                         # 2 steps x 6 candidates + the start
    assert {s["step"] for s in report["steps"]} == {1, 2}
    assert all(s["agree"] and s["kendall_tau"] == pytest.approx(1.0) for s in report["steps"])
    assert all(s["run_choice_reference_rank"] == 1 for s in report["steps"])
    assert report["mean_step_kendall_tau"] == pytest.approx(1.0)
    assert {"hash", "run_score", "reference_score"} <= set(report["pairs"][0])
    out = run / "fidelity"
    assert (out / "fidelity.csv").is_file() and (out / "plots" / "fidelity.png").stat().st_size > 1000
    rows = list(csv.DictReader(open(out / "fidelity.csv")))
    assert len(rows) == 13
    # the trajectory's accepted axes are what the report calls the run's choices
    accepted = {int(r["step"]): r["axis"] for r in csv.DictReader(open(run / "trajectory.csv"))
                if r["chosen"] == "1" and r["role"] == "candidate"}
    assert {s["step"]: s["run_choice"] for s in report["steps"]} == {1: accepted[1], 2: accepted[2]}


def test_noisy_reference_gives_the_tau_of_the_formula_values(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    assert main(["sample", "--space", "x3d", "--strategy", "random", "--trials", "16", "--max-gflops", "1000", "--evaluator", "formula",
                 *LOCAL, "--runs-dir", str(runs), "--name", "s"]) == 0
    capsys.readouterr()
    noisy = "saturating+noise:4"
    assert main(["fidelity", str(runs / "s"), "--evaluator", "formula", "--formula", noisy, *LOCAL,
                 "--sample", "12", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    archs = [Arch.load(runs / "s" / "archs" / f"{p['hash']}.yaml") for p in report["pairs"]]
    expected = _independent_tau([(get_formula("saturating")(a), get_formula(noisy)(a)) for a in archs])
    assert report["n"] == 12 and report["kendall_tau"] == pytest.approx(expected)
    assert report["kendall_tau"] < 1.0
    lo, hi = report["ci90"]["kendall_tau"]
    assert lo <= report["kendall_tau"] <= hi
    assert report["gflops_vs_reference"]["n"] == 12


@pytest.fixture
def constant_formula():
    """A formula scoring every architecture 16.67 (registered for one test, then removed)."""
    register_formula("fidelity-constant")(lambda arch: 16.67)
    yield "fidelity-constant"
    FORMULAS.pop("fidelity-constant")


def test_constant_reference_scores_are_a_one_line_error(expand_run: Path, constant_formula: str, capsys) -> None:
    run = expand_run
    capsys.readouterr()
    assert main(["fidelity", str(run), "--evaluator", "formula", "--formula", constant_formula, *LOCAL,
                 "--expand-steps", "1"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("xnas: error")]
    assert len(errors) == 1 and "the reference's scores are all 16.67 over 7 architectures" in errors[0]
    assert "nan" not in errors[0].lower()


def test_user_mistakes_exit_2_with_one_line(expand_run: Path, tmp_path: Path, capsys) -> None:
    assert main(["fidelity", str(tmp_path / "missing"), *LOCAL]) == 2
    assert "RUN_DIR: got" in capsys.readouterr().err
    run = expand_run
    assert main(["fidelity", str(run), "--evaluator", "formula", "--formula", "x3d-factors", *LOCAL,
                 "--expand-steps", "99"]) == 2
    assert "--expand-steps: got step 99; allowed: steps of this run (1, 2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fidelity", str(run), "--expand-steps", "0"])
    capsys.readouterr()
    assert main(["fidelity", str(run), "--runs-dir", "elsewhere", *LOCAL]) == 2
    assert "--runs-dir: got 'elsewhere'; allowed: leave it out" in capsys.readouterr().err


def _tiny_search_run(tmp_path: Path, name: str, top_k: int, retrain: bool = True) -> Path:
    """A finished 4-step search of the tiny space (formula retraining, or none); returns the runs folder."""
    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE)
    runs = tmp_path / "runs"
    fast = ["--target-gflops", "0.0015", "--search-steps", "4", "--search-size-scale", "1", "--search-batch-size", "2",
            "--val-multiplier", "2", "--search-train-clips", "4", "--clip", "4x2x32", "--top-k", str(top_k),
            "--evaluator", "formula", *LOCAL] + ([] if retrain else ["--no-retrain"])
    assert main(["search", "--space", str(space), *fast, "--runs-dir", str(runs), "--name", name]) == 0
    return runs


def test_search_run_audit_covers_its_retrained_architectures(tmp_path: Path, capsys) -> None:
    runs = _tiny_search_run(tmp_path, "t", top_k=3)
    capsys.readouterr()
    assert main(["fidelity", str(runs / "t"), "--evaluator", "formula", "--formula", "saturating", *LOCAL,
                 "--search-scores", "results", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    recorded = {r["hash"] for r in read_results(runs / "t" / "results.csv") if r["status"] == "ok"}
    assert report["driver"] == "search" and {p["hash"] for p in report["pairs"]} == recorded
    assert report["kendall_tau"] == pytest.approx(1.0)


def test_search_run_audit_scores_spanning_architectures_inside_the_supernet(tmp_path: Path, capsys,
                                                                            monkeypatch) -> None:
    import nas.drivers.tunas.score as score
    from nas.dsl.arch import Arch

    runs = _tiny_search_run(tmp_path, "s", top_k=1)
    assert (runs / "s" / "space.yaml").is_file()
    capsys.readouterr()
    audit = ["fidelity", str(runs / "s"), "--evaluator", "formula", "--formula", "saturating", *LOCAL, "--sample", "6",
             "--json"]
    assert main(audit) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["driver"] == "search" and report["n"] == 6
    cached = json.loads((runs / "s" / "fidelity" / "supernet_scores.json").read_text())
    (scores,) = cached.values()
    for pair in report["pairs"]:  # the run's score of each is its supernet top-1
        assert pair["run_score"] == pytest.approx(scores[pair["hash"]])
        assert pair["role"].startswith("supernet")
    gflops = [p["gflops"] for p in report["pairs"]]
    assert gflops == sorted(gflops) and gflops[-1] > 1.5 * gflops[0]  # they span the cost range
    band = report["band"]  # the agreement near the target, reported apart
    assert (band["target"], band["fraction"]) == (0.0015, 0.2)
    assert band["n"] == sum(abs(g / 0.0015 - 1) <= 0.2 for g in gflops)
    for pair in report["pairs"]:  # each a point of the searched space at the search clip
        arch = Arch.load(runs / "s" / "fidelity" / "archs" / f"{pair['hash']}.yaml")
        assert arch.clip.frames == 4 and arch.clip.crop == 32

    def no_rescoring(*args, **kwargs):
        raise AssertionError("a rerun scored the supernet again")

    monkeypatch.setattr(score, "supernet_top1s", no_rescoring)
    assert main(audit) == 0  # cached supernet scores, cached reference results
    capsys.readouterr()
    assert main(["fidelity", str(runs / "s"), "--metric", "loss", *LOCAL]) == 2
    assert "--metric: got 'loss' for a search run" in capsys.readouterr().err


def test_search_band_audits_only_architectures_near_the_target(tmp_path: Path, capsys) -> None:
    runs = _tiny_search_run(tmp_path, "b", top_k=1, retrain=False)  # no results table: the supernet is audited
    assert not (runs / "b" / "results.csv").exists()
    capsys.readouterr()
    assert main(["fidelity", str(runs / "b"), "--evaluator", "formula", "--formula", "saturating", *LOCAL,
                 "--sample", "5", "--search-band", "0.2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 5 and len({p["hash"] for p in report["pairs"]}) == 5
    assert all(abs(p["gflops"] / 0.0015 - 1) <= 0.2 for p in report["pairs"])
    assert report["band"]["n"] == 5 and report["band"]["kendall_tau"] == pytest.approx(report["kendall_tau"])
    # a band too narrow to hold them: a one-line error naming the option
    assert main(["fidelity", str(runs / "b"), "--evaluator", "formula", *LOCAL, "--sample", "24",
                 "--search-band", "0.001"]) == 2
    assert "--search-band: band: got" in capsys.readouterr().err
    assert main(["fidelity", str(runs / "b"), "--search-scores", "results", "--search-band", "0.2", *LOCAL]) == 2
    assert "--search-band: given for a 'search' run's results table" in capsys.readouterr().err


def test_band_agreement_needs_three_distinct_pairs_near_the_target() -> None:
    from nas.fidelity import Pair, band_agreement

    pairs = [Pair(hash=str(i), name=str(i), gflops=g, run_score=r, reference_score=f)
             for i, (g, r, f) in enumerate([(1.0, 1, 10), (1.1, 2, 20), (0.9, 3, 30), (2.0, 4, 5), (0.5, 0, 50)])]
    near = band_agreement(pairs, target=1.0, fraction=0.2)
    assert near["n"] == 3 and near["kendall_tau"] == pytest.approx(1.0)  # the far two would reverse it
    few = band_agreement(pairs, target=1.0, fraction=0.05)
    assert few["n"] == 1 and "kendall_tau" not in few and "at least 3" in few["note"]


def test_killed_audit_resumes_without_redoing_a_reference_trial(expand_run: Path, tmp_path: Path, capsys) -> None:
    run = expand_run
    args = ["fidelity", str(run), "--evaluator", "formula", "--formula", "x3d-factors", *LOCAL, "--expand-steps", "1,2"]
    killed = subprocess.run([sys.executable, "-m", "nas.cli", *args, "--fail-after-trials", "5"],
                            capture_output=True, text=True)
    assert killed.returncode == 75
    assert len(read_results(run / "fidelity" / "results.csv")) == 5
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = read_results(run / "fidelity" / "results.csv")
    assert len(rows) == 13 and len({r["hash"] for r in rows}) == 13   # the 5 finished ones were not redone
    assert report["kendall_tau"] == pytest.approx(1.0)
    log = (run / "fidelity" / "run.log").read_text()
    assert "resumed run fidelity (5 results on file)" in log


def test_step_audit_reports_a_disagreeing_reference_choice() -> None:
    from nas.fidelity import Pair, audit_steps

    parent = Pair("p", "start", 1.0, 20.0, 30.0, role="start", step=0)
    cands = [Pair(h, h, 2.0, run, ref, step=1, axis=axis, role="candidate")
             for h, axis, run, ref in [("a", "width", 40.0, 35.0), ("b", "depth", 30.0, 50.0), ("c", "frames", 25.0, 31.0)]]
    (step,) = audit_steps([parent, *cands], accepted={1: "width"}, parents={1: "p"}, criterion="gain-per-log-cost")
    assert (step.run_choice, step.reference_choice, step.agree) == ("width", "depth", False)
    assert step.run_choice_reference_rank == 2   # reference criterion: depth, then width, then frames
    assert step.n == 3 and step.kendall_tau == pytest.approx(1 / 3)   # pairs: (a,b) -, (a,c) +, (b,c) +
    (orphan,) = audit_steps(cands, accepted={1: "width"}, parents={}, criterion="accuracy")
    assert orphan.agree is None and "parent not audited" in orphan.note


def test_a_loss_audit_replays_the_step_in_top1() -> None:
    """Ranked by loss, a step is still replayed with the run's criterion in top-1: the candidate with the
    highest loss is not the reference's choice (the bug this guards: loss read as top-1)."""
    from nas.fidelity import Pair, audit_steps

    parent = Pair("p", "p", 1.0, 1.5, 1.6, reference_loss=1.6, reference_top1=30.0, role="start", step=0)
    cands = [Pair(h, h, 2.0, run, loss, reference_loss=loss, reference_top1=top1, step=1, axis=axis, role="candidate")
             for h, axis, run, loss, top1 in [("a", "width", 1.2, 1.1, 50.0), ("b", "depth", 1.4, 1.5, 35.0)]]
    (step,) = audit_steps([parent, *cands], accepted={1: "width"}, parents={1: "p"}, criterion="gain-per-log-cost")
    assert (step.reference_choice, step.agree, step.run_choice_reference_rank) == ("width", True, 1)


@pytest.mark.slow
def test_audit_with_a_real_proxy_reference_on_ray(tmp_path: Path, capsys) -> None:
    """A proxy-trained expansion run (2 steps per candidate) audited by the proxy trainer in Ray trials
    (3 steps), ranked by validation loss (continuous even this early): every audited architecture gets
    a real reference, the audit folder holds its own results table, and a rerun trains nothing again."""
    tiny = ["--batch-size", "2", "--train-clips", "8", "--val-clips", "24", "--size-scale", "0.1", "--no-progress"]
    runs = tmp_path / "runs"
    assert main(["expand", "--target-gflops", "0.05", "--executor", "local", "--steps", "2", *tiny,
                 "--runs-dir", str(runs), "--name", "p"]) == 0
    args = ["fidelity", str(runs / "p"), "--expand-steps", "1", "--steps", "3", *tiny, "--metric", "loss", "--json"]
    capsys.readouterr()
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 7 and report["reference"]["evaluator"] == "proxy" and report["metric"] == "loss"
    assert all(p["reference_status"] == "ok" for p in report["pairs"])
    assert -1 <= report["kendall_tau"] <= 1
    rows = read_results(runs / "p" / "fidelity" / "results.csv")
    assert len(rows) == 7 and len({r["eval_key"] for r in rows}) == 1
    assert main(args) == 0
    assert len(read_results(runs / "p" / "fidelity" / "results.csv")) == 7


def test_a_latency_target_run_is_replayed_in_latency() -> None:
    """An expansion that ran on predicted latency is replayed with the log-ratio of latency: here the
    GFLOPs ratios would pick ``width`` and the latency ratios pick ``depth``."""
    from nas.fidelity import Pair, audit_steps

    parent = Pair("p", "p", gflops=1.0, latency_ms=10.0, run_score=20.0, reference_score=20.0, reference_loss=1.0,
                  step=0, role="start")
    depth = Pair("d", "d", gflops=4.0, latency_ms=20.0, run_score=22.0, reference_score=22.0, reference_loss=1.0,
                 step=1, axis="depth", role="candidate")
    width = Pair("w", "w", gflops=2.0, latency_ms=20.0, run_score=21.5, reference_score=21.5, reference_loss=1.0,
                 step=1, axis="width", role="candidate")
    (step,) = audit_steps([parent, depth, width], {1: "depth"}, {1: "p"}, "gain-per-log-cost")
    assert step.reference_choice == "depth" and step.agree
    as_gflops = [Pair(**{**vars(p), "latency_ms": None}) for p in (parent, depth, width)]
    assert audit_steps(as_gflops, {1: "depth"}, {1: "p"}, "gain-per-log-cost")[0].reference_choice == "width"
