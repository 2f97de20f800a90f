"""What a search driver calls to score architectures.

Drivers see only a space, frozen architectures, a cost function and an :class:`Evaluator`. An
evaluator takes a batch of architectures (one expansion step, one batch of TuNAS retrains, one batch of
sampler trials) and returns one :class:`~nas.proxy.TrialResult` per architecture, in order. Where the
batch runs is the evaluator's business:

* :class:`LocalEvaluator` -- the proxy trainer, in this process, one architecture after another;
* :class:`FormulaEvaluator` -- no training: a known formula of the architecture (tests pin a driver's
  logic with it, deterministically and in milliseconds);
* the Ray dispatch (``nas.integrations.ray_tune``) -- trials on a local or remote Ray cluster;
* a run (``nas.runs``) wraps any of them to cache results, write the results table and the Optuna study.

Each architecture may carry ``tags`` (a plain mapping such as ``{"driver": "expand", "step": 3,
"axis": "width"}``) that recording evaluators copy into the results table; evaluators that do not
record ignore them.

This module does not import torch; :class:`LocalEvaluator` imports the trainer when first used.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

from nas.dsl.arch import Arch
from nas.proxy import Proxy, TrialResult

__all__ = ["Evaluator", "LocalEvaluator", "FormulaEvaluator", "Tags"]

Tags = Mapping[str, Any]


@runtime_checkable
class Evaluator(Protocol):
    """Scores a batch of architectures; one result per architecture, in the same order."""

    def evaluate(self, archs: Sequence[Arch], tags: Sequence[Tags] | None = None) -> list[TrialResult]:
        """Evaluate ``archs`` (``tags[i]`` describes ``archs[i]`` for recording evaluators)."""
        ...


def _check_tags(archs: Sequence[Arch], tags: Sequence[Tags] | None) -> None:
    if tags is not None and len(tags) != len(archs):
        raise ValueError(f"tags: got {len(tags)} entries for {len(archs)} architectures; allowed: one per architecture")


class LocalEvaluator:
    """The proxy trainer in this process, one architecture after another.

    Args:
        data: ``"synthetic"`` or a path to videos (see :func:`nas.train.make_data`).
        proxy: the training budget every candidate gets.
        seed: the trial seed (same architecture + proxy + seed = same result).
        device: torch device string (default: CUDA when available, else CPU).
    """

    def __init__(self, data: str = "synthetic", proxy: Proxy | None = None, seed: int = 0,
                 device: str | None = None) -> None:
        self.data = data
        self.proxy = proxy or Proxy()
        self.seed = seed
        self.device = device

    def evaluate(self, archs: Sequence[Arch], tags: Sequence[Tags] | None = None) -> list[TrialResult]:
        """Train and evaluate each architecture with the proxy."""
        _check_tags(archs, tags)
        from nas.train import evaluate

        return [evaluate(arch, self.data, self.proxy, seed=self.seed, device=self.device) for arch in archs]


class FormulaEvaluator:
    """Scores architectures by a known function, without training (for tests and dry runs).

    Args:
        score: maps an architecture to its "top-1" in percent; may raise or return NaN to make the
            trial ``failed`` (the reason says why), like a diverged training.
        name: names the formula in ``proxy_hash`` so cached results of different formulas never mix.

    ``calls`` lists the hashes of every architecture scored, in order (tests count evaluations with it).
    """

    def __init__(self, score: Callable[[Arch], float], name: str = "formula") -> None:
        self.score = score
        self.name = name
        self.calls: list[str] = []

    def evaluate(self, archs: Sequence[Arch], tags: Sequence[Tags] | None = None) -> list[TrialResult]:
        """Score each architecture with the formula; cost fields are the exact analytic ones."""
        _check_tags(archs, tags)
        results = []
        for arch in archs:
            start = time.perf_counter()
            self.calls.append(arch.hash)
            cost = arch.cost()
            common = dict(arch_name=arch.name, arch_hash=arch.hash, gflops=cost.gflops, params=cost.params,
                          size=cost.size, frames=cost.frames, proxy_hash=f"formula:{self.name}", data="formula")
            try:
                top1 = float(self.score(arch))
            except Exception as err:  # a failing formula is a failed trial, as a crashed training would be
                results.append(TrialResult(status="failed", reason=f"{type(err).__name__}: {err}", **common))
                continue
            if not math.isfinite(top1):
                results.append(TrialResult(status="failed", reason=f"score is {top1}", **common))
                continue
            results.append(TrialResult(status="ok", top1=top1, loss=0.0,
                                       wall_s=time.perf_counter() - start, **common))
        return results
