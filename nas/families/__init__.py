"""Families: the schema of each kind of network, how to read its clip, and its analytic cost.

A family module is torch-free. It provides a :class:`Family` with

* ``fields`` -- the document fields after the common header (a dict of :class:`~nas.dsl.schema.Field`);
* ``resolve(doc, frames, crop)`` -- the concrete network (widths, depths, kernels, strides) after the
  family's rounding rules: one typed description read by both the cost model and the torch builder;
* ``cost(doc, frames, crop)`` -- the exact :class:`~nas.cost.Cost`;
* ``clip(doc)`` -- the :class:`~nas.cost.Clip` the architecture is defined at.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from nas.cost import Clip, Cost
from nas.dsl.document import header_fields, parse_document
from nas.dsl.schema import Field, ParseContext, Record
from nas.errors import DSLError

__all__ = ["Family", "FAMILIES", "family_of", "parse"]


@dataclass(frozen=True)
class Family:
    """One family of networks (see the module docstring)."""

    name: str
    fields: dict[str, Field]
    resolve: Callable[..., Any]
    cost: Callable[..., Cost]
    clip: Callable[[dict], Clip]
    validate: Callable[[dict], None] | None = None


# Family modules, in listing order. Each defines ``FAMILY``; a module is listed here once it exists.
FAMILY_MODULES = ("x3d", "movinet", "tsn2d", "ensemble")


def _registry() -> dict[str, Family]:
    import importlib
    import importlib.util

    families = {}
    for name in FAMILY_MODULES:
        if importlib.util.find_spec(f"nas.families.{name}") is None:
            continue
        family = importlib.import_module(f"nas.families.{name}").FAMILY
        families[family.name] = family
    return families


FAMILIES: dict[str, Family] = {}


def family_of(name: str) -> Family:
    """The family called ``name``."""
    if not FAMILIES:
        FAMILIES.update(_registry())
    try:
        return FAMILIES[name]
    except KeyError:
        raise DSLError("family", name, "one of " + ", ".join(FAMILIES)) from None


def parse(raw: Any, *, allow_choices: bool, file: str | None) -> tuple[dict, ParseContext]:
    """Validate a whole document (header + its family's fields)."""
    if not FAMILIES:
        FAMILIES.update(_registry())
    names = tuple(FAMILIES)
    if not isinstance(raw, dict):
        raise DSLError("", raw, "a mapping starting with xnas, kind, name, family", file=file)
    family_name = raw.get("family")
    if not isinstance(family_name, str) or family_name not in FAMILIES:
        raise DSLError("family", family_name, "one of " + ", ".join(names), file=file)
    family = FAMILIES[family_name]
    schema = Record({**header_fields(names), **family.fields}, what="a document")
    doc, ctx = parse_document(raw, schema, allow_choices=allow_choices, file=file)
    if family.validate is not None and not ctx.labels:
        try:
            family.validate(doc)
        except DSLError as err:
            raise err.with_file(file) from None
    return doc, ctx
