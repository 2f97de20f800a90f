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
    head: {project: 480, width: 2048, dropout: 0.2}   # optional head.activation: the classifier's
                                                    # activation (default: the main activation)

Optional stream-variant fields (absent = the base model; see ``nas.models.streaming``)::

    causal: true                 # causal in time: all k_t - 1 temporal padding in front (spatial TF
                                 # 'same'); enables the frame-by-frame streaming API
    conv_type: 2plus1d           # 3d (default) | 2plus1d: the depthwise k_t x k_h x k_w conv split into a
                                 # spatial 1 x k_h x k_w conv (strided) + BN + act and a temporal
                                 # k_t x 1 x 1 conv + its own BN + act (only when k_t > 1)
    se_type: 2plus3d             # 3d (default) | 2plus3d: the SE pools concat(CGAP, per-frame spatial
                                 # mean) (2 x expand channels, hidden make_divisible(expand/2, 8)) and
                                 # gates every frame
    positional_encoding: true    # sin/cos encoding of the frame index (learnable scale, init 0) added
                                 # to the pooled SE vector before its reduce conv (A3-A5 stream)

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
from nas.dsl.schema import Bool, Enum, Field, Float, Int, Kernel, ListOf, Record, RepeatList
from nas.families.base import Family

__all__ = ["MovinetLayer", "MovinetNet", "resolve", "cost", "FAMILY", "parse_kernel"]

# MoViNet strides are spatial only and equal in H and W (the skip pools 1x3x3 at stride (1,2,2)).
_stride = Enum(([1, 1, 1], [1, 2, 2]))
_activation = Enum(("swish", "hard_swish", "relu"))
CONV_TYPES = ("3d", "2plus1d")
SE_TYPES = ("3d", "2plus3d")
_layer = Record({"kernel": Kernel(), "expand": Int(1, 65536)}, what="a layer")
FIELDS = {
    "classes": Field(Int(1, 100_000)),
    "clip": Field(Record({"frames": Int(1, 4096), "frame_stride": Int(1, 1000), "crop": Int(8, 4096)})),
    "activation": Field(_activation),
    "gating": Field(Enum(("sigmoid", "hard_sigmoid"))),
    "stem": Field(Record({"width": Int(1, 4096), "kernel": Kernel(), "stride": _stride})),
    "blocks": Field(ListOf(Record({
        "width": Int(1, 65536),
        "stride": _stride,
        "layers": RepeatList(_layer, 1, 64),
    }, what="a block"), 1, 16)),
    "head": Field(Record({"project": Int(1, 65536), "width": Int(1, 65536), "dropout": Float(0.0, 1.0),
                          "activation": Field(_activation, required=False)})),
    # Stream-variant options; absent from base documents, so their content and hash are unchanged.
    "causal": Field(Bool(), required=False),
    "conv_type": Field(Enum(CONV_TYPES), required=False),
    "se_type": Field(Enum(SE_TYPES), required=False),
    "positional_encoding": Field(Bool(), required=False),
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
    """The concrete MoViNet network an architecture document describes.

    The last five fields describe the stream variants; their defaults are the base model.
    """

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
    causal: bool = False
    conv_type: str = "3d"
    se_type: str = "3d"
    positional_encoding: bool = False
    head_activation: str | None = None

    @property
    def is_base(self) -> bool:
        """Whether this is the base (non-causal, 3D, plain-SE) model that ``Movinet`` builds."""
        return (not self.causal and self.conv_type == "3d" and self.se_type == "3d"
                and not self.positional_encoding and self.head_activation in (None, self.activation))

    @property
    def classifier_activation(self) -> str:
        """The activation after the head's pre-classifier conv."""
        return self.head_activation or self.activation

    @property
    def se_per_frame(self) -> bool:
        """Whether the SE convs run once per frame (causal pooling or 2plus3d) instead of once per clip."""
        return self.causal or self.se_type == "2plus3d"


def resolve(doc: dict, frames: int | None = None, crop: int | None = None) -> MovinetNet:
    """Read the concrete network (``frames``/``crop`` override the clip)."""
    c = doc["clip"]
    clip = Clip(frames=frames or c["frames"], frame_stride=c["frame_stride"], crop=crop or c["crop"])
    se_type = doc.get("se_type", "3d")
    # official make_divisible(0.25 * expand * m, 8) with m = 2 when the SE input is 2 x expand wide
    se_mult = 2 if se_type == "2plus3d" else 1
    cin = doc["stem"]["width"]
    blocks = []
    for block in doc["blocks"]:
        layers = []
        for i, layer in enumerate(block["layers"]):
            stride = tuple(block["stride"]) if i == 0 else (1, 1, 1)
            layers.append(MovinetLayer(
                cin=cin, cout=block["width"], expand=layer["expand"], kernel=parse_kernel(layer["kernel"]),
                stride=stride, se_hidden=round8(layer["expand"] * 0.25 * se_mult),  # type: ignore[arg-type]
            ))
            cin = block["width"]
        blocks.append(tuple(layers))
    return MovinetNet(
        clip=clip, classes=doc["classes"], activation=doc["activation"], gating=doc["gating"],
        stem_width=doc["stem"]["width"], stem_kernel=parse_kernel(doc["stem"]["kernel"]),
        stem_stride=tuple(doc["stem"]["stride"]),  # type: ignore[arg-type]
        blocks=tuple(blocks), head_project=doc["head"]["project"], head_width=doc["head"]["width"],
        dropout=doc["head"]["dropout"], causal=doc.get("causal", False), conv_type=doc.get("conv_type", "3d"),
        se_type=se_type, positional_encoding=doc.get("positional_encoding", False),
        head_activation=doc["head"].get("activation"),
    )


def _tally_conv(tally: Tally, net: MovinetNet, cin: int, cout: int, kernel: tuple[int, int, int],
                out_thw: tuple[int, int, int], groups: int = 1) -> None:
    """A kernel-``kernel`` conv + BN, or its (2+1)D split: spatial 1 x k_h x k_w + BN, then (when
    k_t > 1) temporal k_t x 1 x 1 + its own BN, both at the (strided) output size."""
    if net.conv_type == "2plus1d":
        tally.conv(cin, cout, (1, *kernel[1:]), out_thw, groups=groups)
        tally.bn(cout)
        if kernel[0] > 1:
            tally.conv(cout, cout, (kernel[0], 1, 1), out_thw, groups=cout if groups > 1 else 1)
            tally.bn(cout)
    else:
        tally.conv(cin, cout, kernel, out_thw, groups=groups)
        tally.bn(cout)


def cost(doc: dict, frames: int | None = None, crop: int | None = None) -> Cost:
    """Exact multiply-adds and params of the network :func:`resolve` describes."""
    net = resolve(doc, frames, crop)
    t, s = net.clip.frames, net.clip.crop
    tally = Tally()
    t, s = same_out(t, net.stem_stride[0]), same_out(s, net.stem_stride[1])
    _tally_conv(tally, net, 3, net.stem_width, net.stem_kernel, (t, s, s))
    se_rows = t if net.se_per_frame else 1  # causal / 2plus3d SE gates every frame separately
    se_in = 2 if net.se_type == "2plus3d" else 1
    for block in net.blocks:
        for layer in block:
            t_in, s_in = t, s
            t, s = same_out(t, layer.stride[0]), same_out(s, layer.stride[1])
            tally.conv(layer.cin, layer.expand, (1, 1, 1), (t_in, s_in, s_in))
            tally.bn(layer.expand)
            _tally_conv(tally, net, layer.expand, layer.expand, layer.kernel, (t, s, s), groups=layer.expand)
            tally.conv(se_in * layer.expand, layer.se_hidden, (1, 1, 1), (se_rows, 1, 1), bias=True)
            tally.conv(layer.se_hidden, layer.expand, (1, 1, 1), (se_rows, 1, 1), bias=True)
            if net.positional_encoding:
                tally.scalar()  # the encoding's learnable scale
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
    return Cost(macs=tally.macs, params=tally.params, frames=net.clip.frames, size=net.clip.crop, profile=tally.profile)


def clip(doc: dict) -> Clip:
    """The clip the architecture is defined at."""
    c = doc["clip"]
    return Clip(c["frames"], c["frame_stride"], c["crop"])


FAMILY = Family(name="movinet", fields=FIELDS, resolve=resolve, cost=cost, clip=clip)
