"""Measured cost of a built model, the oracle the analytic cost model is tested against (imports torch)."""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_params", "measured_macs"]


def count_params(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def measured_macs(model: torch.nn.Module, frames: int, size: int, *, device: str | None = None) -> int:
    """Multiply-adds of one forward pass on a ``(1, 3, frames, size, size)`` clip.

    ``FlopCounterMode`` counts 2 FLOPs per multiply-add of convolutions and matrix products (and
    nothing for batch norm, activations or pooling), so its total halved is the papers' GFLOPs x 1e9.
    With ``device="meta"`` the model and input live on the meta device: shapes propagate and the
    counter fires, but nothing is computed, so even MoViNet-A5 at 120 x 320² counts in a blink.
    """
    was_training = model.training
    model.eval()
    if device is not None:
        model = model.to(device)
    param = next(model.parameters(), None)
    dev = param.device if param is not None else torch.device("cpu")
    clip = torch.zeros(1, 3, frames, size, size, device=dev)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(clip)
    model.train(was_training)
    total = counter.get_total_flops()
    if total % 2:
        raise RuntimeError(f"odd FLOP total {total}: an op counted something other than multiply-adds")
    return total // 2
