"""MoViNet: 3D MobileNetV3-style inverted bottlenecks searched per block and per layer (Kondratyuk
et al., CVPR 2021; layer semantics of the official TF Model Garden ``movinet_layers.py``).

Document fields (after the header)::

    classes: 600
    clip: {frames: 50, frame_stride: 5, crop: 172}
    activation: swish            # main activation (swish | hard_swish | relu)
    gating: sigmoid              # SE gate (sigmoid | hard_sigmoid)
    stem: {width: 8, kernel: 1x3x3, stride: [1, 2, 2]}
    blocks:
      - width: 8                 # output channels of every layer of the block
        stride: [1, 2, 2]        # stride of the block's first layer (others: 1)
        layers:                  # or {repeat: N, each: {kernel: ..., expand: ...}}
          - {kernel: 1x5x5, expand: 24}
      - ...
    head: {project: 480, width: 2048, dropout: 0.2}

Layer (official ``MovinetBlock``; convs bias-free, TF 'same' padding)::

    expand 1x1x1 -> BN -> act            (always present, even when expand == input width)
    depthwise kernel, stride -> BN -> act
    SE: global avg pool -> 1x1x1 (bias) -> act -> 1x1x1 (bias) -> gate -> x   (hidden = make_divisible(expand/4, 8))
    project 1x1x1 -> BN                  (no activation)
    ReZero scale (learnable scalar, init 0) ; + skip
    skip: identity if input width == width and stride 1, else
          [avg pool 1x3x3 s(1,2,2) 'same' if strided] -> 1x1x1 conv -> BN
    stem: conv kernel, stride -> BN -> act
    head: project 1x1x1 -> BN -> act -> global avg pool -> 1x1x1 (bias) to width -> act -> dropout
          -> 1x1x1 (bias) to classes
"""
from __future__ import annotations

from dataclasses import dataclass

from nas.cost import Clip, Cost, Tally, round8, same_out
from nas.dsl.schema import Enum, Field, Float, Int, Kernel, ListOf, Record, RepeatList
from nas.families import Family

__all__ = ["MovinetLayer", "MovinetNet", "resolve", "cost", "FAMILY", "parse_kernel"]

# MoViNet strides are spatial only and equal in H and W (the skip pools 1x3x3 at stride (1,2,2)).
_stride = Enum(([1, 1, 1], [1, 2, 2]))
_layer = Record({"kernel": Kernel(), "expand": Int(1, 65536)}, what="a layer")
FIELDS = {
    "classes": Field(Int(1, 100_000)),
    "clip": Field(Record({"frames": Int(1, 4096), "frame_stride": Int(1, 1000), "crop": Int(8, 4096)})),
    "activation": Field(Enum(("swish", "hard_swish", "relu"))),
    "gating": Field(Enum(("sigmoid", "hard_sigmoid"))),
    "stem": Field(Record({"width": Int(1, 4096), "kernel": Kernel(), "stride": _stride})),
    "blocks": Field(ListOf(Record({
        "width": Int(1, 65536),
        "stride": _stride,
        "layers": RepeatList(_layer, 1, 64),
    }, what="a block"), 1, 16)),
    "head": Field(Record({"project": Int(1, 65536), "width": Int(1, 65536), "dropout": Float(0.0, 1.0)})),
}


def parse_kernel(text: str) -> tuple[int, int, int]:
    """``'5x3x3'`` -> ``(5, 3, 3)`` (T, H, W)."""
    t, h, w = (int(v) for v in text.split("x"))
    return t, h, w


@dataclass(frozen=True)
class MovinetLayer:
    """One bottleneck layer with every width resolved."""

    cin: int
    cout: int
    expand: int
    kernel: tuple[int, int, int]
    stride: tuple[int, int, int]
    se_hidden: int

    @property
    def skip(self) -> str:
        """``identity``, ``conv`` (1x1x1 + BN) or ``pool_conv`` (avg pool, then 1x1x1 + BN)."""
        strided = self.stride != (1, 1, 1)
        if self.cin == self.cout and not strided:
            return "identity"
        return "pool_conv" if strided else "conv"


@dataclass(frozen=True)
class MovinetNet:
    """The concrete MoViNet network an architecture document describes."""

    clip: Clip
    classes: int
    activation: str
    gating: str
    stem_width: int
    stem_kernel: tuple[int, int, int]
    stem_stride: tuple[int, int, int]
    blocks: tuple[tuple[MovinetLayer, ...], ...]
    head_project: int
    head_width: int
    dropout: float


def resolve(doc: dict, frames: int | None = None, crop: int | None = None) -> MovinetNet:
    """Read the concrete network (``frames``/``crop`` override the clip)."""
    c = doc["clip"]
    clip = Clip(frames=frames or c["frames"], frame_stride=c["frame_stride"], crop=crop or c["crop"])
    cin = doc["stem"]["width"]
    blocks = []
    for block in doc["blocks"]:
        layers = []
        for i, layer in enumerate(block["layers"]):
            stride = tuple(block["stride"]) if i == 0 else (1, 1, 1)
            layers.append(MovinetLayer(
                cin=cin, cout=block["width"], expand=layer["expand"], kernel=parse_kernel(layer["kernel"]),
                stride=stride, se_hidden=round8(layer["expand"] * 0.25),  # type: ignore[arg-type]
            ))
            cin = block["width"]
        blocks.append(tuple(layers))
    return MovinetNet(
        clip=clip, classes=doc["classes"], activation=doc["activation"], gating=doc["gating"],
        stem_width=doc["stem"]["width"], stem_kernel=parse_kernel(doc["stem"]["kernel"]),
        stem_stride=tuple(doc["stem"]["stride"]),  # type: ignore[arg-type]
        blocks=tuple(blocks), head_project=doc["head"]["project"], head_width=doc["head"]["width"],
        dropout=doc["head"]["dropout"],
    )


def cost(doc: dict, frames: int | None = None, crop: int | None = None) -> Cost:
    """Exact multiply-adds and params of the network :func:`resolve` describes."""
    net = resolve(doc, frames, crop)
    t, s = net.clip.frames, net.clip.crop
    tally = Tally()
    t, s = same_out(t, net.stem_stride[0]), same_out(s, net.stem_stride[1])
    tally.conv(3, net.stem_width, net.stem_kernel, (t, s, s))
    tally.bn(net.stem_width)
    for block in net.blocks:
        for layer in block:
            t_in, s_in = t, s
            t, s = same_out(t, layer.stride[0]), same_out(s, layer.stride[1])
            tally.conv(layer.cin, layer.expand, (1, 1, 1), (t_in, s_in, s_in))
            tally.bn(layer.expand)
            tally.conv(layer.expand, layer.expand, layer.kernel, (t, s, s), groups=layer.expand)
            tally.bn(layer.expand)
            tally.conv(layer.expand, layer.se_hidden, (1, 1, 1), (1, 1, 1), bias=True)
            tally.conv(layer.se_hidden, layer.expand, (1, 1, 1), (1, 1, 1), bias=True)
            tally.conv(layer.expand, layer.cout, (1, 1, 1), (t, s, s))
            tally.bn(layer.cout)
            tally.scalar()  # ReZero
            if layer.skip != "identity":
                tally.conv(layer.cin, layer.cout, (1, 1, 1), (t, s, s))
                tally.bn(layer.cout)
    cin = net.blocks[-1][-1].cout
    tally.conv(cin, net.head_project, (1, 1, 1), (t, s, s))
    tally.bn(net.head_project)
    tally.conv(net.head_project, net.head_width, (1, 1, 1), (1, 1, 1), bias=True)
    tally.conv(net.head_width, net.classes, (1, 1, 1), (1, 1, 1), bias=True)
    return Cost(macs=tally.macs, params=tally.params, frames=net.clip.frames, size=net.clip.crop)


def clip(doc: dict) -> Clip:
    """The clip the architecture is defined at."""
    c = doc["clip"]
    return Clip(c["frames"], c["frame_stride"], c["crop"])


FAMILY = Family(name="movinet", fields=FIELDS, resolve=resolve, cost=cost, clip=clip)
