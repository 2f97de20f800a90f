"""X3D: an X2D base network and six continuous expansion factors (Feichtenhofer, CVPR 2020).

Document fields (after the header)::

    classes: 400
    base:                        # X2D: every factor 1
      frame_stride: 1            # source frames between sampled frames
      frames: 1
      crop: 112
      stem: {width: 24, temporal_kernel: 5}
      stages:                    # res2 .. res5
        - {width: 24, depth: 1}
        - ...
      se_ratio: 0.0625           # SE bottleneck = round8(inner * se_ratio)
      se_every: 2                # SE on blocks 0, 2, 4, ... of every stage
      head: {width: 2048, dropout: 0.5}
      block_temporal_kernel: 3   # optional (default 3): temporal extent of every block's depthwise
                                 # conv; 1 (with stem temporal_kernel 1) is the frame-wise ablation
    factors:                     # the paper's gamma_tau, gamma_t, gamma_s, gamma_w, gamma_b, gamma_d
      frame_stride: 5            # stride  = max(1, round(gamma_tau * base.frame_stride))
      frames: 16                 # frames  = max(1, round(gamma_t * base.frames))
      spatial: 2.0               # crop    = round8(gamma_s * base.crop)
      width: 1.0                 # widths  = round8(gamma_w * base width), stem included
      bottleneck: 2.25           # inner   = int(gamma_b * stage width)
      depth: 2.2                 # depths  = ceil(gamma_d * base depth)

Network (SlowFast ``X3DTransform`` / pytorchvideo ``create_x3d``), all convs bias-free::

    stem:  conv 1x3x3 s(1,2,2) -> depthwise conv kx1x1 -> BN -> ReLU
    block: conv 1x1x1 -> BN -> ReLU -> depthwise 3x3x3 (stride (1,2,2) in block 0) -> BN
           -> [SE: pool -> 1x1x1 (bias) -> ReLU -> 1x1x1 (bias) -> sigmoid -> x]   (blocks 0,2,4..)
           -> Swish -> conv 1x1x1 -> BN (gamma = 0) ; + shortcut ; ReLU
    shortcut: block 0 of a stage: conv 1x1x1 s(1,2,2), then BN only if the width changes (pytorchvideo;
           SlowFast adds the BN in res2 too, 48 more parameters; the published 3,794,274 params are PTV's)
    head:  conv5 1x1x1 (to the last stage's inner width) -> BN -> ReLU -> global avg pool
           -> 1x1x1 conv to head.width (no bias, no BN) -> ReLU -> dropout -> linear to classes (bias)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from nas.cost import Clip, Cost, Tally, round8, same_out
from nas.dsl.schema import Enum, Field, Float, Int, ListOf, Record
from nas.families.base import Family

__all__ = ["X3DStage", "X3DNet", "resolve", "cost", "growth_error", "FAMILY", "FACTOR_AXES"]

# Paper symbol of each factor, in the paper's order.
FACTOR_AXES = {
    "frame_stride": "gamma_tau",
    "frames": "gamma_t",
    "spatial": "gamma_s",
    "width": "gamma_w",
    "bottleneck": "gamma_b",
    "depth": "gamma_d",
}

_factor = Float(0.01, 1000.0)
FIELDS = {
    "classes": Field(Int(1, 100_000)),
    "base": Field(Record({
        "frame_stride": Int(1, 1000),
        "frames": Int(1, 4096),
        "crop": Int(8, 4096),
        "stem": Record({"width": Int(1, 4096), "temporal_kernel": Int(1, 15)}),
        "stages": ListOf(Record({"width": Int(1, 4096), "depth": Int(1, 256)}), 1, 8),
        "se_ratio": Float(0.0, 1.0),
        "se_every": Int(0, 64),
        "head": Record({"width": Int(1, 65536), "dropout": Float(0.0, 1.0)}),
        # optional and left out of documents that do not set it, so existing hashes do not change
        "block_temporal_kernel": Field(Enum((1, 3, 5, 7)), required=False),
    })),
    "factors": Field(Record({axis: _factor for axis in FACTOR_AXES})),
}


@dataclass(frozen=True)
class X3DStage:
    """One residual stage after rounding: ``depth`` blocks ``width`` wide with ``inner`` bottlenecks."""

    depth: int
    width: int
    inner: int
    se_dim: int  # 0 = no SE anywhere in the stage


@dataclass(frozen=True)
class X3DNet:
    """The concrete X3D network an architecture document describes (after the rounding rules)."""

    clip: Clip
    classes: int
    stem_width: int
    stem_temporal_kernel: int
    stages: tuple[X3DStage, ...]
    se_every: int
    head_width: int
    dropout: float
    block_temporal_kernel: int = 3

    @property
    def head_inner(self) -> int:
        """conv5 width: the last stage's bottleneck width."""
        return self.stages[-1].inner

    def has_se(self, block: int) -> bool:
        """Whether block ``block`` of a stage has squeeze-excitation (every ``se_every``-th)."""
        return self.se_every > 0 and block % self.se_every == 0


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def resolve(doc: dict, frames: int | None = None, crop: int | None = None) -> X3DNet:
    """Apply the factors and rounding rules to the base (``frames``/``crop`` override the clip)."""
    base, f = doc["base"], doc["factors"]
    clip = Clip(
        frames=frames or max(1, _round_half_up(f["frames"] * base["frames"])),
        frame_stride=max(1, _round_half_up(f["frame_stride"] * base["frame_stride"])),
        crop=crop or round8(f["spatial"] * base["crop"]),
    )
    stages = []
    for st in base["stages"]:
        width = round8(f["width"] * st["width"])
        inner = int(f["bottleneck"] * width)
        # ceil with a tolerance: 2.2 * 3 is 6.6000000000000005 in floating point, 2.2 * 5 must stay 11
        depth = max(1, math.ceil(f["depth"] * st["depth"] - 1e-9))
        se_dim = round8(inner * base["se_ratio"]) if base["se_ratio"] > 0 and base["se_every"] > 0 else 0
        stages.append(X3DStage(depth=depth, width=width, inner=inner, se_dim=se_dim))
    return X3DNet(
        clip=clip,
        classes=doc["classes"],
        stem_width=round8(f["width"] * base["stem"]["width"]),
        stem_temporal_kernel=base["stem"]["temporal_kernel"],
        stages=tuple(stages),
        se_every=base["se_every"],
        head_width=base["head"]["width"],
        dropout=base["head"]["dropout"],
        block_temporal_kernel=base.get("block_temporal_kernel", 3),
    )


def cost(doc: dict, frames: int | None = None, crop: int | None = None) -> Cost:
    """Exact multiply-adds and params of the network :func:`resolve` describes."""
    net = resolve(doc, frames, crop)
    t, s = net.clip.frames, net.clip.crop
    tally = Tally()
    s = same_out(s, 2)
    tally.conv(3, net.stem_width, (1, 3, 3), (t, s, s))
    tally.conv(net.stem_width, net.stem_width, (net.stem_temporal_kernel, 1, 1), (t, s, s), groups=net.stem_width)
    tally.bn(net.stem_width)
    cin = net.stem_width
    for stage in net.stages:
        for b in range(stage.depth):
            s_in, s = s, (same_out(s, 2) if b == 0 else s)
            tally.conv(cin, stage.inner, (1, 1, 1), (t, s_in, s_in))
            tally.bn(stage.inner)
            tally.conv(stage.inner, stage.inner, (net.block_temporal_kernel, 3, 3), (t, s, s), groups=stage.inner)
            tally.bn(stage.inner)
            if stage.se_dim and net.has_se(b):
                tally.conv(stage.inner, stage.se_dim, (1, 1, 1), (1, 1, 1), bias=True)
                tally.conv(stage.se_dim, stage.inner, (1, 1, 1), (1, 1, 1), bias=True)
            tally.conv(stage.inner, stage.width, (1, 1, 1), (t, s, s))
            tally.bn(stage.width)
            if b == 0:
                tally.conv(cin, stage.width, (1, 1, 1), (t, s, s))
                if cin != stage.width:  # pytorchvideo: no shortcut BN when widths match (see docstring)
                    tally.bn(stage.width)
            cin = stage.width
    tally.conv(cin, net.head_inner, (1, 1, 1), (t, s, s))
    tally.bn(net.head_inner)
    tally.conv(net.head_inner, net.head_width, (1, 1, 1), (1, 1, 1))
    tally.linear(net.head_width, net.classes)
    return Cost(macs=tally.macs, params=tally.params, frames=t, size=net.clip.crop, profile=tally.profile)


def growth_error(parent: X3DNet, child: X3DNet) -> str | None:
    """Why ``child`` is not a growth of ``parent`` (``None`` when it is): a network morphism
    (:mod:`nas.models.morph`) can only add channels, bottleneck units, SE units and blocks, and keeps
    the classes, head width, SE placement, stage count and temporal kernels. Clip length, crop and frame
    stride are free: the same weights run on any input."""
    same = {"classes": (parent.classes, child.classes), "head width": (parent.head_width, child.head_width),
            "se_every": (parent.se_every, child.se_every), "stages": (len(parent.stages), len(child.stages)),
            "temporal kernels": ((parent.stem_temporal_kernel, parent.block_temporal_kernel),
                                 (child.stem_temporal_kernel, child.block_temporal_kernel))}
    for what, (a, b) in same.items():
        if a != b:
            return f"{what}: got {b} for a parent with {a}; allowed: the same"
    if child.stem_width < parent.stem_width:
        return f"stem width: got {child.stem_width} for a parent with {parent.stem_width}; allowed: a growth"
    for i, (p, c) in enumerate(zip(parent.stages, child.stages)):
        if c.depth < p.depth or c.width < p.width or c.inner < p.inner or c.se_dim < p.se_dim or \
                (p.se_dim == 0) != (c.se_dim == 0):
            return f"stages/{i}: got {c} for a parent with {p}; allowed: a growth of each"
    return None


def clip(doc: dict) -> Clip:
    """The clip the architecture is defined at."""
    return resolve(doc).clip


FAMILY = Family(name="x3d", fields=FIELDS, resolve=resolve, cost=cost, clip=clip)
