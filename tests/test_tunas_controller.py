"""TuNAS controller: rewards, schedules, active-only log-prob / entropy, convergence on known optima,
and search resume (same final policy as an uninterrupted run)."""
from __future__ import annotations

import math

import pytest
import torch

from nas.drivers.tunas.controller import Controller, EmaBaseline, Policy, reward, rl_lr_factor, warmup_probability
from nas.drivers.tunas.testing import tiny_space


def _kernel_quality(arch) -> float:
    """A synthetic Q with a known optimum: the fraction of active layers whose kernel is 3x3x3."""
    kernels = [layer["kernel"] for block in arch.doc["blocks"] for layer in block["layers"]]
    return sum(k == "3x3x3" for k in kernels) / len(kernels)


def test_rewards_match_tunas_formulas() -> None:
    assert reward(0.7, 1.1, 1.0) == pytest.approx(0.7 - 0.1 * 0.1)
    assert reward(0.7, 0.9, 1.0) == pytest.approx(0.7 - 0.1 * 0.1)  # symmetric: a target, not a budget
    assert reward(0.7, 2.0, 1.0, "mnas", -0.07) == pytest.approx(0.7 * 2.0 ** -0.07)
    assert reward(0.7, 0.5, 1.0, "mnas_hard", -0.07) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="reward: got 'x'"):
        reward(0.5, 1.0, 1.0, "x")


def test_schedules() -> None:
    assert warmup_probability(0, 100) == 1.0
    assert warmup_probability(10, 100) == pytest.approx(0.6)
    assert warmup_probability(25, 100) == 0.0 and warmup_probability(90, 100) == 0.0
    assert rl_lr_factor(24, 100) == 0.0
    assert rl_lr_factor(25, 100) == pytest.approx(1.0)
    assert rl_lr_factor(99, 100) == pytest.approx(10.0)


def test_baseline_is_debiased_ema() -> None:
    b = EmaBaseline(0.95)
    assert b.update(0.4) == pytest.approx(0.4)  # debiased: the first value is the first reward
    assert b.update(0.8) == pytest.approx((0.95 * 0.05 * 0.4 + 0.05 * 0.8) / (0.95 * 0.05 + 0.05))


def test_log_prob_and_entropy_count_active_choices_only() -> None:
    space = tiny_space()
    policy = Policy(space)
    idx = {label: 0 for label in policy.labels}  # depth 1 in both blocks
    active = policy.active(idx)
    assert "blocks/0/layers/0/kernel" in active
    assert "blocks/0/layers/2/kernel" not in active  # a layer past the sampled depth
    n_active = sum(math.log(len(policy.values[lab])) for lab in active)
    assert float(policy.entropy(active)) == pytest.approx(n_active)  # uniform: log n per active choice
    assert float(policy.log_prob(idx, active)) == pytest.approx(-n_active)
    deep = dict(idx, **{"blocks/0/layers/repeat": 2})
    assert "blocks/0/layers/2/kernel" in policy.active(deep)


def test_warmup_overrides_then_stops() -> None:
    space = tiny_space()
    ctrl = Controller(space, 1.0, total_steps=100, seed=0)
    first = ctrl.sample()
    assert first.warm and set(first.warm.values()) <= {"mixed", "max"}  # p = 1: every choice warmed
    assert len(first.warm) == len(ctrl.policy.labels)
    ctrl.step = 30
    assert not ctrl.sample().warm  # past 25 %: on-policy samples only
    with pytest.raises(ValueError, match="warmup_fraction"):
        Controller(space, 1.0, 10, warmup_fraction=0.5, rl_delay_fraction=0.25)


def test_rl_learning_rate_is_zero_during_warmup() -> None:
    space = tiny_space()
    ctrl = Controller(space, 1.0, total_steps=40, seed=0)
    for _ in range(10):
        s = ctrl.sample()
        ctrl.update(s.indices, _kernel_quality(s.arch), s.gflops)
    assert all(torch.count_nonzero(lg) == 0 for lg in ctrl.policy.logits)  # uniform still
    assert ctrl.baseline.denominator > 0  # but the baseline has been tracking rewards


def test_converges_to_known_optimum() -> None:
    space = tiny_space()
    ctrl = Controller(space, 1.0, total_steps=300, beta=0.0, seed=1)
    for _ in range(300):
        s = ctrl.sample()
        ctrl.update(s.indices, _kernel_quality(s.arch), s.gflops)
    assert _kernel_quality(ctrl.argmax_arch()) == 1.0
    probs = ctrl.policy.probs()
    assert probs["blocks/0/layers/0/kernel"][1] > 0.9  # 3x3x3 is value 1 of (1x3x3, 3x3x3, 5x1x1)


def test_sample_many_draws_from_the_policy() -> None:
    """The vectorised draws behind ``expected_cost`` follow each dimension's softmax, and the
    indices-keyed cost cache returns what freezing each draw gives."""
    ctrl = Controller(tiny_space(), 0.0015, total_steps=10, seed=0)
    with torch.no_grad():
        for i, lg in enumerate(ctrl.policy.logits):
            lg.copy_(torch.linspace(0.0, 1.5 + 0.1 * i, len(lg)))
    n = 4000
    draws = ctrl.policy.sample_many(n, torch.Generator().manual_seed(1))
    assert len(draws) == n and all(list(d) == list(ctrl.policy.labels) for d in draws[:5])
    for label, probs in ctrl.policy.probs().items():
        for value, p in enumerate(probs):
            freq = sum(d[label] == value for d in draws) / n
            assert abs(freq - p) < 4 * math.sqrt(p * (1 - p) / n), (label, value, freq, p)
    g = torch.Generator().manual_seed(7)
    exact = sum(ctrl.cost(ctrl.policy.freeze(d)) for d in ctrl.policy.sample_many(64, g)) / 64
    assert ctrl.expected_cost(64, seed=7) == pytest.approx(exact)
    assert ctrl.expected_cost(64, seed=7) == pytest.approx(exact)  # second call: from the indices cache

@pytest.mark.parametrize("target_factor", [0.7, 1.3])
def test_cost_only_reward_drives_expected_cost_to_target(target_factor: float) -> None:
    space = tiny_space()
    uniform = Controller(space, 1.0, total_steps=10).expected_cost(256)
    target = uniform * target_factor
    ctrl = Controller(space, target, total_steps=400, seed=2)
    for _ in range(400):
        s = ctrl.sample()
        ctrl.update(s.indices, 0.0, s.gflops)
    expected = ctrl.expected_cost(256)
    assert abs(expected / target - 1) < 0.1, (uniform, target, expected)
    assert abs(expected / target - 1) < abs(uniform / target - 1) / 2
    assert abs(ctrl.cost(ctrl.argmax_arch()) / target - 1) < 0.15


def test_state_dict_round_trip_continues_identically() -> None:
    space = tiny_space()

    def run(split: int | None) -> list[torch.Tensor]:
        ctrl = Controller(space, 0.0015, total_steps=60, seed=3)
        for step in range(60):
            if split is not None and step == split:
                state = ctrl.state_dict()
                ctrl = Controller(space, 0.0015, total_steps=60, seed=99)  # fresh object, other seed
                ctrl.load_state_dict(state)
            s = ctrl.sample()
            ctrl.update(s.indices, _kernel_quality(s.arch), s.gflops)
        return [lg.detach().clone() for lg in ctrl.policy.logits]

    assert all(torch.equal(a, b) for a, b in zip(run(None), run(37)))


def test_interrupted_search_resumes_to_the_uninterrupted_result(tmp_path) -> None:
    """Supernet weights, optimisers, logits, Adam moments, baseline, RNG states and step are checkpointed
    together: stopping after 3 of 6 steps and resuming ends exactly where an uninterrupted search does."""
    from nas.drivers.tunas.search import SearchConfig, default_fixed, run_search

    space = tiny_space()
    cfg = SearchConfig(target_gflops=0.0015, fixed=default_fixed(space), steps=6, batch_size=2, archs_per_step=2,
                       val_multiplier=1, size_scale=0.5, train_clips=4, heldout_clips=4, log_every=2,
                       checkpoint_every=100, warmup_fraction=0.25)
    full = run_search(space, cfg, tmp_path / "full", top_k=0, progress=False, plot=False, log=lambda m: None)
    part = run_search(space, cfg, tmp_path / "cut", top_k=0, progress=False, plot=False, log=lambda m: None,
                      stop_after=3)
    assert part.steps_done == 3
    messages: list[str] = []
    resumed = run_search(space, cfg, tmp_path / "cut", top_k=0, progress=False, plot=False, log=messages.append)
    assert any("resumed at step 3/6" in m for m in messages)
    assert resumed.policy == full.policy
    assert resumed.argmax == full.argmax
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)
    assert all(torch.equal(a["supernet"][k], b["supernet"][k]) for k in a["supernet"])
    assert [r["q"] for r in a["trajectory"]] == [r["q"] for r in b["trajectory"]]


@pytest.mark.parametrize("min_s, saves", [("", [6]), ("0", [2, 4, 6])])
def test_mid_search_checkpoints_are_at_least_a_minute_apart(tmp_path, monkeypatch, min_s, saves) -> None:
    """A checkpoint due every 2 steps is skipped while the last one is under a minute old (the default
    search writes a 357 MB one); the last step always saves. XNAS_CHECKPOINT_MIN_S overrides the minute."""
    import nas.drivers.tunas.search as search
    from nas.drivers.tunas.search import SearchConfig, default_fixed, run_search

    monkeypatch.setenv("XNAS_CHECKPOINT_MIN_S", min_s)
    written: list[int] = []
    real = search._save
    monkeypatch.setattr(search, "_save", lambda path, state: (written.append(state["step"]), real(path, state)))
    space = tiny_space()
    cfg = SearchConfig(target_gflops=0.0015, fixed=default_fixed(space), steps=6, batch_size=2, val_multiplier=1,
                       size_scale=0.5, train_clips=4, heldout_clips=4, log_every=2, checkpoint_every=2)
    run_search(space, cfg, tmp_path / "s", top_k=0, progress=False, plot=False, log=lambda m: None)
    assert written == saves
    monkeypatch.setenv("XNAS_CHECKPOINT_MIN_S", "soon")
    with pytest.raises(ValueError, match="XNAS_CHECKPOINT_MIN_S: got 'soon'"):
        run_search(space, cfg, tmp_path / "t", top_k=0, progress=False, plot=False, log=lambda m: None)
