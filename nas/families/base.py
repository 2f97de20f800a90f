"""The :class:`Family` record every family module defines, and how a document of a given set of
families is parsed (header + that family's fields). Torch-free, and imported by the family modules,
so it imports none of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from nas.cost import Clip, Cost
from nas.dsl.document import header_fields, parse_document
from nas.dsl.schema import Field, ParseContext, Record
from nas.errors import DSLError

__all__ = ["Family", "parse_with", "lookup"]


@dataclass(frozen=True)
class Family:
    """One family of networks (see :mod:`nas.families`)."""

    name: str
    fields: dict[str, Field]
    resolve: Callable[..., Any]
    cost: Callable[..., Cost]
    clip: Callable[[dict], Clip]
    validate: Callable[[dict], None] | None = None


def lookup(families: Mapping[str, Family], name: str) -> Family:
    """The family called ``name`` among ``families`` (a :class:`~nas.errors.DSLError` naming the known ones)."""
    try:
        return families[name]
    except KeyError:
        raise DSLError("family", name, "one of " + ", ".join(families)) from None


def parse_with(families: Mapping[str, Family], raw: Any, *, allow_choices: bool,
               file: str | None) -> tuple[dict, ParseContext]:
    """Validate a whole document (header + its family's fields) whose family is one of ``families``."""
    names = tuple(families)
    if not isinstance(raw, dict):
        raise DSLError("", raw, "a mapping starting with xnas, kind, name, family", file=file)
    family_name = raw.get("family")
    if not isinstance(family_name, str) or family_name not in families:
        raise DSLError("family", family_name, "one of " + ", ".join(names), file=file)
    family = families[family_name]
    schema = Record({**header_fields(names), **family.fields}, what="a document")
    doc, ctx = parse_document(raw, schema, allow_choices=allow_choices, file=file)
    if family.validate is not None and not ctx.labels:
        try:
            family.validate(doc)
        except DSLError as err:
            raise err.with_file(file) from None
    return doc, ctx
