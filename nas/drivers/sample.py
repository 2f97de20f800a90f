"""Multi-trial baselines as a library call: Optuna samplers (random, TPE, NSGA-II) over a DSL space.

:func:`sample` asks trials in batches from the run's Optuna study, freezes each into an architecture
and hands the batch to the evaluator, which records every result and tells the study (a
:class:`~nas.runs.RecordingEvaluator`; the trial number travels in the tag
:data:`nas.evaluator.TRIAL_TAG`). Every batch gets a sampler seeded by (seed, batch index), so a
rerun after a crash proposes exactly the trials the uninterrupted run would have, and trials asked
but never told are evaluated first.

Example::

    from nas.drivers.sample import SampleConfig, sample
    from nas.evaluator import LocalEvaluator
    from nas.registry import load_space
    from nas.runs import Run

    space = load_space("x3d")
    config = SampleConfig(strategy="tpe", trials=8)
    run = Run.open("my-sample", driver="sample", config=config.run_config())
    sample(space, run.evaluator(LocalEvaluator()), run.study, config, log=run.log)
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from nas.evaluator import TRIAL_TAG

if TYPE_CHECKING:
    from nas.dsl.arch import Arch
    from nas.dsl.space import Space
    from nas.evaluator import Evaluator
    from nas.integrations.optuna_study import Study

__all__ = ["SampleConfig", "sample", "STRATEGIES", "cost_cap", "fix_clip", "sampler_seed"]

STRATEGIES = ("random", "tpe", "nsga2")


@dataclass(frozen=True)
class SampleConfig:
    """What a sampling run does.

    Attributes:
        strategy: ``random``, ``tpe`` (multivariate TPE) or ``nsga2`` (top-1 and GFLOPs).
        trials: trials in all (a rerun goes on towards this number).
        target_gflops: random / tpe optimise the TuNAS absolute reward ``top1 - 7 |GFLOPs / G - 1|``
            around it; nsga2 adds the constraint ``GFLOPs <= G``.
        target_ms: the same with predicted latency (milliseconds, :mod:`nas.latency`) as the cost:
            random / tpe optimise ``top1 - 7 |ms / T - 1|``, nsga2 trades top-1 against latency under
            ``ms <= T``. Needs the ``latency`` cost function of :func:`sample`. At most one target.
        batch: trials asked and evaluated together (part of the run's identity: it seeds the samplers).
        population: NSGA-II population size.
        seed: seeds every batch's sampler with the batch index.
        timeout: stop asking new batches after this many seconds of this call (the batch under way
            finishes; at least one batch is asked). Not part of the run's identity.
    """

    strategy: str = "random"
    trials: int = 16
    target_gflops: float | None = None
    target_ms: float | None = None
    batch: int = 4
    population: int = 8
    seed: int = 0
    timeout: float | None = None

    def __post_init__(self) -> None:
        checks = [
            ("strategy", self.strategy, self.strategy in STRATEGIES, "one of " + ", ".join(STRATEGIES)),
            ("trials", self.trials, isinstance(self.trials, int) and self.trials >= 1, "an integer >= 1"),
            ("target_gflops", self.target_gflops,
             self.target_gflops is None or (self.target_gflops > 0 and math.isfinite(self.target_gflops)),
             "a positive number or None"),
            ("target_ms", self.target_ms,
             self.target_ms is None or (self.target_ms > 0 and math.isfinite(self.target_ms)
                                        and not self.target_gflops),
             "a positive number of milliseconds or None, and not with target_gflops (one cost target)"),
            ("batch", self.batch, isinstance(self.batch, int) and self.batch >= 1, "an integer >= 1"),
            ("population", self.population, isinstance(self.population, int) and self.population >= 1,
             "an integer >= 1"),
            ("timeout", self.timeout, self.timeout is None or self.timeout > 0, "a positive number of seconds or None"),
        ]
        for name, value, ok, allowed in checks:
            if not ok:
                raise ValueError(f"sample.{name}: got {value!r}; allowed: {allowed}")

    @property
    def objectives(self) -> list[str]:
        """The study's objectives: nsga2 ``top1`` and ``gflops``; random / tpe ``reward`` with a
        target, else ``top1``."""
        if self.strategy == "nsga2":
            return ["top1", "latency_ms" if self.target_ms else "gflops"]
        return ["reward"] if (self.target_gflops or self.target_ms) else ["top1"]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields (``timeout`` included)."""
        return dataclasses.asdict(self)

    def run_config(self) -> dict[str, Any]:
        """What identifies a sampling run (for :meth:`nas.runs.Run.open`): the fields but ``timeout``,
        plus the study's ``objectives``."""
        return {**{k: v for k, v in self.to_dict().items() if k != "timeout"}, "objectives": self.objectives}


def sampler_seed(seed: int, batch_index: int) -> int:
    """The seed of one batch's sampler."""
    return seed * 1_000_003 + batch_index


def sample(space: "Space", evaluator: "Evaluator", study: "Study", config: SampleConfig, *,
           log: Callable[[str], None] = print, latency: "Callable[[Arch], float] | None" = None) -> int:
    """Ask and evaluate trials until the study holds ``config.trials`` (or the timeout passes).

    Args:
        space: the DSL space the samplers propose from.
        evaluator: evaluates each batch and tells ``study`` each result (a
            :class:`~nas.runs.RecordingEvaluator` over the same run does).
        study: the run's Optuna study (:attr:`nas.runs.Run.study`).
        config: strategy, trials, batch, seeds.
        log: status lines.
        latency: predicted milliseconds of an architecture (:meth:`nas.latency.LatencyTable.predict_ms`):
            every trial is tagged ``latency_ms`` (a ``results.csv`` column); required by ``target_ms``.

    Raises:
        ValueError: ``config.target_ms`` without a ``latency`` function.

    Returns:
        The number of trials evaluated by this call.
    """
    from nas.integrations.optuna_study import make_sampler

    if config.target_ms and latency is None:
        raise ValueError(f"latency: got None with target_ms {config.target_ms:g}; allowed: a function giving an "
                         "architecture's predicted milliseconds (nas.latency.LatencyTable.predict_ms)")
    deadline = None if config.timeout is None else time.monotonic() + config.timeout
    asked_here = False  # the budget stops asking only after one batch of this call: progress is made
    evaluated = 0
    while True:
        first = study.first_unfinished()
        if first is not None:  # a batch cut short by a crash: finish it exactly as it was proposed
            batch_index = first // config.batch
            log(f"finishing batch {batch_index} (from trial {batch_index * config.batch}), asked before the run stopped")
        else:
            total = study.next_number()
            if total >= config.trials:
                break
            if deadline is not None and asked_here and time.monotonic() >= deadline:
                log(f"--timeout {config.timeout:g} s reached after {total} trial(s); rerun the command to go on")
                break
            batch_index = total // config.batch
        start = batch_index * config.batch
        sampler = make_sampler(config.strategy, seed=sampler_seed(config.seed, batch_index),
                               population_size=config.population)
        asked = study.ask_batch(space, min(config.batch, config.trials - start), sampler, first_number=start)
        asked_here = True
        archs = [space.freeze(s) for _, s in asked]
        tags = [{"driver": "sample", "step": number // config.batch, "strategy": config.strategy, TRIAL_TAG: number}
                for number, _ in asked]
        if latency is not None:
            for tag, arch in zip(tags, archs):
                tag["latency_ms"] = latency(arch)
        evaluator.evaluate(archs, tags)
        evaluated += len(archs)
    return evaluated


def cost_cap(space_name: str, max_gflops: float | None = None,
             target_gflops: float | None = None) -> tuple[float | None, str]:
    """The cost cap of a sampling run and where it comes from.

    ``max_gflops`` when given (0: no cap); else the space's largest reference architecture, or twice
    ``target_gflops`` if that is more; ``None`` when there is neither. Candidates over the cap are
    recorded as failed without training (their cost is exact and free).
    """
    from nas.registry import arch_names, load_arch

    if max_gflops is not None:
        return (float(max_gflops) or None), "--max-gflops"
    refs = {name: load_arch(name).cost().gflops for name in arch_names(space_name)}
    cap, origin = None, ""
    if refs:
        name = max(refs, key=refs.get)
        cap, origin = round(refs[name], 4), f"the space's largest reference, {name}; raise with --max-gflops"
    if target_gflops and (cap is None or 2 * target_gflops > cap):
        cap, origin = 2 * float(target_gflops), "2 x --target-gflops; raise with --max-gflops"
    return cap, origin


def fix_clip(space: "Space", clip: tuple[int, int, int]) -> "Space":
    """The sub-space at one clip (and the head dropout at its first value), named ``<space>-FxSxC``:
    what ``xnas search --clip`` searches, so costs compare with a search's."""
    from nas.drivers.tunas.search import default_fixed

    at_clip = space.with_clip(clip, name=f"{space.name}-{'x'.join(map(str, clip))}")
    return at_clip.fix(default_fixed(at_clip))
