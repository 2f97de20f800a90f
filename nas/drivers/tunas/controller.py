"""The TuNAS controller: independent categoricals, REINFORCE with the absolute cost reward.

Faithful to ``google-research/tunas`` (§1.2-§1.5 of ``shared/reference/tunas.md``):

* the policy is **one independent categorical per choice** of the space (no RNN), logits
  initialised to zero (uniform), temperature 1;
* ``log_prob`` and ``entropy`` count only the choices **active** in the sampled architecture: the
  kernel of a layer past its block's sampled depth, for instance, contributes nothing. Activity is
  read from the space itself (``space.sample_of(space.freeze(sample))`` lists exactly the labels the
  architecture uses), so shared labels and nested repeats need no special case;
* reward ``R = Q + beta * |cost / target - 1|`` (``abs``, TuNAS's beta = -0.10; ``xnas search`` uses -0.25), or MnasNet's
  ``Q * (cost / target) ** beta`` (``mnas``) or ``Q * min((cost / target) ** beta, 1)`` (``mnas_hard``);
  Q is a fraction in [0, 1];
* baseline = zero-debiased EMA of the rewards (momentum 0.95), **updated with the current reward
  first**, then advantage ``A = R - b``; loss ``-A * log_prob - entropy_weight * entropy``;
* Adam with **beta1 = 0**, beta2 = 0.999, eps = 1e-8; the RL learning rate is 0 for the first 25 %
  of the steps (Adam's second moment and the baseline still update, as in TuNAS), then grows
  exponentially to 10x the base rate at the last step;
* **warm-ups** over the same first 25 %: with probability ``p(t) = 1 - t / (0.25 T)``, independently
  per choice, a kernel choice runs every kernel and averages them (op warm-up), a width choice takes
  its largest value (filter warm-up) and a depth choice its largest count (the analogue, for a
  count, of TuNAS's op warm-up over "layer or skip": every path on).

Cost = the exact analytic GFLOPs (multiply-adds x 1e-9, :data:`nas.cost.GFLOPS_NOTE`) of the frozen
sample (``Space.freeze(sample).cost()``), torch-free.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch

from nas.drivers.tunas.config import REWARDS
from nas.dsl.arch import Arch
from nas.dsl.space import Space

__all__ = ["Policy", "Controller", "EmaBaseline", "reward", "warmup_probability", "rl_lr_factor",
           "REWARDS", "choice_kind", "policy_dims"]

Sample = dict[str, Any]


def reward(quality: float, cost: float, target: float, kind: str = "abs", beta: float = -0.10) -> float:
    """TuNAS's ``reward_for_single_cost_model``.

    Args:
        quality: Q, a fraction in [0, 1] (top-1 of the validation batch).
        cost: the architecture's cost (GFLOPs).
        target: the cost target T0 (> 0).
        kind: ``abs`` (TuNAS default), ``mnas`` or ``mnas_hard``.
        beta: the cost exponent (-0.10 for ``abs``; MnasNet used -0.07).
    """
    if kind not in REWARDS:
        raise ValueError(f"reward: got {kind!r}; allowed: one of {', '.join(REWARDS)}")
    if not (target > 0 and math.isfinite(target)):
        raise ValueError(f"target: got {target!r}; allowed: a positive number of GFLOPs")
    ratio = cost / target
    if kind == "abs":
        return quality + beta * abs(ratio - 1.0)
    if kind == "mnas":
        return quality * ratio ** beta
    return quality * min(ratio ** beta, 1.0)


def warmup_probability(step: int, total: int, fraction: float = 0.25) -> float:
    """``clip(1 - step / (fraction * total), 0, 1)``: the op / filter warm-up probability."""
    span = fraction * total
    if span <= 0:
        return 0.0
    return min(1.0, max(0.0, 1.0 - step / span))


def rl_lr_factor(step: int, total: int, delay_fraction: float = 0.25, exponential: bool = True) -> float:
    """0 before ``delay_fraction * total``; then ``10 ** p`` with p going 0 -> 1 to the last step."""
    delay = delay_fraction * total
    if step < delay:
        return 0.0
    if not exponential:
        return 1.0
    return 10.0 ** ((step - delay) / max(1.0, total - 1 - delay))


def choice_kind(label: str, paths: Sequence[str]) -> str:
    """``op`` (kernel choices), ``depth`` (layer counts) or ``filters`` (every width choice)."""
    last = paths[0].rsplit("/", 1)[-1] if paths else label.rsplit("/", 1)[-1]
    if last == "kernel":
        return "op"
    if last == "repeat":
        return "depth"
    return "filters"


def policy_dims(space: Space, fixed: Mapping[str, Any]) -> list[str]:
    """The labels the policy decides: every categorical choice with >1 value not in ``fixed``."""
    labels = []
    for label, choice in space.dims().items():
        if label in fixed:
            continue
        if choice.values is None:
            raise ValueError(f"{label}: got a continuous range; allowed: categorical choices (fix it with a value)")
        if len(choice.values) > 1:
            labels.append(label)
    return labels


class EmaBaseline:
    """Zero-debiased exponential moving average (TuNAS ``custom_layers``): numerator and denominator
    accumulators, so the first value is the first reward, not ``(1 - m) * R``."""

    def __init__(self, momentum: float = 0.95) -> None:
        self.momentum = momentum
        self.numerator = 0.0
        self.denominator = 0.0

    def update(self, value: float) -> float:
        """Fold ``value`` in and return the new average."""
        m = self.momentum
        self.numerator = m * self.numerator + (1 - m) * value
        self.denominator = m * self.denominator + (1 - m)
        return self.value

    @property
    def value(self) -> float:
        """The current average (0 before the first update)."""
        return self.numerator / self.denominator if self.denominator else 0.0


class Policy(torch.nn.Module):
    """One categorical distribution (zero-initialised logits) per policy dimension.

    Args:
        space: the search space.
        fixed: values of the choices the search does not decide (the clip, the head dropout).
        labels: the policy dimensions (default :func:`policy_dims`).
    """

    def __init__(self, space: Space, fixed: Mapping[str, Any] | None = None,
                 labels: Sequence[str] | None = None) -> None:
        super().__init__()
        self.space = space
        self.fixed = dict(fixed or {})
        dims = space.dims()
        for label, value in self.fixed.items():
            if label not in dims:
                raise ValueError(f"fixed: got unknown label {label!r}; allowed: labels of space {space.name!r}")
            if not dims[label].admits(value):
                raise ValueError(f"{label}: got {value!r}; allowed: {dims[label].allowed()}")
        self.labels = list(labels) if labels is not None else policy_dims(space, self.fixed)
        self.values = {label: tuple(dims[label].values) for label in self.labels}
        # constant dims: single-valued choices not in ``fixed``
        self.constant = {label: c.values[0] for label, c in dims.items()
                         if label not in self.fixed and label not in self.values and c.values is not None}
        self.logits = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.zeros(len(self.values[label]))) for label in self.labels])
        self.kinds = {label: choice_kind(label, dims[label].paths) for label in self.labels}

    # -- distributions --------------------------------------------------------------------------
    def probs(self) -> dict[str, list[float]]:
        """Current probabilities per dimension."""
        return {label: torch.softmax(lg.detach(), 0).tolist() for label, lg in zip(self.labels, self.logits)}

    def sample_indices(self, generator: torch.Generator) -> dict[str, int]:
        """Draw one index per dimension (every dimension, active or not)."""
        out = {}
        for label, lg in zip(self.labels, self.logits):
            p = torch.softmax(lg.detach(), 0)
            out[label] = int(torch.multinomial(p, 1, generator=generator))
        return out

    def sample_many(self, n: int, generator: torch.Generator) -> list[dict[str, int]]:
        """``n`` independent draws, one call per dimension: the same distribution as ``n`` calls of
        :meth:`sample_indices`, not the same random stream (for Monte-Carlo estimates: ``n`` times fewer calls)."""
        columns = [torch.multinomial(torch.softmax(lg.detach(), 0), n, replacement=True, generator=generator).tolist()
                   for lg in self.logits]
        return [dict(zip(self.labels, row)) for row in zip(*columns)]

    def argmax_indices(self) -> dict[str, int]:
        """The most probable index per dimension (first on ties)."""
        return {label: int(torch.argmax(lg.detach())) for label, lg in zip(self.labels, self.logits)}

    def to_sample(self, indices: Mapping[str, int]) -> Sample:
        """A full space sample: policy values, then the fixed and constant values."""
        sample = {label: self.values[label][i] for label, i in indices.items()}
        sample.update(self.fixed)
        sample.update(self.constant)
        return sample

    def freeze(self, indices: Mapping[str, int], name: str | None = None) -> Arch:
        """The architecture the indices select."""
        return self.space.freeze(self.to_sample(indices), name=name)

    def active(self, indices: Mapping[str, int]) -> list[str]:
        """The policy dimensions the architecture of ``indices`` actually uses."""
        used = self.space.sample_of(self.freeze(indices))
        return [label for label in self.labels if label in used]

    def log_prob(self, indices: Mapping[str, int], active: Sequence[str]) -> torch.Tensor:
        """Sum of log-probabilities over the active dimensions only."""
        pos = {label: i for i, label in enumerate(self.labels)}
        total = self.logits[0].new_zeros(())
        for label in active:
            total = total + torch.log_softmax(self.logits[pos[label]], 0)[indices[label]]
        return total

    def entropy(self, active: Sequence[str]) -> torch.Tensor:
        """Sum of entropies over the active dimensions only."""
        pos = {label: i for i, label in enumerate(self.labels)}
        total = self.logits[0].new_zeros(())
        for label in active:
            logp = torch.log_softmax(self.logits[pos[label]], 0)
            total = total - (logp.exp() * logp).sum()
        return total


@dataclass
class Step:
    """What one controller step drew and learnt (one row of the trajectory)."""

    indices: dict[str, int]
    arch: Arch
    gflops: float  # the controller's cost of ``arch``: GFLOPs, or the unit of its ``cost_fn``
    warm: dict[str, str]  # label -> "mixed" | "max" for the dims the warm-ups overrode this step
    mixed_labels: list[str]


class Controller:
    """Samples architectures, applies the warm-ups and learns from rewards (see the module docstring).

    Args:
        space: the search space.
        target_gflops: the cost target T0, in the unit of ``cost_fn`` (GFLOPs by default).
        total_steps: T, the number of search steps (sets the warm-up and RL-delay schedules).
        fixed: values of the choices the search does not decide.
        lr: base RL learning rate (TuNAS: 3e-4 x batch/256; a short CPU search needs more).
        beta: the reward's cost exponent.
        reward_kind: ``abs``, ``mnas`` or ``mnas_hard``.
        momentum: the baseline's EMA momentum.
        entropy_weight: weight of the entropy bonus (TuNAS: 0).
        warmup_fraction: fraction of steps with op / filter warm-up (TuNAS: 0.25).
        rl_delay_fraction: fraction of steps with RL learning rate 0 (TuNAS: 0.25; must be >= the
            warm-up fraction, because warm-up samples are off-policy).
        exponential_lr: grow the RL learning rate 1x -> 10x after the delay (TuNAS's schedule).
        seed: seeds the sampling and warm-up generators.
        cost_fn: architecture -> cost (default: exact analytic GFLOPs).
    """

    def __init__(self, space: Space, target_gflops: float, total_steps: int, *, fixed: Mapping[str, Any] | None = None,
                 lr: float = 0.05, beta: float = -0.10, reward_kind: str = "abs", momentum: float = 0.95,
                 entropy_weight: float = 0.0, warmup_fraction: float = 0.25, rl_delay_fraction: float = 0.25,
                 exponential_lr: bool = True, seed: int = 0,
                 cost_fn: Callable[[Arch], float] | None = None) -> None:
        if not (target_gflops > 0 and math.isfinite(target_gflops)):
            raise ValueError(f"target_gflops: got {target_gflops!r}; allowed: a positive number")
        if total_steps < 1:
            raise ValueError(f"steps: got {total_steps!r}; allowed: an integer >= 1")
        if reward_kind not in REWARDS:
            raise ValueError(f"reward: got {reward_kind!r}; allowed: one of {', '.join(REWARDS)}")
        if warmup_fraction > rl_delay_fraction:
            raise ValueError(f"warmup_fraction: got {warmup_fraction}; allowed: <= the RL delay fraction "
                             f"{rl_delay_fraction} (warm-up samples are off-policy)")
        self.policy = Policy(space, fixed)
        self.target = float(target_gflops)
        self.total_steps = total_steps
        self.lr, self.beta, self.reward_kind = lr, beta, reward_kind
        self.entropy_weight = entropy_weight
        self.warmup_fraction, self.rl_delay_fraction = warmup_fraction, rl_delay_fraction
        self.exponential_lr = exponential_lr
        self.baseline = EmaBaseline(momentum)
        # Adam with beta1 = 0 (so no first moment), beta2 = 0.999, eps = 1e-8, written out because
        # the second moment averages squared per-sample gradients (TuNAS's cross-replica Adam)
        self.adam_beta2, self.adam_eps, self._adam_t = 0.999, 1e-8, 0
        self._adam_v = [torch.zeros_like(p) for p in self.policy.logits]
        self.sampler = torch.Generator().manual_seed(seed)
        self.warmer = torch.Generator().manual_seed(seed + 1)
        self.cost_fn = cost_fn or (lambda arch: arch.cost().gflops)
        self.step = 0
        self._cost_cache: dict[str, float] = {}
        self._cost_of_indices: dict[tuple[int, ...], float] = {}

    # -- sampling -------------------------------------------------------------------------------
    def cost(self, arch: Arch) -> float:
        """The architecture's cost (cached by hash)."""
        key = arch.hash
        if key not in self._cost_cache:
            self._cost_cache[key] = float(self.cost_fn(arch))
        return self._cost_cache[key]

    def sample(self) -> Step:
        """Draw this step's architecture from the policy and apply the warm-ups.

        The returned ``indices`` are the policy's draw (what REINFORCE is about); ``arch`` is the
        network the shared weights train (with warmed-up widths and depths) and ``mixed_labels`` the
        kernel choices that run every kernel this step.
        """
        indices = self.policy.sample_indices(self.sampler)
        p = warmup_probability(self.step, self.total_steps, self.warmup_fraction)
        trained = dict(indices)
        warm: dict[str, str] = {}
        mixed: list[str] = []
        if p > 0:
            for label in self.policy.labels:
                if float(torch.rand((), generator=self.warmer)) >= p:
                    continue
                kind = self.policy.kinds[label]
                if kind == "op":
                    mixed.append(label)
                    warm[label] = "mixed"
                else:
                    values = self.policy.values[label]
                    trained[label] = max(range(len(values)), key=lambda i: values[i])
                    warm[label] = "max"
        arch = self.policy.freeze(trained)
        return Step(indices=indices, arch=arch, gflops=self.cost(arch), warm=warm, mixed_labels=mixed)

    def reward(self, quality: float, gflops: float) -> float:
        """The configured reward of an architecture of quality Q and cost ``gflops``."""
        return reward(quality, gflops, self.target, self.reward_kind, self.beta)

    # -- learning -------------------------------------------------------------------------------
    def update(self, indices: Mapping[str, int], quality: float, gflops: float) -> dict[str, float]:
        """One REINFORCE step for one sampled architecture (see :meth:`update_many`)."""
        return self.update_many([(indices, quality, gflops)])

    def update_many(self, samples: Sequence[tuple[Mapping[str, int], float, float]]) -> dict[str, float]:
        """One REINFORCE step for the K architectures sampled this step; advances the step counter.

        As TuNAS across its TPU cores: the baseline is updated with the mean reward first; each
        sample's gradient ``-A_k * grad log_prob_k`` is taken separately; Adam (beta1 = 0) steps
        with their mean ``g`` and the mean of their squares ``g2`` (not ``g ** 2``: noisy directions
        get a smaller step); an entropy bonus, if any, is a separate plain gradient step.

        Args:
            samples: ``(indices, quality Q, cost)`` per architecture.

        Returns:
            The logged quantities: reward (mean), baseline, advantage (mean), rl_lr, log_prob (mean),
            entropy (mean).
        """
        rewards = [self.reward(q, c) for _, q, c in samples]
        mean_r = sum(rewards) / len(rewards)
        b = self.baseline.update(mean_r)  # TuNAS folds the current (mean) reward in first
        params = list(self.policy.logits)
        g_sum = [torch.zeros_like(p) for p in params]
        g2_sum = [torch.zeros_like(p) for p in params]
        ent_grad = [torch.zeros_like(p) for p in params]
        logps, ents = [], []
        for (indices, _, _), r in zip(samples, rewards):
            active = self.policy.active(indices)
            logp = self.policy.log_prob(indices, active)
            ent = self.policy.entropy(active)
            grads = torch.autograd.grad(-(r - b) * logp, params, allow_unused=True)
            for gs, g2s, g in zip(g_sum, g2_sum, grads):
                if g is not None:
                    gs.add_(g)
                    g2s.add_(g * g)
            if self.entropy_weight:
                for eg, g in zip(ent_grad, torch.autograd.grad(ent, params, allow_unused=True)):
                    if g is not None:
                        eg.add_(g)
            logps.append(float(logp.detach()))
            ents.append(float(ent.detach()))
        k = len(samples)
        lr = self.lr * rl_lr_factor(self.step, self.total_steps, self.rl_delay_fraction, self.exponential_lr)
        self._adam_t += 1
        with torch.no_grad():
            for p, gs, g2s, v, eg in zip(params, g_sum, g2_sum, self._adam_v, ent_grad):
                v.mul_(self.adam_beta2).add_(g2s / k, alpha=1 - self.adam_beta2)  # moves with lr 0 too
                v_hat = v / (1 - self.adam_beta2 ** self._adam_t)
                p.sub_(lr * (gs / k) / (v_hat.sqrt() + self.adam_eps))
                if self.entropy_weight:
                    p.add_(lr * self.entropy_weight * eg / k)
        self.step += 1
        return {"reward": mean_r, "baseline": b, "advantage": mean_r - b, "rl_lr": lr,
                "log_prob": sum(logps) / k, "entropy": sum(ents) / k}

    # -- summaries ------------------------------------------------------------------------------
    def argmax_arch(self, name: str | None = None) -> Arch:
        """The final architecture: the argmax of every choice."""
        return self.policy.freeze(self.policy.argmax_indices(), name=name)

    def expected_cost(self, n: int = 64, seed: int = 0) -> float:
        """Monte-Carlo estimate of E[cost] under the current policy (own generator: the search's
        sampling sequence is not disturbed)."""
        g = torch.Generator().manual_seed(seed)
        total = 0.0
        for indices in self.policy.sample_many(n, g):
            # a narrowed policy repeats its draws: the cost by indices skips freezing them again
            key = tuple(indices.values())
            if key not in self._cost_of_indices:
                self._cost_of_indices[key] = self.cost(self.policy.freeze(indices))
            total += self._cost_of_indices[key]
        return total / n

    def top_k(self, k: int, n: int = 256, seed: int = 0, exclude: Sequence[str] = ()) -> list[Arch]:
        """The ``k`` most probable distinct architectures among ``n`` draws from the final policy
        (ranked by the log-probability of their active choices), skipping hashes in ``exclude``."""
        g = torch.Generator().manual_seed(seed)
        seen: dict[str, tuple[float, Arch]] = {}
        with torch.no_grad():
            for _ in range(n):
                idx = self.policy.sample_indices(g)
                arch = self.policy.freeze(idx)
                if arch.hash in seen or arch.hash in exclude:
                    continue
                seen[arch.hash] = (float(self.policy.log_prob(idx, self.policy.active(idx))), arch)
        ranked = sorted(seen.values(), key=lambda t: -t[0])
        return [arch for _, arch in ranked[:k]]

    # -- checkpoint -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: logits, Adam moments, baseline, RNG states, step."""
        return {"policy": self.policy.state_dict(), "adam_v": [v.clone() for v in self._adam_v], "adam_t": self._adam_t,
                "baseline": (self.baseline.numerator, self.baseline.denominator),
                "sampler": self.sampler.get_state(), "warmer": self.warmer.get_state(), "step": self.step,
                "labels": list(self.policy.labels)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        if list(state["labels"]) != self.policy.labels:
            raise ValueError("controller checkpoint: its policy dimensions differ from this space's")
        self.policy.load_state_dict(state["policy"])
        for v, saved in zip(self._adam_v, state["adam_v"]):
            v.copy_(saved)
        self._adam_t = state["adam_t"]
        self.baseline.numerator, self.baseline.denominator = state["baseline"]
        self.sampler.set_state(state["sampler"])
        self.warmer.set_state(state["warmer"])
        self.step = state["step"]
