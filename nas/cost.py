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
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping


__all__ = ["Clip", "Cost", "Tally", "round8", "same_out", "spread_by_cost", "GFLOPS_NOTE", "PROFILE_KEYS"]

# Per-kind totals a Tally keeps beside macs and params (Cost.profile): multiply-adds of dense convs
# (a kernel wider than 1x1x1, groups 1), pointwise convs (1x1x1), grouped / depthwise convs and linear
# layers; the output elements of every conv (the tensors BN, activations and adds then read and write);
# and how many convs, BNs and linear layers there are (each a kernel call).
PROFILE_KEYS = ("dense_macs", "pointwise_macs", "depthwise_macs", "linear_macs", "conv_out_elems", "convs", "bns",
                "linears")

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
    # multiply-adds and output sizes by kind of layer (:data:`PROFILE_KEYS`): what the latency model
    # (nas.latency) weighs, since a depthwise multiply-add costs far more time than a dense one
    profile: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)

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
        self.profile = dict.fromkeys(PROFILE_KEYS, 0)

    def conv(self, cin: int, cout: int, kernel: tuple[int, int, int], out_thw: tuple[int, int, int],
             *, groups: int = 1, bias: bool = False) -> None:
        """A Conv3d producing ``cout`` x ``out_thw``: every output element costs ``cin/groups * |k|``."""
        per_out = (cin // groups) * math.prod(kernel)
        macs = cout * math.prod(out_thw) * per_out
        self.macs += macs
        self.params += cout * per_out + (cout if bias else 0)
        kind = "depthwise_macs" if groups > 1 else "pointwise_macs" if math.prod(kernel) == 1 else "dense_macs"
        self.profile[kind] += macs
        self.profile["conv_out_elems"] += cout * math.prod(out_thw)
        self.profile["convs"] += 1

    def linear(self, cin: int, cout: int, *, bias: bool = True, rows: int = 1) -> None:
        """A Linear layer (or a 1x1x1 conv on a pooled vector) applied to ``rows`` vectors."""
        self.macs += rows * cin * cout
        self.params += cin * cout + (cout if bias else 0)
        self.profile["linear_macs"] += rows * cin * cout
        self.profile["linears"] += 1

    def bn(self, channels: int) -> None:
        """A BatchNorm: gamma and beta are parameters; it costs no multiply-adds by convention."""
        self.params += 2 * channels
        self.profile["bns"] += 1

    def scalar(self, n: int = 1) -> None:
        """Learnable scalars (ReZero scales, positional-encoding scales)."""
        self.params += n


def spread_by_cost(archs: "Iterable[Any]", n: int) -> list:
    """``n`` of ``archs`` (distinct by hash) that span their cost range: one per equal slice of
    log-GFLOPs between the cheapest and the dearest (the nearest not yet taken), in cost order. Random
    draws of a space pile up where it is dense; an audit or a calibration needs the whole range."""
    pool: dict[str, tuple[float, Any]] = {}
    for arch in archs:
        pool.setdefault(arch.hash, (arch.cost().gflops, arch))
    ranked = sorted(pool.values(), key=lambda t: t[0])
    if len(ranked) <= n:
        return [a for _, a in ranked]
    lo, hi = math.log(ranked[0][0]), math.log(ranked[-1][0])
    taken = []
    for i in range(n):
        want = lo + (hi - lo) * (i + 0.5) / n
        j = min(range(len(ranked)), key=lambda k: abs(math.log(ranked[k][0]) - want))
        taken.append(ranked.pop(j))
    return [a for _, a in sorted(taken, key=lambda t: t[0])]
