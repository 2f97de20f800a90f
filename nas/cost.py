"""Exact analytic cost of an architecture: multiply-adds and parameters, with no torch import.

Convention (the X3D and MoViNet papers'): one multiply-add of a convolution or linear layer is one
FLOP, so ``gflops = macs / 1e9``; batch norm, activations, pooling, the SE gating multiply and
residual adds count zero. ``torch.utils.flop_counter.FlopCounterMode`` counts 2 FLOPs per
multiply-add, so its total is exactly ``2 * macs`` of the same model. ``params`` is the number of
trainable parameters of the model :func:`nas.models.build_model` builds (BN gamma/beta included,
running statistics not).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


__all__ = ["Clip", "Cost", "Tally", "round8", "same_out", "GFLOPS_NOTE"]

GFLOPS_NOTE = "GFLOPs = multiply-adds of conv and linear layers x 1e-9 (X3D/MoViNet convention)"


@dataclass(frozen=True)
class Clip:
    """The input an architecture is defined at: ``frames`` sampled every ``frame_stride`` source
    frames, spatial crop ``crop`` x ``crop``."""

    frames: int
    frame_stride: int
    crop: int


@dataclass(frozen=True)
class Cost:
    """Multiply-adds and parameters of one architecture for one clip of ``frames`` x ``size``²."""

    macs: int
    params: int
    frames: int
    size: int

    @property
    def gflops(self) -> float:
        """Multiply-adds x 1e-9 (the papers' "GFLOPs")."""
        return self.macs / 1e9

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``gflops``, ``macs``, ``params``, ``frames``, ``size``."""
        return {"gflops": self.gflops, "macs": self.macs, "params": self.params,
                "frames": self.frames, "size": self.size, "convention": GFLOPS_NOTE}


def round8(x: float) -> int:
    """Round a width to a multiple of 8 the way X3D, MobileNet and MoViNet do (``make_divisible``).

    ``max(8, int(x + 4) // 8 * 8)``, plus 8 if that loses more than 10 % of ``x``.
    """
    n = max(8, int(x + 4) // 8 * 8)
    if n < 0.9 * x:
        n += 8
    return n


def same_out(n: int, stride: int) -> int:
    """Output length of a TF-'same' (or PyTorch ``padding=k//2``, odd k) conv or pool."""
    return -(-n // stride)


class Tally:
    """Accumulates multiply-adds and parameters layer by layer while walking a network's shapes."""

    def __init__(self) -> None:
        self.macs = 0
        self.params = 0

    def conv(self, cin: int, cout: int, kernel: tuple[int, int, int], out_thw: tuple[int, int, int],
             *, groups: int = 1, bias: bool = False) -> None:
        """A Conv3d producing ``cout`` x ``out_thw``: every output element costs ``cin/groups * |k|``."""
        per_out = (cin // groups) * math.prod(kernel)
        self.macs += cout * math.prod(out_thw) * per_out
        self.params += cout * per_out + (cout if bias else 0)

    def linear(self, cin: int, cout: int, *, bias: bool = True, rows: int = 1) -> None:
        """A Linear layer (or a 1x1x1 conv on a pooled vector) applied to ``rows`` vectors."""
        self.macs += rows * cin * cout
        self.params += cin * cout + (cout if bias else 0)

    def bn(self, channels: int) -> None:
        """A BatchNorm: gamma and beta are parameters; it costs no multiply-adds by convention."""
        self.params += 2 * channels

    def scalar(self, n: int = 1) -> None:
        """Learnable scalars (ReZero scales, positional-encoding scales)."""
        self.params += n
