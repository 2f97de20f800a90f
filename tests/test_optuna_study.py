"""The Optuna adapter: distributions from the DSL, static dimension sets, samplers, objectives."""
from __future__ import annotations

import random
import warnings

import pytest

from nas import load_space
from nas.dsl import Space
from nas.integrations.optuna_study import (
    Study,
    abs_reward,
    decode_sample,
    distributions,
    encode_value,
    make_sampler,
)
from nas.proxy import TrialResult

LIST_SPACE = """
xnas: 1
kind: space
name: lists
family: movinet
classes: 5
clip: {frames: 4, frame_stride: 1, crop: 32}
activation: swish
gating: sigmoid
stem: {width: 8, kernel: 1x3x3, stride: {choice: [[1, 2, 2], [1, 1, 1]]}}
blocks:
  - width: {choice: [8, 16]}
    stride: [1, 2, 2]
    layers:
      repeat: {choice: [1, 2]}
      each: {kernel: {choice: [1x3x3, 3x3x3]}, expand: {range: [16, 32], step: 8}}
head: {project: 32, width: 64, dropout: 0.0}
"""


def test_distributions_follow_the_dsl():
    space = load_space("x3d")
    dists = distributions(space)
    assert list(dists) == list(space.dims())
    for label, choice in space.dims().items():
        d = dists[label]
        assert (d.low, d.high, d.log) == (choice.low, choice.high, choice.log)  # continuous factors
    lists = Space.from_yaml(LIST_SPACE)
    d = distributions(lists)["stem/stride"]
    assert d.choices == (encode_value([1, 2, 2]), encode_value([1, 1, 1]))
    assert decode_sample(lists, {"stem/stride": "[1, 1, 1]"}) == {"stem/stride": [1, 1, 1]}


def test_multivariate_tpe_over_the_static_dimension_set(tmp_path):
    space = Space.from_yaml(LIST_SPACE)
    study = Study(f"sqlite:///{tmp_path / 's.db'}", "s", ["top1"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an independent-sampling fallback would warn
        for batch in range(4):
            asked = study.ask_batch(space, 3, make_sampler("tpe", seed=batch, population_size=4))
            for number, sample in asked:
                assert set(sample) == set(space.dims())  # every dim, unused repeat slots included
                arch = space.freeze(sample)
                result = TrialResult(arch_name=arch.name, arch_hash=arch.hash, status="ok",
                                     top1=float(sample["blocks/0/width"]), gflops=arch.cost().gflops)
                study.record(result, arch, {"hash": arch.hash}, trial_number=number)
    assert study.count() == 12
    # TPE learned that width 16 scores higher: after the start-up trials it proposes it mostly
    later = [t["params"]["blocks/0/width"] for t in study.trials()[6:]]
    assert later.count(16) >= len(later) // 2


def test_same_seed_same_proposals(tmp_path):
    space = load_space("movinet")
    proposals = []
    for name in ("a", "b"):
        study = Study(f"sqlite:///{tmp_path / name}.db", name, ["top1", "gflops"])
        proposals.append([s for _, s in study.ask_batch(space, 3, make_sampler("nsga2", seed=7))])
    assert proposals[0] == proposals[1]


def test_objectives_and_failed_states(tmp_path):
    study = Study(f"sqlite:///{tmp_path / 'o.db'}", "o", ["reward"], target_gflops=2.0)
    arch = load_space("x3d").freeze(load_space("x3d").random(random.Random(0)))
    ok = TrialResult(arch_name="a", arch_hash=arch.hash, status="ok", top1=80.0, gflops=3.0)
    assert study.values_of(ok) == [abs_reward(80.0, 3.0, 2.0)] == [80.0 - 7.0 * 0.5]
    study.record(ok, arch, {"hash": arch.hash})
    study.record(TrialResult(arch_name="a", arch_hash="x", status="failed", reason="nan"), arch, {"hash": "x"})
    study.record(TrialResult(arch_name="a", arch_hash="y", status="pruned", loss=1.0), arch, {"hash": "y"})
    assert [t["state"] for t in study.trials()] == ["COMPLETE", "FAIL", "PRUNED"]
    with pytest.raises(ValueError, match="target_gflops"):
        Study(f"sqlite:///{tmp_path / 'p.db'}", "p", ["reward"])
    with pytest.raises(ValueError, match="objectives: got 'speed'"):
        Study(f"sqlite:///{tmp_path / 'p.db'}", "p", ["speed"])
    with pytest.raises(ValueError, match="stored study 'o' has directions"):
        Study(f"sqlite:///{tmp_path / 'o.db'}", "o", ["top1", "gflops"])
    with pytest.raises(ValueError, match="strategy: got 'grid'"):
        make_sampler("grid", 0)


def _tpe_under_cap_share(tmp_path, tell_cap: bool) -> float:
    """Share of TPE's proposals after its start-up that fall under a cost cap no proposal of the first
    batch meets, when the over-cap trials are told as the run tells them (tag) or as plain failures."""
    space = Space.from_yaml(LIST_SPACE)
    costs = sorted(space.freeze(space.random(random.Random(i))).cost().gflops for i in range(200))
    cap = costs[len(costs) // 5]  # about a fifth of uniform draws lie under it
    study = Study(f"sqlite:///{tmp_path / f'c{tell_cap}.db'}", "c", ["reward"], target_gflops=cap)
    under, cost_of = [], {}
    for batch in range(10):
        for number, sample in study.ask_batch(space, 4, make_sampler("tpe", seed=batch, population_size=4)):
            arch = space.freeze(sample)
            gflops = arch.cost().gflops
            if gflops <= cap:
                result = TrialResult(arch_name=arch.name, arch_hash=arch.hash, status="ok", top1=50.0, gflops=gflops)
                attrs = {"hash": arch.hash}
            else:
                result = TrialResult(arch_name=arch.name, arch_hash=arch.hash, status="failed", gflops=gflops,
                                     reason="not trained: over the cost cap")
                attrs = {"hash": arch.hash, **({"over_cost_cap": cap} if tell_cap else {})}
            study.record(result, arch, attrs, trial_number=number)
            cost_of[number] = gflops
            if batch >= 4:
                under.append(gflops <= cap)
    for t in study.study.get_trials():
        if cost_of[t.number] <= cap:
            assert (t.state.name, t.constraints) == ("COMPLETE", {})
        elif tell_cap:
            assert (t.state.name, t.constraints) == ("PRUNED", {"cost_cap": pytest.approx(cost_of[t.number] - cap)})
        else:
            assert (t.state.name, t.constraints) == ("FAIL", {})
    return sum(under) / len(under)


def test_over_cap_trials_are_pruned_with_their_violation_and_tpe_learns_from_them(tmp_path):
    """A FAIL trial teaches TPE nothing: told as PRUNED with the constraint GFLOPs - cap > 0, the
    over-cap draws steer TPE under the cap."""
    told, failed = _tpe_under_cap_share(tmp_path, True), _tpe_under_cap_share(tmp_path, False)
    print(f"under the cap after start-up: told {told:.2f}, failed {failed:.2f}")
    assert told > failed + 0.15, (told, failed)


def test_a_cost_objective_with_a_target_is_a_constraint_on_every_trial(tmp_path):
    """NSGA-II's ``GFLOPs <= target``: written on each trial, where Optuna's samplers read it."""
    space = Space.from_yaml(LIST_SPACE)
    study = Study(f"sqlite:///{tmp_path / 'n.db'}", "n", ["top1", "gflops"], target_gflops=0.001)
    for number, sample in study.ask_batch(space, 3, make_sampler("nsga2", seed=0)):
        arch = space.freeze(sample)
        study.record(TrialResult(arch_name=arch.name, arch_hash=arch.hash, status="ok", top1=50.0,
                                 gflops=arch.cost().gflops), arch, {"hash": arch.hash}, trial_number=number)
    arch = space.freeze(space.random(random.Random(1)))
    study.record(TrialResult(arch_name=arch.name, arch_hash=arch.hash, status="ok", top1=1.0, gflops=0.0005),
                 arch, {"hash": arch.hash})  # an added (not asked) trial carries it too
    trials = study.study.get_trials()
    assert [t.constraints["target"] for t in trials] == pytest.approx([t.values[1] - 0.001 for t in trials])
    ok = TrialResult(arch_name=arch.name, arch_hash=arch.hash, status="ok", top1=1.0, gflops=2.0)
    assert Study(f"sqlite:///{tmp_path / 'r.db'}", "r", ["top1"], target_gflops=1.0).constraints_of(ok, {}) == {}


def test_nsga2_evolves_generations_across_batches(tmp_path):
    """Each batch is proposed in a fresh replica, so NSGA-II's generation of each trial must reach the
    stored trial: without it every batch saw generation 0 and NSGA-II drew random individuals forever
    (proposing exactly what ``random`` proposes with the same seeds)."""
    space = Space.from_yaml(LIST_SPACE)
    proposals = {}
    for strategy in ("nsga2", "random"):
        study = Study(f"sqlite:///{tmp_path / strategy}.db", strategy, ["top1", "gflops"])
        for batch in range(6):
            for number, sample in study.ask_batch(space, 4, make_sampler(strategy, seed=batch, population_size=4)):
                arch = space.freeze(sample)
                study.record(TrialResult(arch_name=arch.name, arch_hash=arch.hash, status="ok",
                                         top1=float(sample["blocks/0/width"]), gflops=arch.cost().gflops),
                             arch, {"hash": arch.hash}, trial_number=number)
        proposals[strategy] = [t.params for t in study.study.get_trials()]
        if strategy == "nsga2":
            generations = [t.system_attrs["NSGAIISampler:generation"] for t in study.study.get_trials()]
            assert generations == [n // 4 for n in range(24)]
    assert proposals["nsga2"][4:] != proposals["random"][4:]
