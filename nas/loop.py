"""The one training loop: the proxy trainer (:func:`nas.train.evaluate`), the TuNAS supernet
(:func:`nas.drivers.tunas.search.run_search`) and the experiments all step through :func:`run_steps`.

Each step: set every parameter group's learning rate from the schedule (linear warm-up, then a cosine
to zero: :func:`nas.optim.warmup_cosine`), clear the gradients, let ``step_fn`` compute the loss and
call ``backward`` (once, or once per sampled architecture of a supernet), stop with a reason if the
loss is not finite, take the optimiser step, then ``after_step`` (e.g. the controller's update),
the progress line and the checkpoint cadence. A resumed training starts at ``start`` and, because
batches and seeds are functions of the step, continues exactly as the uninterrupted one would have.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from nas.optim import warmup_cosine
from nas.progress import ProgressLine

__all__ = ["LoopResult", "run_steps"]


@dataclass
class LoopResult:
    """How a run of steps ended.

    Attributes:
        steps_done: the steps finished (``start`` + those run here).
        failure: why it stopped early (a non-finite loss, with its step), or ``""``.
        train_s: seconds spent in the training part of the steps (schedule, step_fn, optimiser step),
            without ``after_step``, checkpoints or the progress line.
        last: the metrics of the last step run (``{}`` if none).
    """

    steps_done: int
    failure: str = ""
    train_s: float = 0.0
    last: dict[str, Any] = field(default_factory=dict)


def run_steps(optimizer: torch.optim.Optimizer, step_fn: Callable[[int], dict[str, Any]], *, start: int, end: int,
              total: int, base_lr: float, warmup: int, checkpoint_every: int = 0,
              save: Callable[[int, LoopResult], None] | None = None, checkpoint_at_end: bool = False,
              after_step: Callable[[int, dict[str, Any]], None] | None = None,
              describe: Callable[[dict[str, Any]], str] | None = None, progress: bool | None = False,
              label: str = "train") -> LoopResult:
    """Run steps ``start .. end - 1`` of a ``total``-step schedule.

    Args:
        optimizer: every parameter group's ``lr`` is set to ``base_lr`` x the schedule each step.
        step_fn: ``step_fn(step) -> metrics``: forward, loss, ``backward``; the metrics must hold a
            float ``loss`` (checked for finiteness before the optimiser step).
        start, end, total: the steps to run and the schedule's length (``end < total`` stops early).
        base_lr, warmup: the peak learning rate and the warm-up steps of the schedule.
        checkpoint_every: call ``save(done, so_far)`` after every this many steps (0: never mid-way).
        save: writes a checkpoint after ``done`` steps (``so_far``: this call's :class:`LoopResult`
            up to now, e.g. its training seconds).
        checkpoint_at_end: also ``save(end, so_far)`` after the last step run.
        after_step: ``after_step(done, metrics)`` after the optimiser step and before the checkpoint.
        describe: the progress line's text for a step's metrics (default ``loss X``).
        progress: draw the progress line (``None``: when stderr is a terminal).
        label: the progress line's label.
    """
    bar = ProgressLine(progress, total, label)
    describe = describe or (lambda m: f"loss {m['loss']:.3f}")
    out = LoopResult(steps_done=start)
    try:
        for step in range(start, end):
            t_step = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = base_lr * warmup_cosine(step, total, warmup)
            optimizer.zero_grad(set_to_none=True)
            metrics = step_fn(step)
            loss = float(metrics["loss"])
            if not math.isfinite(loss):
                out.failure = f"non-finite loss ({loss}) at step {step}"
                out.steps_done = step
                return out
            optimizer.step()
            out.train_s += time.perf_counter() - t_step
            done = step + 1
            out.steps_done, out.last = done, metrics
            if after_step is not None:
                after_step(done, metrics)
            bar.update(done, describe(metrics))
            if save is not None and ((checkpoint_every and done % checkpoint_every == 0 and done < end)
                                     or (checkpoint_at_end and done == end)):
                save(done, out)
        return out
    finally:
        bar.close()
