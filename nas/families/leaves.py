"""The single-network families (x3d, movinet, tsn2d): the ones an ensemble's members may belong to."""
from __future__ import annotations

from typing import Any

from nas.dsl.schema import ParseContext
from nas.families import movinet, tsn2d, x3d
from nas.families.base import Family, lookup, parse_with

__all__ = ["LEAF_FAMILIES", "leaf_family", "parse_leaf"]

LEAF_FAMILIES: dict[str, Family] = {f.name: f for f in (x3d.FAMILY, movinet.FAMILY, tsn2d.FAMILY)}


def leaf_family(name: str) -> Family:
    """The single-network family called ``name``."""
    return lookup(LEAF_FAMILIES, name)


def parse_leaf(raw: Any, *, allow_choices: bool, file: str | None) -> tuple[dict, ParseContext]:
    """Validate a whole document of a single-network family."""
    return parse_with(LEAF_FAMILIES, raw, allow_choices=allow_choices, file=file)
