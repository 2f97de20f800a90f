"""Field specifications that validate a parsed YAML/JSON document and find its choices.

A family (``x3d``, ``movinet``) describes its documents with these specs: a :class:`Record` of named
fields whose leaves are scalar specs (:class:`Int`, :class:`Float`, :class:`Enum`, :class:`Kernel`, ...),
with :class:`ListOf` for fixed lists and :class:`RepeatList` for lists that may be written as
``{repeat: N, each: ITEM}``. Parsing returns the same nest of dicts / lists / scalars with
:class:`~nas.dsl.choice.Choice` and :class:`~nas.dsl.choice.Repeat` nodes where the document has
choices, and raises :class:`~nas.errors.DSLError` (path, value, what is allowed) for anything else.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from nas.dsl.choice import CHOICE_KEYS, Choice, Repeat
from nas.errors import DSLError

__all__ = [
    "ParseContext",
    "Spec",
    "Int",
    "Float",
    "Str",
    "Enum",
    "Bool",
    "Kernel",
    "IntTuple",
    "Record",
    "Field",
    "ListOf",
    "RepeatList",
    "join",
]


def join(path: str, key: str | int) -> str:
    """Append one component to a slash path."""
    return f"{path}/{key}" if path else str(key)


def _type_name(value: Any) -> str:
    return type(value).__name__


@dataclass
class ParseContext:
    """State shared while parsing one document.

    Attributes:
        allow_choices: ``False`` when parsing an architecture (no choice may appear).
        labels: label -> Choice, so the same label in several places becomes one shared choice.
    """

    allow_choices: bool = True
    labels: dict[str, Choice] = field(default_factory=dict)


class Spec:
    """Base class of all field specifications."""

    searchable = False

    def parse(self, raw: Any, path: str, ctx: ParseContext) -> Any:
        """Validate ``raw`` (plain YAML data) and return the parsed node."""
        raise NotImplementedError

    def describe(self) -> str:
        """What is allowed, for error messages."""
        raise NotImplementedError


class Scalar(Spec):
    """A leaf value; searchable scalars may be written as a choice instead of a value."""

    def __init__(self, *, searchable: bool = True) -> None:
        self.searchable = searchable

    def check(self, value: Any, path: str) -> Any:
        """Validate one concrete value and return its canonical form."""
        raise NotImplementedError

    def parse(self, raw: Any, path: str, ctx: ParseContext) -> Any:
        if isinstance(raw, dict) and ("choice" in raw or "range" in raw):
            if not self.searchable:
                raise DSLError(path, raw, f"a fixed value ({self.describe()}); this field cannot be searched")
            if not ctx.allow_choices:
                raise DSLError(
                    path, raw, f"a fixed value ({self.describe()})", reason="an architecture holds no choices"
                )
            return parse_choice(self, raw, path, ctx)
        return self.check(raw, path)

    # Continuous ranges are only meaningful for numbers.
    continuous_ok = False


class Int(Scalar):
    """An integer in ``[low, high]``."""

    def __init__(self, low: int | None = None, high: int | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.low, self.high = low, high

    def describe(self) -> str:
        lo = "-inf" if self.low is None else self.low
        hi = "inf" if self.high is None else self.high
        return f"an integer in [{lo}, {hi}]"

    def check(self, value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer() and math.isfinite(value):
                value = int(value)
            else:
                raise DSLError(path, value, self.describe())
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise DSLError(path, value, self.describe())
        return value


class Float(Scalar):
    """A finite real number in ``[low, high]``; integers are accepted and stored as floats."""

    continuous_ok = True

    def __init__(self, low: float | None = None, high: float | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.low, self.high = low, high

    def describe(self) -> str:
        lo = "-inf" if self.low is None else self.low
        hi = "inf" if self.high is None else self.high
        return f"a number in [{lo}, {hi}]"

    def check(self, value: Any, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise DSLError(path, value, self.describe())
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise DSLError(path, value, self.describe())
        return float(value)


class Str(Scalar):
    """A string, optionally matching a regular expression."""

    def __init__(self, pattern: str | None = None, what: str = "a string", **kw: Any) -> None:
        super().__init__(**kw)
        self.pattern = re.compile(pattern) if pattern else None
        self.what = what

    def describe(self) -> str:
        return self.what

    def check(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or (self.pattern and not self.pattern.fullmatch(value)):
            raise DSLError(path, value, self.describe())
        return value


class Enum(Scalar):
    """One of a fixed set of values."""

    def __init__(self, values: Sequence[Any], **kw: Any) -> None:
        super().__init__(**kw)
        self.values = tuple(values)

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)

    def check(self, value: Any, path: str) -> Any:
        for v in self.values:
            if type(v) is type(value) and v == value:
                return list(v) if isinstance(v, list) else v  # never hand out the schema's own list
        raise DSLError(path, value, self.describe())


class Bool(Enum):
    """``true`` or ``false``."""

    def __init__(self, **kw: Any) -> None:
        super().__init__((False, True), **kw)


class Kernel(Scalar):
    """A 3D kernel written ``TxHxW`` (``5x3x3``), each an odd positive integer."""

    _re = re.compile(r"([1-9][0-9]?)x([1-9][0-9]?)x([1-9][0-9]?)")

    def describe(self) -> str:
        return "a kernel 'TxHxW' of odd sizes, e.g. '1x3x3' or '5x3x3'"

    def check(self, value: Any, path: str) -> str:
        m = self._re.fullmatch(value) if isinstance(value, str) else None
        if not m or any(int(g) % 2 == 0 for g in m.groups()):
            raise DSLError(path, value, self.describe())
        return value


class IntTuple(Scalar):
    """A fixed-length list of integers in ``[low, high]`` (e.g. a stride ``[1, 2, 2]``)."""

    def __init__(self, length: int, low: int = 1, high: int | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.length, self.low, self.high = length, low, high

    def describe(self) -> str:
        hi = "" if self.high is None else f"..{self.high}"
        return f"a list of {self.length} integers in {self.low}{hi}"

    def check(self, value: Any, path: str) -> tuple[int, ...]:
        ok = isinstance(value, (list, tuple)) and len(value) == self.length
        if ok:
            for v in value:
                if isinstance(v, bool) or not isinstance(v, int) or v < self.low or (
                    self.high is not None and v > self.high
                ):
                    ok = False
        if not ok:
            raise DSLError(path, value, self.describe())
        return list(value)


def parse_choice(spec: Scalar, raw: dict, path: str, ctx: ParseContext) -> Choice:
    """Parse a ``{choice: ...}`` / ``{range: ...}`` mapping standing where ``spec`` expects a value."""
    unknown = [k for k in raw if k not in CHOICE_KEYS]
    if unknown:
        raise DSLError(join(path, str(unknown[0])), raw[unknown[0]], "choice keys " + ", ".join(CHOICE_KEYS),
                       reason="unknown key")
    if "choice" in raw and "range" in raw:
        raise DSLError(path, raw, "either 'choice' or 'range', not both")
    label = raw.get("label", path)
    if not isinstance(label, str) or not label:
        raise DSLError(join(path, "label"), label, "a non-empty string")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise DSLError(join(path, "log"), log, "true or false")

    choice = Choice(label=label, paths=[path], log=log, explicit_label="label" in raw, spec=spec)
    if "choice" in raw:
        values = raw["choice"]
        if not isinstance(values, list) or not values:
            raise DSLError(join(path, "choice"), values, "a non-empty list of values")
        parsed = [spec.check(v, join(join(path, "choice"), i)) for i, v in enumerate(values)]
        if len({repr(v) for v in parsed}) != len(parsed):
            raise DSLError(join(path, "choice"), values, "a list without repeated values")
        if "step" in raw:
            raise DSLError(join(path, "step"), raw["step"], "'step' only with 'range'")
        choice.values = tuple(parsed)
    else:
        bounds = raw["range"]
        if (
            not isinstance(bounds, list)
            or len(bounds) != 2
            or any(isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) for b in bounds)
            or bounds[0] > bounds[1]
        ):
            raise DSLError(join(path, "range"), bounds, "[low, high] with low <= high")
        low, high = bounds
        if "step" in raw:
            step = raw["step"]
            if isinstance(step, bool) or not isinstance(step, (int, float)) or not (step > 0) or not math.isfinite(step):
                raise DSLError(join(path, "step"), step, "a positive number")
            n = int(math.floor((high - low) / step + 1e-9)) + 1
            if n > 100_000:
                raise DSLError(join(path, "step"), step, "a step giving at most 100000 values")
            integral = all(isinstance(x, int) for x in (low, high, step))
            grid = [low + i * step if integral else round(low + i * step, 12) for i in range(n)]
            choice.values = tuple(spec.check(v, join(path, "range")) for v in grid)
            if log:
                raise DSLError(join(path, "log"), log, "'log' only on a continuous range (no step)")
        else:
            if not spec.continuous_ok:
                raise DSLError(join(path, "range"), bounds, f"a grid with 'step' ({spec.describe()})",
                               reason="a continuous range needs a real-valued field")
            spec.check(low, join(path, "range"))
            spec.check(high, join(path, "range"))
            if log and low <= 0:
                raise DSLError(join(path, "range"), bounds, "positive bounds with log: true")
            choice.low, choice.high = float(low), float(high)
    if "default" in raw:
        if not choice.admits(raw["default"]):
            raise DSLError(join(path, "default"), raw["default"], choice.allowed())
        choice.default = choice.normalise(raw["default"])
    elif choice.values is not None:
        choice.default = choice.values[0]
    else:
        choice.default = (
            math.sqrt(choice.low * choice.high) if log else (choice.low + choice.high) / 2  # type: ignore[operator]
        )

    shared = ctx.labels.get(label)
    if shared is None:
        ctx.labels[label] = choice
        return choice
    same = (shared.values, shared.low, shared.high) == (choice.values, choice.low, choice.high)
    if not same:
        raise DSLError(path, raw, f"the same values as the other use of label {label!r} at {shared.paths[0]}",
                       reason="a shared label must have the same choices everywhere")
    shared.paths.append(path)
    return shared


@dataclass
class Field:
    """One field of a :class:`Record`: its spec, and its default when the field may be left out."""

    spec: Spec
    required: bool = True
    default: Any = None
    doc: str = ""


class Record(Spec):
    """A mapping with known keys. Unknown keys are rejected with the list of known ones."""

    def __init__(self, fields: dict[str, Field | Spec], what: str = "a mapping") -> None:
        self.fields = {k: f if isinstance(f, Field) else Field(f) for k, f in fields.items()}
        self.what = what

    def describe(self) -> str:
        return f"{self.what} with keys " + ", ".join(self.fields)

    def parse(self, raw: Any, path: str, ctx: ParseContext) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise DSLError(path, raw, self.describe())
        for key in raw:
            if key not in self.fields:
                raise DSLError(join(path, str(key)), raw[key], "known keys: " + ", ".join(self.fields),
                               reason="unknown key")
        out: dict[str, Any] = {}
        for key, fld in self.fields.items():
            if key in raw:
                out[key] = fld.spec.parse(raw[key], join(path, key), ctx)
            elif fld.required:
                raise DSLError(join(path, key), None, fld.spec.describe(), reason="missing required key")
            elif fld.default is not None:
                out[key] = fld.spec.parse(fld.default, join(path, key), ctx)
        return out


class ListOf(Spec):
    """A list of items (length in ``[min_len, max_len]``)."""

    def __init__(self, item: Spec, min_len: int = 0, max_len: int | None = None) -> None:
        self.item, self.min_len, self.max_len = item, min_len, max_len

    def describe(self) -> str:
        hi = "" if self.max_len is None else f" and at most {self.max_len}"
        return f"a list of at least {self.min_len}{hi} items"

    def parse(self, raw: Any, path: str, ctx: ParseContext) -> list[Any]:
        if not isinstance(raw, list) or len(raw) < self.min_len or (
            self.max_len is not None and len(raw) > self.max_len
        ):
            raise DSLError(path, raw, self.describe())
        return [self.item.parse(v, join(path, i), ctx) for i, v in enumerate(raw)]


class RepeatList(ListOf):
    """A list that may also be written ``{repeat: N, each: ITEM}``; ``N`` may be a choice of counts.

    In an architecture a fixed ``repeat`` is expanded into an explicit list.
    """

    _count = Int(1, 64)

    def describe(self) -> str:
        return super().describe() + ", or {repeat: N, each: ITEM}"

    def parse(self, raw: Any, path: str, ctx: ParseContext) -> Any:
        if not isinstance(raw, dict):
            return super().parse(raw, path, ctx)
        for key in raw:
            if key not in ("repeat", "each"):
                raise DSLError(join(path, str(key)), raw[key], "known keys: repeat, each", reason="unknown key")
        if "repeat" not in raw or "each" not in raw:
            raise DSLError(path, raw, "{repeat: N, each: ITEM}", reason="missing 'repeat' or 'each'")
        count_path = join(path, "repeat")
        count = self._count.parse(raw["repeat"], count_path, ctx)
        counts = count.values if isinstance(count, Choice) else (count,)
        if isinstance(count, Choice) and count.is_continuous:
            raise DSLError(count_path, raw["repeat"], "a count or a choice of counts")
        bad = [c for c in counts if c < max(self.min_len, 1) or (self.max_len is not None and c > self.max_len)]
        if bad:
            raise DSLError(count_path, bad[0], self.describe())
        slots = [self.item.parse(raw["each"], join(path, i), ctx) for i in range(max(counts))]
        if not isinstance(count, Choice):
            return slots
        return Repeat(path=path, count=count, slots=slots)
