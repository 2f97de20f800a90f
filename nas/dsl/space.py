"""Search spaces: a document with choices, and the operations every driver and sampler needs."""
from __future__ import annotations

import math
import random as _random
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from nas.dsl.arch import Arch
from nas.dsl.choice import Choice, Repeat
from nas.dsl.document import dump_yaml, read_document, read_text
from nas.dsl.schema import join
from nas.errors import DSLError

__all__ = ["Space"]

Sample = dict[str, Any]


def _iter_choices(node: Any) -> Iterator[Choice]:
    """Every choice in document pre-order (a repeat's count before its slots)."""
    if isinstance(node, Choice):
        yield node
    elif isinstance(node, Repeat):
        if isinstance(node.count, Choice):
            yield node.count
        for slot in node.slots:
            yield from _iter_choices(slot)
    elif isinstance(node, dict):
        for v in node.values():
            yield from _iter_choices(v)
    elif isinstance(node, list):
        for v in node:
            yield from _iter_choices(v)


def _to_raw(node: Any, fixed: Mapping[str, Any] | None = None) -> Any:
    """A parsed space tree back to plain data (choices as ``{choice: ...}`` mappings; a choice whose
    label is in ``fixed`` as that value)."""
    if isinstance(node, Choice):
        if fixed and node.label in fixed:
            return node.normalise(fixed[node.label])
        raw: dict[str, Any] = (
            {"choice": list(node.values)} if node.values is not None else {"range": [node.low, node.high]}
        )
        if node.log:
            raw["log"] = True
        if node.explicit_label:
            raw["label"] = node.label
        return raw
    if isinstance(node, Repeat):
        return {"repeat": _to_raw(node.count), "each": _to_raw(node.slots[0])}
    if isinstance(node, dict):
        return {k: _to_raw(v, fixed) for k, v in node.items()}
    if isinstance(node, list):
        return [_to_raw(v, fixed) for v in node]
    return node


class Space:
    """A search space: a family document whose values may be choices.

    The dimension set is static: ``dims()`` lists every choice, including those inside repeat
    slots that a given sample may leave unused (``freeze`` ignores them).
    """

    def __init__(self, doc: dict[str, Any], labels: dict[str, Choice], *, file: str | None = None) -> None:
        """Wrap a parsed document. Use :func:`nas.load_space` or :meth:`from_yaml`."""
        self.doc = doc
        self.file = file
        self._dims = {c.label: c for c in _iter_choices(doc)}

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: Any, *, file: str | None = None) -> "Space":
        """Validate plain data (as read from YAML/JSON) and return the space."""
        from nas.families import parse

        doc, ctx = parse(raw, allow_choices=True, file=file)
        return cls(doc, ctx.labels, file=file)

    @classmethod
    def from_yaml(cls, text: str, *, file: str | None = None) -> "Space":
        """Parse a YAML (or JSON) document."""
        return cls.from_dict(read_text(text, file), file=file)

    @classmethod
    def load(cls, path: str | Path) -> "Space":
        """Read a space document from a file."""
        return cls.from_dict(read_document(path), file=str(path))

    @property
    def name(self) -> str:
        """The space's name."""
        return self.doc["name"]

    @property
    def family(self) -> str:
        """The family whose schema the document follows."""
        return self.doc["family"]

    def __repr__(self) -> str:
        return f"Space({self.name!r}, family={self.family!r}, dims={len(self._dims)})"

    def to_dict(self) -> dict[str, Any]:
        """The space document as plain data (choices as ``{choice: ...}``, repeats as ``{repeat, each}``):
        what :meth:`from_dict` reads back."""
        return _to_raw(self.doc)

    def to_yaml(self) -> str:
        """The space document as YAML (repeats written back as ``{repeat, each}``)."""
        return dump_yaml(self.to_dict())

    def with_clip(self, clip: tuple[int, int, int], name: str | None = None) -> "Space":
        """The space at one clip: its ``clip`` field set to ``clip`` = (frames, frame_stride, crop).

        What a search trains and counts cost at. A value need not be one of the space's clip choices
        (a search at stride 10 over a space whose strides are 1-6) but must be one the family allows.
        ``name`` names the new space (default: this space's name). Raises :class:`DSLError` naming the
        field and what is allowed, also when the family has no ``clip`` field (x3d's clip is a factor).
        """
        doc = self.to_dict()
        if not isinstance(doc.get("clip"), dict):
            raise DSLError("clip", list(clip), f"a space with a clip field (family {self.family!r} has none)")
        doc["clip"] = dict(zip(("frames", "frame_stride", "crop"), clip))
        if name:
            doc["name"] = name
        at_clip = Space.from_dict(doc)  # a bad clip is the caller's value, not the file's
        at_clip.file = self.file
        return at_clip

    def fix(self, values: Mapping[str, Any], name: str | None = None) -> "Space":
        """The sub-space with some choices set to one value each (e.g. the clip a search trains at).

        ``values`` maps labels to values; each must be one of the space's labels outside a repeat
        (a repeat writes one ``each`` for all its slots, so a per-slot choice cannot be fixed alone)
        and an allowed value. ``name`` names the new space (default: this space's name).
        Raises :class:`DSLError` naming the label, the value and what is allowed.
        """
        fixable = {c.label for c in _iter_choices(_outside_repeats(self.doc))}
        for label, value in values.items():
            if label not in self._dims:
                raise DSLError(str(label), value, f"labels of space {self.name!r}", reason="unknown label")
            if label not in fixable:
                raise DSLError(str(label), value, "a choice outside a repeat", reason="a per-slot choice")
            if not self._dims[label].admits(value):
                raise DSLError(label, value, self._dims[label].allowed())
        doc = _to_raw(self.doc, values)  # repeats are written unfixed: no fixable label is inside one
        if name:
            doc["name"] = name
        return Space.from_dict(doc, file=self.file)

    # -- the sampler contract -----------------------------------------------------------------
    def dims(self) -> dict[str, Choice]:
        """Every choice, by label, in document order (shared labels appear once)."""
        return dict(self._dims)

    def random(self, rng: _random.Random | int | None = None, tilt: float = 0.0) -> Sample:
        """A uniformly random sample over all dimensions (unused repeat slots included).

        ``tilt`` leans every numeric choice (widths, expansions, layer counts, clip sizes) towards its
        small (< 0) or large (> 0) end (see :meth:`Choice.sample`): uniform draws of a large space pile
        up around its median cost, and draws at tilts from -8 to 8 reach from near its cheapest to near
        its dearest architecture.
        """
        rng = rng if isinstance(rng, _random.Random) else _random.Random(rng)
        return {label: c.sample(rng, tilt) for label, c in self._dims.items()}

    def default(self) -> Sample:
        """The sample of every choice's default (first value, or the middle of a range)."""
        return {label: c.default for label, c in self._dims.items()}

    def size(self) -> int | float:
        """Number of distinct architectures (``math.inf`` if a choice is continuous).

        Slots past a repeat's chosen count do not multiply the count. A label shared between
        several places is counted once.
        """
        return _count(self.doc, set())

    def check(self, sample: Mapping[str, Any]) -> None:
        """Raise :class:`DSLError` naming the label, value and allowed values if ``sample`` is invalid.

        Every label the sample's architecture uses must be present; labels of unused repeat slots
        may be present or not; labels the space does not have are rejected.
        """
        self._freeze_doc(sample)

    def freeze(self, sample: Mapping[str, Any], name: str | None = None) -> Arch:
        """The architecture the sample selects (a document with every choice replaced)."""
        doc = self._freeze_doc(sample)
        doc["kind"] = "architecture"
        doc["space"] = self.name
        doc.pop("description", None)
        # the hash ignores the name, so the default name can be derived from the unnamed document
        doc["name"] = name or f"{self.name}-{Arch(doc).hash[:8]}"
        return Arch.from_dict(doc)

    def _freeze_doc(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(sample, Mapping):
            raise DSLError("", sample, "a mapping of label -> value", file=self.file)
        for label in sample:
            if label not in self._dims:
                known = ", ".join(list(self._dims)[:8]) + (", ..." if len(self._dims) > 8 else "")
                raise DSLError(str(label), sample[label], f"labels of space {self.name!r}: {known}",
                               reason="unknown label")

        def value_of(choice: Choice) -> Any:
            if choice.label not in sample:
                raise DSLError(choice.label, None, choice.allowed(), reason="missing from the sample")
            value = sample[choice.label]
            if not choice.admits(value):
                raise DSLError(choice.label, value, choice.allowed())
            return choice.normalise(value)

        return _substitute(self.doc, value_of)

    def sample_of(self, arch: Arch) -> Sample:
        """The sample that freezes to ``arch`` (active labels only); :class:`DSLError` if not a point."""
        if arch.family != self.family:
            raise DSLError("family", arch.family, repr(self.family), reason=f"not a point of space {self.name!r}")
        sample: Sample = {}
        body_space = {k: v for k, v in self.doc.items() if k not in ("name", "kind", "space", "description")}
        body_arch = {k: v for k, v in arch.doc.items() if k not in ("name", "kind", "space", "description")}
        _match(body_space, body_arch, "", sample)
        return sample

    def contains(self, arch: Arch) -> bool:
        """Whether ``arch`` is a point of this space."""
        try:
            self.sample_of(arch)
        except DSLError:
            return False
        return True


def _outside_repeats(node: Any) -> Any:
    """The document with every repeat removed (what :meth:`Space.fix` may fix)."""
    if isinstance(node, dict):
        return {k: _outside_repeats(v) for k, v in node.items() if not isinstance(v, Repeat)}
    if isinstance(node, list):
        return [_outside_repeats(v) for v in node if not isinstance(v, Repeat)]
    return node


def _substitute(node: Any, value_of: Callable[[Choice], Any]) -> Any:
    if isinstance(node, Choice):
        return value_of(node)
    if isinstance(node, Repeat):
        count = value_of(node.count) if isinstance(node.count, Choice) else node.count
        return [_substitute(slot, value_of) for slot in node.slots[:count]]
    if isinstance(node, dict):
        return {k: _substitute(v, value_of) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, value_of) for v in node]
    return node


def _match(space: Any, arch: Any, path: str, sample: Sample) -> None:
    """Walk space and architecture together, recording the choices' values."""
    if isinstance(space, Choice):
        if not space.admits(arch):
            raise DSLError(path, arch, space.allowed())
        value = space.normalise(arch)
        if space.label in sample and sample[space.label] != value:
            raise DSLError(path, arch, f"{sample[space.label]!r} (shared label {space.label!r})")
        sample[space.label] = value
    elif isinstance(space, Repeat):
        if not isinstance(arch, list) or len(arch) not in space.counts():
            n = len(arch) if isinstance(arch, list) else arch
            raise DSLError(path, n, "a list of " + " or ".join(map(str, space.counts())) + " items")
        _match(space.count, len(arch), join(path, "repeat"), sample)
        for i, (s, a) in enumerate(zip(space.slots, arch)):
            _match(s, a, join(path, i), sample)
    elif isinstance(space, dict):
        if not isinstance(arch, dict) or set(arch) != set(space):
            raise DSLError(path, arch if not isinstance(arch, dict) else sorted(arch), "keys " + ", ".join(space))
        for k in space:
            _match(space[k], arch[k], join(path, k), sample)
    elif isinstance(space, list):
        if not isinstance(arch, list) or len(arch) != len(space):
            raise DSLError(path, arch, f"a list of {len(space)} items")
        for i, (s, a) in enumerate(zip(space, arch)):
            _match(s, a, join(path, i), sample)
    elif not (type(space) is type(arch) and space == arch):
        raise DSLError(path, arch, repr(space))


def _count(node: Any, seen: set[str]) -> int | float:
    if isinstance(node, Choice):
        if node.label in seen:
            return 1
        seen.add(node.label)
        return node.size()
    if isinstance(node, Repeat):
        total: int | float = 0
        branch_labels: set[str] = set()
        for c in node.counts():
            branch_seen = set(seen)
            n: int | float = 1
            for slot in node.slots[:c]:
                n *= _count(slot, branch_seen)
            total += n
            branch_labels |= branch_seen
        seen |= branch_labels
        if isinstance(node.count, Choice):
            seen.add(node.count.label)
        return total
    if isinstance(node, dict):
        return math.prod((_count(v, seen) for v in node.values()), start=1)
    if isinstance(node, list):
        return math.prod((_count(v, seen) for v in node), start=1)
    return 1
