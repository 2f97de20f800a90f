"""Families: the schema of each kind of network, how to read its clip, and its analytic cost.

A family module is torch-free. It provides a :class:`~nas.families.base.Family` with

* ``fields`` -- the document fields after the common header (a dict of :class:`~nas.dsl.schema.Field`);
* ``resolve(doc, frames, crop)`` -- the concrete network (widths, depths, kernels, strides) after the
  family's rounding rules: one typed description read by both the cost model and the torch builder;
* ``cost(doc, frames, crop)`` -- the exact :class:`~nas.cost.Cost`;
* ``clip(doc)`` -- the :class:`~nas.cost.Clip` the architecture is defined at.

Layering (no import cycle): :mod:`~nas.families.base` (the record) <- the single-network families
(:mod:`~nas.families.x3d`, :mod:`~nas.families.movinet`, :mod:`~nas.families.tsn2d`, gathered by
:mod:`~nas.families.leaves`) <- :mod:`~nas.families.ensemble` (members of those families) <- this
module, the dispatch over all of them that :class:`~nas.dsl.arch.Arch` and
:class:`~nas.dsl.space.Space` use.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nas.cost import Cost
from nas.dsl.schema import ParseContext
from nas.families import ensemble
from nas.families.base import Family, lookup, parse_with
from nas.families.leaves import LEAF_FAMILIES

if TYPE_CHECKING:
    from nas.dsl.arch import Arch

__all__ = ["Family", "FAMILIES", "family_of", "parse", "count_cost"]

# Every family by name, in listing order.
FAMILIES: dict[str, Family] = {**LEAF_FAMILIES, ensemble.FAMILY.name: ensemble.FAMILY}


def family_of(name: str) -> Family:
    """The family called ``name``."""
    return lookup(FAMILIES, name)


def parse(raw: Any, *, allow_choices: bool, file: str | None) -> tuple[dict, ParseContext]:
    """Validate a whole document (header + its family's fields)."""
    return parse_with(FAMILIES, raw, allow_choices=allow_choices, file=file)


def count_cost(arch: "Arch", frames: int | None = None, size: int | None = None) -> Cost:
    """Exact multiply-adds and parameters of ``arch`` (see :mod:`nas.cost` for the convention).

    Args:
        arch: a frozen architecture.
        frames: count for this many input frames instead of the architecture's own.
        size: count for a ``size`` x ``size`` crop instead of the architecture's own.

    Returns:
        The cost for one clip (batch 1).
    """
    return family_of(arch.family).cost(arch.doc, frames=frames, crop=size)
