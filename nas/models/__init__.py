"""PyTorch models built from frozen architectures (this subpackage imports torch).

:func:`build_model` resolves an architecture with its family (the same description the analytic cost
model walks) and builds the matching network, so parameter counts and multiply-adds equal
``arch.cost()`` exactly.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from torch import nn

from nas.families import family_of
from nas.models.movinet import build_movinet
from nas.models.x3d import build_x3d

if TYPE_CHECKING:
    from nas.dsl import Arch

__all__ = ["build_model", "BUILDERS"]

# family name -> builder taking that family's resolved network description
BUILDERS: dict[str, Callable[[Any], nn.Module]] = {"x3d": build_x3d, "movinet": build_movinet}


def _register_optional_builders() -> None:
    """Builders of families added later (tsn2d, ensemble): modules that define ``BUILDER``."""
    import importlib
    import importlib.util

    for name in ("tsn2d", "ensemble"):
        if importlib.util.find_spec(f"nas.models.{name}") is not None:
            BUILDERS[name] = importlib.import_module(f"nas.models.{name}").BUILDER


_register_optional_builders()


def build_model(arch: "Arch") -> nn.Module:
    """Build a freshly initialised model for ``arch``.

    Args:
        arch: a frozen architecture of a known family.

    Returns:
        A module taking (B, 3, T, H, W) clips (any T, H, W; channels-first or ``channels_last_3d``)
        and returning (B, classes) logits.

    Raises:
        ValueError: if the architecture's family has no builder.
    """
    builder = BUILDERS.get(arch.family)
    if builder is None:
        raise ValueError(f"no model builder for family {arch.family!r}; known: {', '.join(BUILDERS)}")
    return builder(family_of(arch.family).resolve(arch.doc))
