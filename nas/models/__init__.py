"""PyTorch models built from frozen architectures (this subpackage imports torch).

:func:`build_model` resolves an architecture with its family (the same description the analytic cost
model walks) and builds the matching network, so parameter counts and multiply-adds equal
``arch.cost()`` exactly.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from torch import nn

from nas.families import family_of
from nas.models.builders import LEAF_BUILDERS, build_movinet
from nas.models.ensemble import build_ensemble
from nas.models.layers import init_residual_branches_
from nas.models.onednn import size_primitive_cache

size_primitive_cache()  # before any model runs (oneDNN reads it at its first primitive, not at torch's import)

if TYPE_CHECKING:
    from nas.dsl import Arch

__all__ = ["build_model", "build_movinet", "BUILDERS"]

# family name -> builder taking that family's resolved network description
BUILDERS: dict[str, Callable[[Any], nn.Module]] = {**LEAF_BUILDERS, "ensemble": build_ensemble}


def build_model(arch: "Arch", *, zero_init_residual: bool = True) -> nn.Module:
    """Build a freshly initialised model for ``arch``.

    Args:
        arch: a frozen architecture of a known family.
        zero_init_residual: whether every residual branch's scale (the last BN's gamma; MoViNet's
            ReZero scalar) starts at 0, so each block starts as its shortcut (the X3D and MoViNet
            recipe, the default here); ``False`` starts it at 1, which a short proxy learns from far
            sooner (:class:`~nas.proxy.Proxy`'s ``zero_init_residual``).

    Returns:
        A module taking (B, 3, T, H, W) clips (any T, H, W; channels-first or ``channels_last_3d``)
        and returning (B, classes) logits.

    Raises:
        ValueError: if the architecture's family has no builder.
    """
    builder = BUILDERS.get(arch.family)
    if builder is None:
        raise ValueError(f"no model builder for family {arch.family!r}; known: {', '.join(BUILDERS)}")
    model = builder(family_of(arch.family).resolve(arch.doc))
    if not zero_init_residual:
        init_residual_branches_(model, zero=False)
    return model
