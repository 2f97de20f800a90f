"""Model builders of the single-network families, by family name (an ensemble's members are built
with these; :func:`nas.models.build_model` adds the ensemble)."""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

from nas.families.movinet import MovinetNet
from nas.models.movinet import Movinet
from nas.models.streaming import MovinetStream
from nas.models.tsn2d import build_tsn2d
from nas.models.x3d import build_x3d

__all__ = ["LEAF_BUILDERS", "build_movinet"]


def build_movinet(net: MovinetNet) -> nn.Module:
    """Build the MoViNet model ``net`` describes, freshly initialised.

    Args:
        net: the resolved description (:func:`nas.families.movinet.resolve`).

    Returns:
        The model; input (B, 3, T, H, W), output (B, classes) logits. Architectures with a stream
        option (causal, (2+1)D, 2plus3d SE, positional encoding) get
        :class:`nas.models.streaming.MovinetStream`, which adds ``init_state`` and ``step``.
    """
    return Movinet(net) if net.is_base else MovinetStream(net)


# family name -> builder taking that family's resolved network description
LEAF_BUILDERS: dict[str, Callable[[Any], nn.Module]] = {"x3d": build_x3d, "movinet": build_movinet,
                                                        "tsn2d": build_tsn2d}
