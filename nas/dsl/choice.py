"""Choice nodes: the only places where a search space differs from a frozen architecture.

A choice is written inline, where the value would be:

* ``{choice: [v1, v2, ...]}`` -- one of a list of values (categorical);
* ``{range: [low, high], step: s}`` -- a grid ``low, low+s, ..., high`` (categorical);
* ``{range: [low, high]}`` -- any real number in ``[low, high]`` (continuous; ``log: true`` for a
  log-uniform prior when sampling).

Each may carry ``label: NAME`` (the same label in several places makes one shared choice) and
``default: VALUE``. Without a label, the label is the field's path in the document.
"""
from __future__ import annotations

import math
import random as _random
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Choice", "Repeat", "CHOICE_KEYS"]

# Keys a choice mapping may contain; a mapping with ``choice`` or ``range`` is a choice.
CHOICE_KEYS = ("choice", "range", "step", "log", "label", "default")


@dataclass(eq=False)
class Choice:
    """One searchable dimension.

    Attributes:
        label: the dimension's name in samples (path-derived unless given explicitly).
        paths: every document path where this choice stands (more than one when shared).
        values: the allowed values of a categorical choice, in document order; ``None`` if continuous.
        low, high: bounds of a continuous choice.
        log: sample a continuous choice log-uniformly.
        default: the value used by ``Space.default()`` (first value / geometric or arithmetic mid).
    """

    label: str
    paths: list[str]
    values: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    default: Any = None
    explicit_label: bool = False
    spec: Any = field(default=None, repr=False)

    @property
    def is_continuous(self) -> bool:
        """True for a ``{range: [low, high]}`` choice without a step."""
        return self.values is None

    def allowed(self) -> str:
        """Human-readable description of the allowed values."""
        if self.values is None:
            return f"a number in [{self.low}, {self.high}]"
        shown = ", ".join(repr(v) for v in self.values[:12])
        more = f", ... ({len(self.values)} values)" if len(self.values) > 12 else ""
        return f"one of {shown}{more}"

    def admits(self, value: Any) -> bool:
        """Whether ``value`` is one of the allowed values (type-strict for categorical choices)."""
        if self.values is None:
            return (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(value)
                and self.low <= value <= self.high
            )
        return any(type(v) is type(value) and v == value for v in self.values) or (
            # floats written as ints in a sample (2 for 2.0) are the same value
            isinstance(value, int)
            and not isinstance(value, bool)
            and any(isinstance(v, float) and v == value for v in self.values)
        )

    def normalise(self, value: Any) -> Any:
        """Return the canonical form of an admitted value (ints become floats on float choices)."""
        if self.values is None:
            return float(value)
        for v in self.values:
            if v == value and (type(v) is type(value) or isinstance(v, float)):
                return v
        return value

    def sample(self, rng: _random.Random, tilt: float = 0.0) -> Any:
        """Draw a value uniformly (log-uniformly for ``log`` continuous choices).

        ``tilt`` leans the draw towards the large (> 0) or the small (< 0) end of a numeric choice: the
        value at relative rank ``r`` in [0, 1] (its place among the sorted values, or its position in a
        range) is drawn with density proportional to ``exp(tilt * r)``. Non-numeric values (kernels)
        stay uniform. ``tilt = 0`` is the uniform draw, with the same random numbers.
        """
        if not tilt:
            if self.values is not None:
                return self.values[rng.randrange(len(self.values))]
            if self.log:
                return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
            return rng.uniform(self.low, self.high)
        if self.values is not None:
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.values)
            if not numeric or len(self.values) == 1:
                return self.values[rng.randrange(len(self.values))]
            order = sorted(range(len(self.values)), key=lambda i: self.values[i])
            rank = {i: place / (len(order) - 1) for place, i in enumerate(order)}
            weights = [math.exp(tilt * rank[i]) for i in range(len(self.values))]
            return rng.choices(self.values, weights)[0]
        # inverse CDF of the density exp(tilt * r) on [0, 1], mapped onto the range
        r = math.log1p(rng.random() * math.expm1(tilt)) / tilt
        if self.log:
            return math.exp(math.log(self.low) + r * (math.log(self.high) - math.log(self.low)))
        return self.low + r * (self.high - self.low)

    def size(self) -> float:
        """Number of values (``inf`` for a continuous choice)."""
        return math.inf if self.values is None else len(self.values)


@dataclass(eq=False)
class Repeat:
    """A list written as ``{repeat: N, each: ITEM}`` where ``N`` may be a choice.

    ``slots`` holds ``max(N)`` parsed copies of ``ITEM``, each with its own path-derived labels
    (``.../layers/3/kernel``), so the set of dimensions is static: slots past the chosen count are
    sampled anyway and ignored by ``freeze`` (multivariate samplers need a fixed dimension set).
    """

    path: str
    count: "Choice | int"
    slots: list[Any]

    def counts(self) -> tuple[int, ...]:
        """The allowed item counts."""
        if isinstance(self.count, Choice):
            return tuple(self.count.values)  # type: ignore[arg-type]
        return (self.count,)
