"""The proxy budget and a trial's result: plain, torch-free data shared by the trainer, the evaluators,
the Ray / Optuna integrations and the drivers.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from nas.cost import GFLOPS_NOTE
from nas.data.synthetic import DEFAULT_TASK, TASKS

__all__ = ["Proxy", "TrialResult", "AUTO_CPUS", "TWO_THREAD_STEP_GMACS", "auto_cpus_per_trial", "OPTIMIZERS", "LAYOUTS", "MEMORY_REFUSAL", "OK", "FAILED", "PRUNED", "STATUSES",
           "RAY_ERROR_PREFIX", "TUNE_STOPPED_PREFIX", "RETRY_ON_RESUME"]

OPTIMIZERS = ("sgd", "rmsprop", "adamw")
LAYOUTS = ("auto", "channels_last_3d", "channels_first")
# Reason prefix of a trial refused before training because its estimated memory exceeded the limit:
# a verdict about the machine, not the candidate, so a resumed run tries it again.
MEMORY_REFUSAL = "too big to train: "
# Reason prefixes of trials whose worker crashed or whose Tune run stopped: not the candidate's fault.
RAY_ERROR_PREFIX = "ray trial error: "
TUNE_STOPPED_PREFIX = "Tune stopped: "
# A failed trial whose reason starts with one of these is not cached: a resumed run tries it again.
RETRY_ON_RESUME = (RAY_ERROR_PREFIX, TUNE_STOPPED_PREFIX, MEMORY_REFUSAL)

# ``--cpus-per-trial auto``: a trial whose proxy training step is small trains on one thread (two such
# trials run side by side on 2 cores), a larger one on two. The step size (forward multiply-adds x 1e-9 of
# ``batch_size`` clips at the proxy's crop) from which one 2-thread trial trains more clips/s than two
# 1-thread trials, per family, measured on 2 cores (experiments/results/threads_per_trial.md):
# - x3d: 0.12 GMAC ratio 0.77, 0.22 GMAC 1.22 (the expansion's candidates at a quarter of the crop);
# - movinet: 2-thread trials lose up to 0.57 GMAC (ratios 0.42-0.91, the TuNAS retrains at 17 px among
#   them) and win at 1.57 (1.18): its many small non-conv ops (SE, activations) do not share well;
# - tsn2d: wins already at 0.32 GMAC (1.41); smaller steps unmeasured, so x3d's bound is used.
# Multiply-adds per conv call do not unify the families either (MoViNet loses at 9.5 M, X3D wins at 4).
AUTO_CPUS = "auto"
TWO_THREAD_STEP_GMACS = {"x3d": 0.15, "tsn2d": 0.15, "movinet": 1.0}

# A trial's status: it finished (``OK``, ``top1`` is finite), it failed (``FAILED``, ``reason`` says
# why: a diverged loss, a crash, a refusal), or an early-stopping scheduler stopped it (``PRUNED``).
OK, FAILED, PRUNED = "ok", "failed", "pruned"
STATUSES = (OK, FAILED, PRUNED)


@dataclass(frozen=True)
class Proxy:
    """A declared training budget, applied equally to every candidate of a run.

    Attributes:
        steps: optimiser steps.
        batch_size: clips per step.
        optimizer: ``sgd`` (momentum 0.9, Nesterov), ``rmsprop`` (MoViNet's) or ``adamw``.
        lr: peak learning rate (reached after ``warmup_steps``, then cosine to 0).
        warmup_steps: linear warm-up steps.
        weight_decay: L2 decay of conv / linear weights (never BN, biases or scalars).
        label_smoothing: cross-entropy label smoothing.
        size_scale: train and evaluate at ``round(crop * size_scale)`` pixels (frames and stride unchanged).
        train_clips: training-set size for synthetic data (real data: the whole split).
        val_clips: validation-set size for synthetic data.
        val_views: temporal clips per validation video for real data (softmax averaged over views).
        layout: memory format; ``auto`` times both on the first batch and keeps the faster.
        task: synthetic task (``graded``, the default, ``event_order``, ``chiral_motion``, ``shape_direction``,
            ``mixed``; :mod:`nas.data.synthetic`).
        checkpoint_every: steps between mid-trial checkpoints (0: only at the end).
        zero_init_residual: start every residual branch's scale (last BN gamma; MoViNet's ReZero) at
            0 (the X3D and MoViNet recipe) rather than 1. ``False`` by default: with zero scales X3D-S
            stays at chance on the synthetic tasks for 300+ steps, with scale 1 it leaves chance by step
            100-200 (``experiments/results/residual_init.md``).
        precise_bn_batches: training batches on which every BN's running statistics are re-estimated
            with the final weights before validation ("precise BN"; 0: keep the running averages).
            MoViNet's BN momentum (0.01) leaves its running averages hundreds of steps behind the
            weights of a short proxy, so a learning network validated in eval mode scores at chance.
    """

    # Defaults chosen by measurement on 2 CPU cores (issue 3, experiments/results/proxy_check.md and
    # proxy_curves.md): X3D-S at 0.15 of its crop (13 x 24²) stays at chance for ~300 steps, then climbs
    # to 99 % on event_order by step 1500 (~7 min); 1000 steps ended at 84-88 % (two class pairs split last).
    steps: int = 1500
    batch_size: int = 16
    optimizer: str = "adamw"
    lr: float = 2e-3
    warmup_steps: int = 20
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    size_scale: float = 0.15
    train_clips: int = 2048
    val_clips: int = 2560  # binomial standard error of a top-1 <= 1 point at any accuracy
    val_views: int = 1
    layout: str = "auto"
    task: str = DEFAULT_TASK
    checkpoint_every: int = 100
    zero_init_residual: bool = False
    precise_bn_batches: int = 8

    def __post_init__(self) -> None:
        checks = [
            ("steps", self.steps, self.steps >= 1, "an integer >= 1"),
            ("batch_size", self.batch_size, self.batch_size >= 1, "an integer >= 1"),
            ("optimizer", self.optimizer, self.optimizer in OPTIMIZERS, "one of " + ", ".join(OPTIMIZERS)),
            ("lr", self.lr, self.lr > 0 and math.isfinite(self.lr), "a positive number"),
            ("warmup_steps", self.warmup_steps, 0 <= self.warmup_steps, "an integer >= 0"),
            ("weight_decay", self.weight_decay, self.weight_decay >= 0, "a number >= 0"),
            ("label_smoothing", self.label_smoothing, 0 <= self.label_smoothing < 1, "a number in [0, 1)"),
            ("size_scale", self.size_scale, 0 < self.size_scale <= 1, "a number in (0, 1]"),
            ("train_clips", self.train_clips, self.train_clips >= 1, "an integer >= 1"),
            ("val_clips", self.val_clips, self.val_clips >= 1, "an integer >= 1"),
            ("val_views", self.val_views, self.val_views >= 1, "an integer >= 1"),
            ("layout", self.layout, self.layout in LAYOUTS, "one of " + ", ".join(LAYOUTS)),
            ("task", self.task, self.task in TASKS, "one of " + ", ".join(TASKS)),
            ("zero_init_residual", self.zero_init_residual, isinstance(self.zero_init_residual, bool),
             "true or false"),
            ("precise_bn_batches", self.precise_bn_batches,
             isinstance(self.precise_bn_batches, int) and not isinstance(self.precise_bn_batches, bool)
             and self.precise_bn_batches >= 0, "an integer >= 0"),
        ]
        for name, value, ok, allowed in checks:
            if not ok:
                raise ValueError(f"proxy.{name}: got {value!r}; allowed: {allowed}")

    def train_crop(self, crop: int) -> int:
        """The side in pixels this proxy trains and evaluates a clip of side ``crop`` at."""
        return max(8, round(crop * self.size_scale))

    def step_gmacs(self, arch: Any) -> float:
        """Forward multiply-adds x 1e-9 of one training step of ``arch`` (``batch_size`` clips at
        :meth:`train_crop`)."""
        return self.batch_size * arch.cost(size=self.train_crop(arch.clip.crop)).macs / 1e9

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Proxy":
        """Build from plain data; unknown keys are an error naming the known ones. A field added after
        a document was written takes the value that document was trained with (:data:`LEGACY_FIELDS`)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"proxy.{unknown[0]}: unknown key; allowed: {', '.join(sorted(known))}")
        return cls(**{**LEGACY_FIELDS, **raw})

    @property
    def hash(self) -> str:
        """Content hash: same proxy, same hash (part of a trial's cache key). A field at its legacy
        value is left out, so a proxy written before the field existed keeps its hash and its cache."""
        fields = {k: v for k, v in self.to_dict().items() if not (k in LEGACY_FIELDS and v == LEGACY_FIELDS[k])}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


# Fields added to Proxy after runs were recorded, with the behaviour those runs had.
LEGACY_FIELDS: dict[str, Any] = {"zero_init_residual": True, "precise_bn_batches": 0}


def auto_cpus_per_trial(arch: Any, proxy: Proxy, cores: int) -> int:
    """CPUs (and torch threads) a trial of ``arch`` under ``proxy`` takes with ``--cpus-per-trial auto``:
    1 when one training step is smaller than its family's bound (:data:`TWO_THREAD_STEP_GMACS`; a
    family without one uses X3D's) or the machine has one core, else 2."""
    bound = TWO_THREAD_STEP_GMACS.get(arch.family, TWO_THREAD_STEP_GMACS["x3d"])
    if cores <= 1 or proxy.step_gmacs(arch) < bound:
        return 1
    return 2


@dataclass
class TrialResult:
    """What one trial measured. ``status`` is one of :data:`STATUSES`: ``ok``, ``failed`` or ``pruned``
    (then ``reason`` says why)."""

    arch_name: str
    arch_hash: str
    status: str
    reason: str = ""
    top1: float = float("nan")
    loss: float = float("nan")
    gflops: float = float("nan")
    params: int = 0
    steps: int = 0
    wall_s: float = 0.0
    train_clips_per_s: float = float("nan")
    size: int = 0
    frames: int = 0
    layout: str = ""
    seed: int = 0
    proxy_hash: str = ""
    data: str = ""
    skipped_files: list[str] = field(default_factory=list)
    workers: int = 1  # data-parallel processes that trained it (the same global batch at any count)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status: got {self.status!r}; allowed: {', '.join(STATUSES)}")

    @property
    def ok(self) -> bool:
        """Whether the trial finished with a score."""
        return self.status == OK

    @property
    def retry_on_resume(self) -> bool:
        """Whether a resumed run should try this trial again (its failure was not the candidate's)."""
        return self.status != OK and self.reason.startswith(RETRY_ON_RESUME)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (adds the GFLOPs convention)."""
        return {**dataclasses.asdict(self), "gflops_convention": GFLOPS_NOTE}
