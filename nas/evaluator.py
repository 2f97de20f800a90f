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

The contract every evaluator keeps (``tests/test_evaluator_contract.py`` checks each built-in one):

* ``evaluate(archs, tags=None, on_result=None)`` returns one :class:`~nas.proxy.TrialResult` per
  architecture, in order, with ``arch_hash`` equal to the architecture's hash and ``status`` one of
  :data:`~nas.proxy.STATUSES` (``ok`` results have a finite ``top1``, the others a ``reason``); an
  empty batch gives an empty list; ``tags`` of another length than ``archs`` is a ``ValueError``;
* ``on_result(index, result)``, when given, is called exactly once per architecture as soon as its
  result exists (before the whole batch is done where trials run in parallel), with the result
  ``evaluate`` returns at that index: a recording run writes each result as it finishes, so a crash
  loses no finished trial;
* ``cache_key`` (a str) names everything besides the architecture that decides a result (proxy
  budget, data, seed; or the formula): results under one key are interchangeable, so a run caches them.

Each architecture may carry ``tags`` (a plain mapping such as ``{"driver": "expand", "step": 3,
"axis": "width"}``) that recording evaluators copy into the results table; evaluators that do not
record ignore them. Tags whose name starts with ``_`` are not recorded: :data:`TRIAL_TAG` carries the
number of the Optuna trial a sampler asked, so the recording run tells that trial the result.

This module does not import torch; :class:`LocalEvaluator` imports the trainer when first used.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

from nas.dsl.arch import Arch
from nas.proxy import FAILED, OK, PRUNED, STATUSES, Proxy, TrialResult

__all__ = ["Evaluator", "LocalEvaluator", "FormulaEvaluator", "Tags", "OnResult", "TRIAL_TAG", "OK", "FAILED",
           "PRUNED", "STATUSES", "proxy_cache_key", "report_each", "check_tags"]

Tags = Mapping[str, Any]
OnResult = Callable[[int, TrialResult], None]
TRIAL_TAG = "_trial"  # the Optuna trial number of a sampler's architecture (see the module docstring)


@runtime_checkable
class Evaluator(Protocol):
    """Scores a batch of architectures; one result per architecture, in the same order (the contract
    is in this module's docstring)."""

    @property
    def cache_key(self) -> str:
        """What, besides the architecture, decides a result."""
        ...

    def evaluate(self, archs: Sequence[Arch], tags: Sequence[Tags] | None = None,
                 on_result: OnResult | None = None) -> list[TrialResult]:
        """Evaluate ``archs`` (``tags[i]`` describes ``archs[i]`` for recording evaluators); call
        ``on_result(i, result)`` as each result exists."""
        ...


def proxy_cache_key(proxy: Proxy, data: str, seed: int) -> str:
    """The cache key of a proxy-trainer evaluator (local, in-process with checkpoints, or Ray)."""
    return f"proxy:{proxy.hash}:data={data}:seed={seed}"


def report_each(results: Sequence[TrialResult], on_result: OnResult | None, start: int = 0) -> None:
    """Call ``on_result(start + i, result)`` for each result (evaluators that score one at a time)."""
    if on_result is not None:
        for i, result in enumerate(results):
            on_result(start + i, result)


def check_tags(archs: Sequence[Arch], tags: Sequence[Tags] | None) -> None:
    """The contract's check: ``tags`` is None or has one entry per architecture (else ValueError)."""
    if tags is not None and len(tags) != len(archs):
        raise ValueError(f"tags: got {len(tags)} entries for {len(archs)} architectures; allowed: one per architecture")


class LocalEvaluator:
    """The proxy trainer in this process, one architecture after another.

    Args:
        data: ``"synthetic"`` or a path to videos (see :func:`nas.train.make_data`).
        proxy: the training budget every candidate gets.
        seed: the trial seed (same architecture + proxy + seed = same result).
        device: torch device string (default: CUDA when available, else CPU).
        checkpoint_dir: where mid-trial checkpoints go (``<arch hash>-<proxy hash>-<seed>.pt``): a
            killed process, rerun, resumes an interrupted trial from its last checkpoint instead of
            from step 0; a trial's checkpoint is deleted once its result is reported. ``None``: none.
        memory_limit_gib: refuse (a ``failed`` result, nothing trained) a candidate whose estimated
            training memory exceeds this; ``None``: what the machine has free.

    A candidate whose training raises is a ``failed`` result (the exception in ``reason``): the run
    goes on.
    """

    def __init__(self, data: str = "synthetic", proxy: Proxy | None = None, seed: int = 0,
                 device: str | None = None, *, checkpoint_dir: str | Path | None = None,
                 memory_limit_gib: float | None = None) -> None:
        self.data = data
        self.proxy = proxy or Proxy()
        self.seed = seed
        self.device = device
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.memory_limit_gib = memory_limit_gib

    @property
    def cache_key(self) -> str:
        """The proxy's hash, the data and the seed."""
        return proxy_cache_key(self.proxy, self.data, self.seed)

    def evaluate(self, archs: Sequence[Arch], tags: Sequence[Tags] | None = None,
                 on_result: OnResult | None = None) -> list[TrialResult]:
        """Train and evaluate each architecture with the proxy, one after another."""
        check_tags(archs, tags)
        results = []
        for arch in archs:
            ckpt = None
            if self.checkpoint_dir is not None:
                ckpt = self.checkpoint_dir / f"{arch.hash}-{self.proxy.hash}-{self.seed}.pt"
                ckpt.parent.mkdir(parents=True, exist_ok=True)
            results.append(self._train(arch, ckpt))
            report_each(results[-1:], on_result, len(results) - 1)
            if ckpt is not None:
                ckpt.unlink(missing_ok=True)  # reported: the checkpoint is no longer needed
        return results

    def _train(self, arch: Arch, ckpt: Path | None) -> TrialResult:
        from nas.train import evaluate

        try:
            return evaluate(arch, self.data, self.proxy, seed=self.seed, device=self.device, checkpoint=ckpt,
                            memory_limit_gib=self.memory_limit_gib)
        except Exception as err:  # a crashing candidate is a failed trial; the run goes on
            cost = arch.cost()
            return TrialResult(arch_name=arch.name, arch_hash=arch.hash, status=FAILED,
                               reason=f"{type(err).__name__}: {err}", gflops=cost.gflops, params=cost.params,
                               seed=self.seed, proxy_hash=self.proxy.hash)


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

    @property
    def cache_key(self) -> str:
        """``formula:<name>``."""
        return f"formula:{self.name}"

    def evaluate(self, archs: Sequence[Arch], tags: Sequence[Tags] | None = None,
                 on_result: OnResult | None = None) -> list[TrialResult]:
        """Score each architecture with the formula; cost fields are the exact analytic ones."""
        check_tags(archs, tags)
        results = []
        for arch in archs:
            results.append(self._score(arch))
            report_each(results[-1:], on_result, len(results) - 1)
        return results

    def _score(self, arch: Arch) -> TrialResult:
        start = time.perf_counter()
        self.calls.append(arch.hash)
        cost = arch.cost()
        common = dict(arch_name=arch.name, arch_hash=arch.hash, gflops=cost.gflops, params=cost.params,
                      size=cost.size, frames=cost.frames, proxy_hash=f"formula:{self.name}", data="formula")
        try:
            top1 = float(self.score(arch))
        except Exception as err:  # a failing formula is a failed trial, as a crashed training would be
            return TrialResult(status=FAILED, reason=f"{type(err).__name__}: {err}", **common)
        if not math.isfinite(top1):
            return TrialResult(status=FAILED, reason=f"score is {top1}", **common)
        return TrialResult(status=OK, top1=top1, loss=0.0, wall_s=time.perf_counter() - start, **common)
