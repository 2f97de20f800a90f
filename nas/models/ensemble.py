"""Temporal ensembles in PyTorch (see :mod:`nas.families.ensemble`): member ``i`` of ``n`` reads frames
``i, i + n, ...`` of the clip and the members' logits are averaged (before any softmax)."""
from __future__ import annotations

import torch
from torch import nn

from nas.families.ensemble import EnsembleNet

__all__ = ["TemporalEnsemble", "build_ensemble", "BUILDER"]


class TemporalEnsemble(nn.Module):
    """``members`` (a ModuleList); forward averages their logits on staggered frame subsets.

    Args:
        net: the resolved ensemble.
    """

    def __init__(self, net: EnsembleNet) -> None:
        super().__init__()
        from nas.models import BUILDERS

        self.members = nn.ModuleList(BUILDERS[m.family](m.net) for m in net.members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) clip -> (B, classes): the mean of member ``i``'s logits on ``x[:, :, i::n]``."""
        n = len(self.members)
        if x.shape[2] < n:
            raise ValueError(f"clip: got {x.shape[2]} frames; allowed: at least one per member (>= {n})")
        logits = [member(x[:, :, i::n]) for i, member in enumerate(self.members)]
        return torch.stack(logits).mean(dim=0)


def build_ensemble(net: EnsembleNet) -> nn.Module:
    """Build a freshly initialised temporal ensemble."""
    return TemporalEnsemble(net)


BUILDER = build_ensemble
