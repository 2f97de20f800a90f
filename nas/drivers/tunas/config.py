"""The TuNAS search's configuration, torch-free: the CLI builds its flags' defaults from it, so the
defaults live in one place and ``xnas search --help`` starts without importing torch."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from nas.data.synthetic import DEFAULT_TASK

__all__ = ["SearchConfig", "REWARDS", "OPTIMIZERS", "LAYOUTS", "SEARCH_DEFAULTS"]

LAYOUTS = ("channels_first", "channels_last_3d")  # the supernet's memory layout (layout below)
REWARDS = ("abs", "mnas", "mnas_hard")  # the controller's reward forms (nas.drivers.tunas.controller)
OPTIMIZERS = ("adam", "rmsprop_tf")  # the shared weights' optimiser (nas.drivers.tunas.search)


@dataclass(frozen=True)
class SearchConfig:
    """Everything that decides a search's result (its hash names the checkpoint it may resume).

    Attributes:
        target_gflops: the cost target T0 (GFLOPs = multiply-adds x 1e-9 at the fixed clip); ``None``
            with ``target_ms``.
        fixed: values of the choices the search does not decide: the clip (the supernet trains at
            one input size) and the head dropout.
        steps: search steps T (one architecture per step).
        batch_size: training clips per architecture per step (TuNAS's per-core batch); each
            architecture's held-out batch is ``val_multiplier`` x larger.
        archs_per_step: K architectures sampled per step (TuNAS: one per TPU core), each trained on
            its own batch; their gradients are averaged into one weight update and their rewards
            into one controller update (baseline on the mean reward).
        val_multiplier: TuNAS: 4.
        size_scale: the supernet trains at ``round(crop * size_scale)`` pixels (costs stay full-size).
        lr: peak learning rate of the shared weights (Adam; see ``optimizer``).
        optimizer: ``adam`` (default: a few hundred CPU steps) or ``rmsprop_tf`` (TuNAS's RMSProp,
            decay 0.9, momentum 0.9, epsilon 1.0 inside the square root, for long searches).
        weight_decay: masked L2 coefficient in the loss (TuNAS 4e-5; ``wd / 2 * sum(w**2)``).
        label_smoothing: cross-entropy label smoothing (TuNAS 0.1).
        rl_lr: base learning rate of the controller (Adam beta1 = 0; x10 by the end).
        beta: the reward's cost weight (abs; TuNAS -0.10). -0.25 here: once the supernet learns, the
            policy collapses onto the paths it trained, and at -0.10 a miss of 8 % costs 0.008 of reward,
            far inside Q's noise on a held-out batch (SE about 0.05), so the argmax landed -8.6, -2.8 and
            -6.7 % off the target over 3 seeds; at -0.25, -1.9, +3.1 and -0.4 %.
        reward: ``abs`` (TuNAS), ``mnas`` or ``mnas_hard``.
        warmup_fraction: op / filter warm-up fraction and RL delay (TuNAS 0.25; 0.05 here, where the
            warm-up's largest paths cost 10-20x a target-sized step).
        task: synthetic task; train_clips / heldout_clips: synthetic split sizes.
        seed: seeds the supernet init, the batches and the controller.
        expected_samples: Monte-Carlo draws for the logged expected cost.
        log_every: steps between trajectory rows; checkpoint_every: steps between checkpoints (one is
            skipped while the last is under a minute old: :data:`nas.drivers.tunas.search.CHECKPOINT_MIN_INTERVAL_S`).
        target_ms: search against predicted latency instead (milliseconds per clip at the fixed clip,
            batch 1): the reward's cost is :func:`run_search`'s ``latency`` of each sampled architecture.
        zero_init_residual: start every layer's ReZero scalar at 0 (the standalone MoViNet's init)
            rather than 1 (:class:`~nas.proxy.Proxy`'s field of the same name).
        layout: the supernet's and its batches' memory layout (default ``channels_last_3d``). It makes
            one search step 1.29-1.33x faster on the warm-up path and 1.08-1.17x (median) near the default
            target at 14 px on 2 cores (``experiments/tunas/bench_supernet_layout.py``), with gradients equal to
            ``channels_first``'s (tested in float64). Its supernets once learned less (49.6-72.3 % final
            ``supernet_top1`` against 73.4-89.1 % over 5 seeds each): torch's CPU batch_norm backward
            was wrong on the 1 x 1-map convs' channels-last strides, fixed in
            :func:`nas.models.layers.conv3d_same` (experiments/tunas/README.md).
    """

    target_gflops: float | None
    fixed: Mapping[str, Any] = field(default_factory=dict)
    steps: int = 1000
    batch_size: int = 16
    archs_per_step: int = 1
    val_multiplier: int = 4
    size_scale: float = 0.125
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    rl_lr: float = 0.15
    beta: float = -0.25
    reward: str = "abs"
    warmup_fraction: float = 0.05
    task: str = DEFAULT_TASK
    train_clips: int = 512
    heldout_clips: int = 256
    seed: int = 0
    expected_samples: int = 32
    log_every: int = 5
    checkpoint_every: int = 30
    target_ms: float | None = None
    zero_init_residual: bool = False
    layout: str = "channels_last_3d"

    def __post_init__(self) -> None:
        def positive(v: Any) -> bool:
            return isinstance(v, (int, float)) and v > 0 and math.isfinite(v)

        checks = [
            ("target_gflops", self.target_gflops,
             positive(self.target_gflops) if self.target_ms is None else self.target_gflops is None,
             "a positive number (None with target_ms: one cost target)"),
            ("target_ms", self.target_ms, self.target_ms is None or positive(self.target_ms),
             "a positive number of milliseconds or None"),
            ("steps", self.steps, self.steps >= 1, "an integer >= 1"),
            ("batch_size", self.batch_size, self.batch_size >= 1, "an integer >= 1"),
            ("archs_per_step", self.archs_per_step, self.archs_per_step >= 1, "an integer >= 1"),
            ("val_multiplier", self.val_multiplier, self.val_multiplier >= 1, "an integer >= 1"),
            ("size_scale", self.size_scale, 0 < self.size_scale <= 1, "a number in (0, 1]"),
            ("lr", self.lr, self.lr > 0, "a positive number"),
            ("optimizer", self.optimizer, self.optimizer in OPTIMIZERS, "one of " + ", ".join(OPTIMIZERS)),
            ("weight_decay", self.weight_decay, self.weight_decay >= 0, "a number >= 0"),
            ("rl_lr", self.rl_lr, self.rl_lr >= 0, "a number >= 0"),
            ("reward", self.reward, self.reward in REWARDS, "one of " + ", ".join(REWARDS)),
            ("warmup_fraction", self.warmup_fraction, 0 <= self.warmup_fraction < 1, "a number in [0, 1)"),
            ("log_every", self.log_every, self.log_every >= 1, "an integer >= 1"),
            ("checkpoint_every", self.checkpoint_every, self.checkpoint_every >= 1, "an integer >= 1"),
            ("zero_init_residual", self.zero_init_residual, isinstance(self.zero_init_residual, bool),
             "true or false"),
            ("layout", self.layout, self.layout in LAYOUTS, "one of " + ", ".join(LAYOUTS)),
        ]
        for name, value, ok, allowed in checks:
            if not ok:
                raise ValueError(f"search.{name}: got {value!r}; allowed: {allowed}")

    @property
    def target(self) -> float:
        """The cost target in the search's unit: GFLOPs, or predicted milliseconds with ``target_ms``."""
        return float(self.target_ms if self.target_ms is not None else self.target_gflops)  # type: ignore[arg-type]

    @property
    def target_label(self) -> str:
        """The target as names and folders show it: ``0.18`` (GFLOPs) or ``40ms``."""
        return f"{self.target:g}ms" if self.target_ms is not None else f"{self.target:g}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields (``target_ms`` only when set, ``zero_init_residual`` only when
        False, ``layout`` only when ``channels_last_3d``: configurations from before they existed keep
        their hash, so their checkpoints still resume; the default layout is therefore written)."""
        d = dataclasses.asdict(self)
        d["fixed"] = dict(self.fixed)
        if d["target_ms"] is None:
            del d["target_ms"]
        if d["zero_init_residual"]:
            del d["zero_init_residual"]
        if d["layout"] == "channels_first":
            del d["layout"]
        return d

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "SearchConfig":
        """The inverse of :meth:`to_dict` (a missing ``zero_init_residual`` is a search that started
        its ReZero scalars at 0, a missing ``layout`` one in ``channels_first``: written before the
        field existed, or with it set)."""
        return cls(**{"zero_init_residual": True, "layout": "channels_first", **dict(raw)})

    @property
    def hash(self) -> str:
        """Content hash (names the checkpoint a rerun may resume)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16]


SEARCH_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(SearchConfig)
                                   if f.default is not dataclasses.MISSING}
"""Each :class:`SearchConfig` field's default, for the CLI's flags."""
