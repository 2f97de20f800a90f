"""Temporal ensembles in PyTorch (see :mod:`nas.families.ensemble`): member ``i`` of ``n`` reads frames
``i, i + n, ...`` of the clip and the members' logits are averaged (before any softmax).

When every member is a causal MoViNet the ensemble streams too: ``init_state`` / ``step`` route video
frame ``t`` to member ``t mod n``. The state holds ``frames`` (frames seen by the ensemble), each
member's own state under ``member{i}/<key>`` and its latest logits under ``member{i}/logits`` (a member
that gets no frame in a chunk keeps its prediction); the output averages the members that have seen at
least one frame, so after ``n`` or more frames it equals the whole-clip forward.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from nas.families.ensemble import EnsembleNet
from nas.models.builders import LEAF_BUILDERS

__all__ = ["TemporalEnsemble", "build_ensemble", "BUILDER"]


class TemporalEnsemble(nn.Module):
    """``members`` (a ModuleList); forward averages their logits on staggered frame subsets.

    Args:
        net: the resolved ensemble.
    """

    def __init__(self, net: EnsembleNet) -> None:
        super().__init__()
        self.members = nn.ModuleList(LEAF_BUILDERS[m.family](m.net) for m in net.members)
        self.classes = net.classes

    @property
    def causal(self) -> bool:
        """Whether every member is causal (then the ensemble can be streamed)."""
        return all(getattr(m, "causal", False) for m in self.members)

    def init_state(self, batch_size: int, size: int | tuple[int, int] | None = None, *,
                   device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        """The zero state at the start of a video (see the module docstring for the keys).

        Raises:
            ValueError: if a member is not causal.
        """
        if not self.causal:
            raise ValueError("members: got a non-causal member; allowed: only causal MoViNet members can be streamed")
        param = next(self.parameters())
        state = {"frames": torch.zeros(1, dtype=torch.long, device=device or param.device)}
        for i, member in enumerate(self.members):
            for key, value in member.init_state(batch_size, size, device=device, dtype=dtype).items():
                state[f"member{i}/{key}"] = value
            state[f"member{i}/logits"] = torch.zeros(batch_size, self.classes, dtype=dtype or param.dtype,
                                                     device=device or param.device)
        return state

    def step(self, chunk: torch.Tensor,
             state: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Run one chunk (B, 3, T, H, W): video frame ``t`` goes to member ``t mod n``.

        Returns:
            ``(logits, new_state)``: the mean logits of the members that have seen a frame.
        """
        n, seen = len(self.members), int(state["frames"][0])
        new: dict[str, torch.Tensor] = {"frames": state["frames"] + chunk.shape[2]}
        ready = []
        for i, member in enumerate(self.members):
            prefix = f"member{i}/"
            own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and k != prefix + "logits"}
            part = chunk[:, :, (i - seen) % n::n]
            if part.shape[2]:
                logits, own = member.step(part, own)
            else:
                logits = state[prefix + "logits"]
            new.update({prefix + k: v for k, v in own.items()})
            new[prefix + "logits"] = logits
            if int(own["frames"][0]) > 0:
                ready.append(logits)
        return torch.stack(ready).mean(dim=0), new

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
