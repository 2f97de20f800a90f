"""Temporal ensembles (MoViNet A6 / the paper's ensembling): several networks read one clip at a lower
frame rate each, with staggered offsets, and their logits are averaged before the softmax.

Document fields (after the header)::

    classes: 600                                # every member's classifier gets this many classes
    clip: {frames: 50, frame_stride: 5, crop: 172}   # the clip the ensemble reads
    members:                                    # two or more
      - movinet-a0-stream                       # a reference architecture by name, or
      - {family: movinet, activation: ..., ...} # an inline document body (family + that family's fields;
                                                # its classes may be left out; its clip is overridden)

With ``n`` members, member ``i`` reads frames ``i, i + n, i + 2n, ...`` of the clip: ``1/n`` of the frame
rate (half for two members) with an ``i``-frame offset, i.e. ``ceil((frames - i) / n)`` frames at
``n x frame_stride``, at the ensemble's crop: its own clip length and crop are overridden (as
``arch.cost(frames=..., size=...)`` does) and its ``classes`` replaced by the ensemble's. Cost = the sum of the members' exact costs on the frames they read; params = the sum of theirs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nas.cost import Clip, Cost
from nas.dsl.schema import Enum, Field, Int, ListOf, ParseContext, Record, Scalar, join
from nas.errors import DSLError
from nas.families.base import Family
from nas.families.leaves import LEAF_FAMILIES, leaf_family, parse_leaf

__all__ = ["EnsembleMember", "EnsembleNet", "resolve", "cost", "clip", "validate", "FAMILY", "member_frames"]

_NAME_ALLOWED = "a reference architecture name (e.g. movinet-a0-stream) or an inline document {family: ..., ...}"


class MemberSpec(Scalar):
    """One member: a reference name (searchable: ``{choice: [movinet-a0, ...]}``) or an inline document
    body whose choices become dimensions of the ensemble space."""

    def describe(self) -> str:
        return _NAME_ALLOWED

    def check(self, value: Any, path: str) -> str:
        from nas.shipped import arch_names

        if not isinstance(value, str) or value not in arch_names():
            raise DSLError(path, value, _NAME_ALLOWED)
        return value

    def parse(self, raw: Any, path: str, ctx: ParseContext) -> Any:
        if isinstance(raw, dict) and not ("choice" in raw or "range" in raw):
            return _parse_inline(raw, path, ctx)
        return super().parse(raw, path, ctx)


def _parse_inline(raw: dict, path: str, ctx: ParseContext) -> dict:
    family_name = raw.get("family")
    if not isinstance(family_name, str) or family_name not in LEAF_FAMILIES:
        allowed = "one of " + ", ".join(LEAF_FAMILIES)
        raise DSLError(join(path, "family"), family_name, allowed, reason="a member needs a (non-ensemble) family")
    fields: dict[str, Field] = {"family": Field(Enum((family_name,), searchable=False))}
    for key, fld in LEAF_FAMILIES[family_name].fields.items():
        # the ensemble fixes every member's classes, so a member may leave them out
        fields[key] = Field(fld.spec, required=False) if key == "classes" else fld
    return Record(fields, what=f"an inline {family_name} member").parse(raw, path, ctx)


FIELDS = {
    "classes": Field(Int(1, 100_000)),
    "clip": Field(Record({"frames": Int(1, 4096), "frame_stride": Int(1, 1000), "crop": Int(8, 4096)})),
    "members": Field(ListOf(MemberSpec(), 2, 16)),
}


@dataclass(frozen=True)
class EnsembleMember:
    """One resolved member: its family, its completed document, what it reads and its resolved network."""

    family: str
    doc: dict
    offset: int
    frames: int
    net: Any


@dataclass(frozen=True)
class EnsembleNet:
    """The concrete ensemble: the clip it reads and its members (offsets 0 .. n-1)."""

    clip: Clip
    classes: int
    members: tuple[EnsembleMember, ...]


def member_frames(frames: int, members: int, offset: int) -> int:
    """Frames member ``offset`` of ``members`` reads from a ``frames``-frame clip: ``ceil((frames - offset) / members)``."""
    return -(-(frames - offset) // members)


def _member_doc(member: Any, classes: int) -> dict:
    """The member's document with the ensemble's classes (its clip is overridden when resolving)."""
    if isinstance(member, str):
        member = _reference_doc(member)
    return {**member, "classes": classes}


def _reference_doc(name: str) -> dict:
    """The validated document of a shipped reference architecture of a single-network family."""
    from nas.dsl.document import read_document
    from nas.shipped import resolve_arch_path

    path = resolve_arch_path(name)
    doc, _ = parse_leaf(read_document(path), allow_choices=False, file=str(path))
    return doc


def resolve(doc: dict, frames: int | None = None, crop: int | None = None) -> EnsembleNet:
    """Resolve every member at the frames it reads (``frames``/``crop`` override the ensemble's clip)."""
    c = doc["clip"]
    the_clip = Clip(frames=frames or c["frames"], frame_stride=c["frame_stride"], crop=crop or c["crop"])
    n = len(doc["members"])
    if the_clip.frames < n:
        raise DSLError("clip/frames", the_clip.frames, f"at least one frame per member (>= {n})")
    members = []
    for offset, member in enumerate(doc["members"]):
        mdoc = _member_doc(member, doc["classes"])
        frames_i = member_frames(the_clip.frames, n, offset)
        net = leaf_family(mdoc["family"]).resolve(mdoc, frames=frames_i, crop=the_clip.crop)
        members.append(EnsembleMember(family=mdoc["family"], doc=mdoc, offset=offset, frames=frames_i, net=net))
    return EnsembleNet(clip=the_clip, classes=doc["classes"], members=tuple(members))


def cost(doc: dict, frames: int | None = None, crop: int | None = None) -> Cost:
    """The sum of the members' exact costs on the frames each reads."""
    net = resolve(doc, frames, crop)
    macs = params = 0
    profile: dict[str, int] = {}
    for m in net.members:
        c = leaf_family(m.family).cost(m.doc, frames=m.frames, crop=net.clip.crop)
        macs, params = macs + c.macs, params + c.params
        for key, value in c.profile.items():
            profile[key] = profile.get(key, 0) + value
    return Cost(macs=macs, params=params, frames=net.clip.frames, size=net.clip.crop, profile=profile)


def clip(doc: dict) -> Clip:
    """The clip the ensemble reads."""
    c = doc["clip"]
    return Clip(c["frames"], c["frame_stride"], c["crop"])


def validate(doc: dict) -> None:
    """Check an architecture: a frame for every member, and every member a valid document of its family."""
    n = len(doc["members"])
    if doc["clip"]["frames"] < n:
        raise DSLError("clip/frames", doc["clip"]["frames"], f"at least one frame per member (>= {n})")
    for i, member in enumerate(doc["members"]):
        if isinstance(member, dict):
            full = {"xnas": 1, "kind": "architecture", "name": f"member{i}", **_member_doc(member, doc["classes"])}
            try:
                parse_leaf(full, allow_choices=False, file=None)
            except DSLError as err:
                path = join(f"members/{i}", err.path) if err.path else f"members/{i}"
                raise DSLError(path, err.value, err.allowed, reason=err.reason) from None


FAMILY = Family(name="ensemble", fields=FIELDS, resolve=resolve, cost=cost, clip=clip, validate=validate)
