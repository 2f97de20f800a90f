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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

from nas.dsl.arch import Arch
from nas.proxy import FAILED, OK, PRUNED, STATUSES, Proxy, TrialResult

__all__ = ["Evaluator", "LocalEvaluator", "FormulaEvaluator", "Tags", "OnResult", "TRIAL_TAG", "OK", "FAILED",
           "PRUNED", "STATUSES", "Inheritance", "for_parent", "checkpoint_suffix", "proxy_cache_key", "report_each", "check_tags",
           "OVER_COST_CAP"]

Tags = Mapping[str, Any]
OnResult = Callable[[int, TrialResult], None]
TRIAL_TAG = "_trial"  # the Optuna trial number of a sampler's architecture (see the module docstring)
# the tag of a candidate refused untrained by a run's cost cap; its value is the cap in GFLOPs (the
# Optuna study reads it: nas.integrations.optuna_study.Study.constraints_of)
OVER_COST_CAP = "over_cost_cap"


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


@dataclass(frozen=True)
class Inheritance:
    """Weight inheritance for a proxy-trainer evaluator (``xnas expand --inherit``, issue 15).

    An evaluator with an inheritance trains each architecture starting from its *parent's* trained
    weights, transformed by the network morphism of the axis that separates them
    (:func:`nas.models.morph.inherit`), and keeps every trained model's weights in ``weights_dir``
    (``<arch hash>.pt``) so that it can be the parent of the next batch, also after a resume. The
    parent is set per batch with :func:`for_parent`; with no parent the evaluator trains *starts*:
    ``start_steps`` steps from scratch, or from ``start_checkpoint`` (weights of the start itself,
    e.g. an ``xnas train`` checkpoint; then ``start_steps`` may be 0: evaluate it as it is).

    Plain data (paths and numbers), so it travels to Ray trials as JSON (:meth:`job`); on a cluster
    ``weights_dir`` must be on storage every node sees.

    Args:
        weights_dir: where trained weights are written and parents' weights are read.
        start_steps: the start's training steps (``None``: the proxy's own steps).
        start_checkpoint: weights the start begins from (``None``: random initialisation).
        noise: relative symmetry-breaking noise on copied channels (``inherit``'s ``noise``).
        parent: the architecture whose trained weights this evaluator's batches inherit; ``None``: starts.
    """

    weights_dir: Path
    start_steps: int | None = None
    start_checkpoint: Path | None = None
    noise: float = 0.0
    parent: Arch | None = None

    def __post_init__(self) -> None:
        if self.start_steps is not None and self.start_steps < (0 if self.start_checkpoint else 1):
            allowed = "an integer >= 0 (with a start checkpoint)" if self.start_checkpoint else "an integer >= 1"
            raise ValueError(f"inheritance.start_steps: got {self.start_steps}; allowed: {allowed}")
        if not (math.isfinite(self.noise) and 0 <= self.noise <= 1):
            raise ValueError(f"inheritance.noise: got {self.noise}; allowed: a number in [0, 1]")

    def with_parent(self, parent: Arch | None) -> "Inheritance":
        """The same inheritance for children of ``parent`` (``None``: for starts)."""
        return replace(self, parent=parent)

    def weights_path(self, arch: Arch) -> Path:
        """Where ``arch``'s trained weights are kept."""
        return Path(self.weights_dir) / f"{arch.hash}.pt"

    @property
    def key(self) -> str:
        """The part of the cache key inheritance adds: what the weights start from."""
        if self.parent is not None:
            key = f"inherit={self.parent.hash}"
        else:
            key = f"start-steps={self.start_steps if self.start_steps is not None else 'proxy'}"
            if self.start_checkpoint is not None:
                key += f",from={_file_digest(Path(self.start_checkpoint))}"
        return key + (f",noise={self.noise:g}" if self.noise else "")

    def job(self, arch: Arch, proxy: Proxy) -> tuple[Proxy, dict[str, Any] | None, str]:
        """What the trainer needs for ``arch``: the proxy (a start's gets ``start_steps``), the
        initialisation (plain JSON for :func:`nas.train.evaluate`'s ``init``; ``None``: random) and where
        to write the trained weights."""
        init: dict[str, Any] | None = None
        if self.parent is not None:
            init = {"parent": self.parent.to_dict(), "weights": str(self.weights_path(self.parent)),
                    "noise": self.noise}
        else:
            if self.start_steps is not None:
                steps = self.start_steps
                proxy = replace(proxy, steps=max(1, steps), warmup_steps=min(proxy.warmup_steps, max(0, steps // 4)))
            if self.start_checkpoint is not None:  # (start_steps 0 implies a checkpoint: __post_init__)
                init = {"parent": None, "weights": str(self.start_checkpoint), "noise": 0.0}
                if self.start_steps == 0:
                    init["train"] = False
        return proxy, init, str(self.weights_path(arch))


def _file_digest(path: Path) -> str:
    import hashlib

    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError:
        return "missing"


def for_parent(evaluator: "Evaluator", parent: Arch | None) -> "Evaluator":
    """``evaluator`` for children of ``parent`` (``None``: for starts) when it inherits weights
    (it has a ``for_parent`` method), else ``evaluator`` itself: a driver calls this for every batch
    whose architectures grow from one parent, and stays the same with or without inheritance."""
    method = getattr(evaluator, "for_parent", None)
    return method(parent) if callable(method) else evaluator


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
        inheritance: train from a parent's weights and keep every trained model's weights
            (:class:`Inheritance`; set the parent per batch with :func:`for_parent`); ``None``: every
            architecture from scratch.
        workers: data-parallel processes per trial (``nas.train.evaluate``'s ``workers``).
        loader_workers: processes reading training batches ahead in each trial (never changes a result).

    A candidate whose training raises is a ``failed`` result (the exception in ``reason``): the run
    goes on.
    """

    def __init__(self, data: str = "synthetic", proxy: Proxy | None = None, seed: int = 0,
                 device: str | None = None, *, checkpoint_dir: str | Path | None = None,
                 memory_limit_gib: float | None = None, inheritance: Inheritance | None = None,
                 workers: int = 1, loader_workers: int = 0) -> None:
        self.data = data
        self.workers = workers
        self.loader_workers = loader_workers
        self.proxy = proxy or Proxy()
        self.seed = seed
        self.device = device
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.memory_limit_gib = memory_limit_gib
        self.inheritance = inheritance

    @property
    def cache_key(self) -> str:
        """The proxy's hash, the data and the seed (and what the weights inherit from)."""
        key = proxy_cache_key(self.proxy, self.data, self.seed)
        return f"{key}:{self.inheritance.key}" if self.inheritance is not None else key

    def for_parent(self, parent: Arch | None) -> "LocalEvaluator":
        """This evaluator for children of ``parent`` (itself when it does not inherit)."""
        if self.inheritance is None:
            return self
        return LocalEvaluator(self.data, self.proxy, self.seed, self.device, checkpoint_dir=self.checkpoint_dir,
                              memory_limit_gib=self.memory_limit_gib,
                              inheritance=self.inheritance.with_parent(parent), workers=self.workers,
                              loader_workers=self.loader_workers)

    def evaluate(self, archs: Sequence[Arch], tags: Sequence[Tags] | None = None,
                 on_result: OnResult | None = None) -> list[TrialResult]:
        """Train and evaluate each architecture with the proxy, one after another."""
        check_tags(archs, tags)
        results = []
        for arch in archs:
            ckpt = None
            if self.checkpoint_dir is not None:
                ckpt = self.checkpoint_dir / f"{arch.hash}-{self.proxy.hash}-{self.seed}{checkpoint_suffix(self.inheritance)}.pt"
                ckpt.parent.mkdir(parents=True, exist_ok=True)
            results.append(self._train(arch, ckpt))
            report_each(results[-1:], on_result, len(results) - 1)
            if ckpt is not None:
                ckpt.unlink(missing_ok=True)  # reported: the checkpoint is no longer needed
        return results

    def _train(self, arch: Arch, ckpt: Path | None) -> TrialResult:
        from nas.train import evaluate

        proxy, init, save = self.proxy, None, None
        if self.inheritance is not None:
            proxy, init, save = self.inheritance.job(arch, self.proxy)
        try:
            return evaluate(arch, self.data, proxy, seed=self.seed, device=self.device, checkpoint=ckpt,
                            memory_limit_gib=self.memory_limit_gib, init=init, save_weights=save,
                            workers=self.workers, loader_workers=self.loader_workers)
        except Exception as err:  # a crashing candidate is a failed trial; the run goes on
            cost = arch.cost()
            return TrialResult(arch_name=arch.name, arch_hash=arch.hash, status=FAILED,
                               reason=f"{type(err).__name__}: {err}", gflops=cost.gflops, params=cost.params,
                               seed=self.seed, proxy_hash=self.proxy.hash)


def checkpoint_suffix(inheritance: Inheritance | None) -> str:
    """What mid-trial checkpoint names add for an inheriting evaluator: a digest of what the weights
    start from (the same child of two parents is two trials)."""
    if inheritance is None:
        return ""
    import hashlib

    return "-" + hashlib.sha256(inheritance.key.encode()).hexdigest()[:8]


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
