"""TSN-2D: a per-frame 2D backbone with a choice of cheap temporal module in every block.

TSN (Wang et al., ECCV 2016) samples ``T`` segments of a video, runs a 2D network on each frame and
averages (the *consensus*). TSM, TAM, VSN's channel shuffle and STH kernels each give such a network
temporal modelling at little or no cost; bLVNet (Fan et al., NeurIPS 2019) feeds it twice the frames
through a big-little front end. This family makes all of them per-block choices of one space.

Document fields (after the header)::

    classes: 400
    clip: {frames: 8, frame_stride: 8, crop: 224}   # T segments, one frame every frame_stride source
                                                    # frames (the segment length), crop x crop pixels
    activation: relu6            # relu6 | relu | hard_swish | swish
    stem: {width: 32}            # conv 1x3x3 s(1,2,2) -> BN -> act
    stages:
      - width: 16                # output channels of every layer of the stage
        stride: 1                # spatial stride of the stage's first layer (1 | 2)
        layers:                  # or {repeat: N, each: {...}}
          - {type: ir, expand: 1, kernel: 3, se: false, temporal: none}
      - ...
    head: {width: 1280, dropout: 0.2}    # width 0: no head conv (ResNet style)
    temporal: {shift_div: 8, tam_frames: 3}
    blvnet: {stages: 0, little: 0.5}     # stages 0: off

Layers (every conv is a ``Conv3d`` with a 1xkxk kernel, i.e. a 2D conv applied to each frame; bias-free,
symmetric ``k // 2`` padding; ``inner = max(1, round(cin * expand))``)::

    ir (MobileNetV2/V3 inverted bottleneck):
        [expand 1x1 -> BN -> act]      (left out when expand == 1, as in MobileNetV2)
        depthwise 1xkxk, stride -> BN -> act
        [SE per frame: pool HxW -> 1x1 (bias) -> ReLU -> 1x1 (bias) -> hard sigmoid -> x]
        project 1x1 -> BN               (no activation); + x when stride 1 and cin == cout
    bottleneck (ResNet v1.5 bottleneck; expand 0.25 for a ResNet-50 block, 0.5 / 1 in first blocks):
        1x1 -> BN -> act -> 1xkxk, stride -> BN -> act -> [SE] -> 1x1 -> BN ; + shortcut ; act
        shortcut: identity when stride 1 and cin == cout, else 1x1 conv with the stride -> BN
    SE hidden width = round8(inner / 4) (MobileNetV3).

``temporal`` of a layer (the operators are documented in :mod:`nas.models.temporal`):

* ``none`` -- plain TSN.
* ``tsm`` -- bidirectional (offline) shift of ``C // shift_div`` channels from the next frame and as
  many from the previous one, zero-filled at the clip ends; ``tsm_online`` -- unidirectional
  (streamable): ``C // shift_div`` channels from the previous frame only. Both use *residual
  placement*: the shift acts on the input of the layer's residual branch, the identity path keeps
  the unshifted features. 0 MACs, 0 params.
* ``tam`` -- TAM: a learnable per-channel weighted sum over ``tam_frames`` neighbouring frames (a
  depthwise ``tam_frames`` x1x1 conv), same placement as the shift. ``C * tam_frames`` MACs per
  position, ``C * tam_frames`` params.
* ``shuffle_compact`` -- VSN channel shuffle across frames before the layer's kxk conv and restore
  right after it; ``shuffle_headtail`` -- shuffle the branch input, restore the branch output.
  0 MACs, 0 params.
* ``sth_merge`` / ``sth_hybrid`` / ``sth_hybrid_att`` -- STH kernels replace the layer's kxk conv:
  merge gives ``C // 4`` output channels from 3x1x1 temporal kernels and the rest from 1xkxk spatial
  ones; hybrid gives every output both (temporal from one input quarter, spatial from the other three),
  summed, or fused by attention (``_att``). On a depthwise conv (``ir``) a channel sees only itself,
  so merge makes ``C // 4`` channels temporal and hybrid gives every channel both kernels.

``blvnet`` (bLVNet big-little front end; ``stages: K > 0``): the clip's ``T`` frames are taken in
``P = ceil(T / 2)`` pairs. A *big* branch (the stem and the first ``K`` stages at full width) sees the
even frames at half resolution (2x2 average pooling of the input); a *little* branch (the same layers
with every width ``round8(width * little)``) sees the odd frames at full resolution (for odd ``T`` the
last frame feeds both). The merge upsamples the big output (nearest) to the little's size and adds a
1x1 conv -> BN of the little output, then act; the remaining stages and the head run on the ``P`` merged
frames. The network sees ``T`` frames at about the cost of ``P``.

Head: [1x1 conv -> BN -> act] -> average over HxW per frame -> average over frames (the consensus;
averaging features before the linear classifier equals averaging the per-frame scores) -> dropout ->
linear to classes (bias).
"""
from __future__ import annotations

from dataclasses import dataclass

from nas.cost import Clip, Cost, Tally, round8, same_out
from nas.dsl.schema import Bool, Enum, Field, Float, Int, ListOf, Record, RepeatList
from nas.errors import DSLError
from nas.families.base import Family

__all__ = [
    "TEMPORAL_OPS", "BLOCK_TYPES", "ACTIVATIONS", "TsnLayer", "TemporalConfig", "BLVNetConfig", "TsnNet",
    "resolve", "cost", "clip", "validate", "FAMILY", "sth_quarters",
]

TEMPORAL_OPS = (
    "none", "tsm", "tsm_online", "tam", "shuffle_compact", "shuffle_headtail",
    "sth_merge", "sth_hybrid", "sth_hybrid_att",
)
BLOCK_TYPES = ("ir", "bottleneck")
ACTIVATIONS = ("relu6", "relu", "hard_swish", "swish")

_layer = Record({
    "type": Enum(BLOCK_TYPES),
    "expand": Float(0.0625, 16.0),
    "kernel": Enum((3, 5, 7)),
    "se": Bool(),
    "temporal": Enum(TEMPORAL_OPS),
}, what="a layer")
FIELDS = {
    "classes": Field(Int(1, 100_000)),
    "clip": Field(Record({"frames": Int(1, 4096), "frame_stride": Int(1, 1000), "crop": Int(8, 4096)})),
    "activation": Field(Enum(ACTIVATIONS)),
    "stem": Field(Record({"width": Int(1, 4096)})),
    "stages": Field(ListOf(Record({
        "width": Int(1, 65536),
        "stride": Enum((1, 2)),
        "layers": RepeatList(_layer, 1, 64),
    }, what="a stage"), 1, 16)),
    "head": Field(Record({"width": Int(0, 65536), "dropout": Float(0.0, 1.0)})),
    "temporal": Field(Record({"shift_div": Int(2, 64), "tam_frames": Enum((3, 5, 7))}),
                      required=False, default={"shift_div": 8, "tam_frames": 3}),
    "blvnet": Field(Record({"stages": Int(0, 16), "little": Float(0.0625, 1.0)}),
                    required=False, default={"stages": 0, "little": 0.5}),
}


@dataclass(frozen=True)
class TsnLayer:
    """One block with every width resolved.

    Attributes:
        type: ``ir`` (inverted bottleneck, depthwise kxk) or ``bottleneck`` (ResNet, full kxk).
        cin: input channels.
        cout: output channels.
        inner: channels of the kxk conv (``max(1, round(cin * expand))``).
        expand_conv: whether the layer has its first 1x1 conv (``ir`` with expand 1 has none).
        kernel: spatial kernel k of the 1xkxk conv.
        stride: spatial stride of the kxk conv.
        se_hidden: SE bottleneck width, 0 for no SE.
        temporal: the temporal module (one of :data:`TEMPORAL_OPS`).
    """

    type: str
    cin: int
    cout: int
    inner: int
    expand_conv: bool
    kernel: int
    stride: int
    se_hidden: int
    temporal: str

    @property
    def depthwise(self) -> bool:
        """Whether the kxk conv is depthwise (``ir``)."""
        return self.type == "ir"

    @property
    def identity_skip(self) -> bool:
        """Whether the layer adds its input unchanged (stride 1, same width)."""
        return self.stride == 1 and self.cin == self.cout

    @property
    def conv_skip(self) -> bool:
        """Whether the layer has a 1x1 conv -> BN shortcut (a ``bottleneck`` that changes shape)."""
        return self.type == "bottleneck" and not self.identity_skip


@dataclass(frozen=True)
class TemporalConfig:
    """Hyper-parameters shared by every temporal module of a network."""

    shift_div: int  # TSM shifts C // shift_div channels each way (online: one way)
    tam_frames: int  # TAM's r: frames aggregated (odd, centred)


@dataclass(frozen=True)
class BLVNetConfig:
    """The big-little front end (``stages == 0``: off).

    Attributes:
        stages: how many leading stages are split into a big and a little branch.
        little: width ratio of the little branch.
        little_stem_width: the little branch's stem width.
        little_stages: the little branch's layers (the first ``stages`` stages, narrower).
    """

    stages: int
    little: float
    little_stem_width: int
    little_stages: tuple[tuple[TsnLayer, ...], ...]

    @property
    def enabled(self) -> bool:
        """Whether the network has a big-little front end."""
        return self.stages > 0


@dataclass(frozen=True)
class TsnNet:
    """The concrete TSN-2D network an architecture document describes.

    ``stages`` is the main (big) network: with bLVNet on, its first ``blvnet.stages`` stages form the
    big branch and ``blvnet.little_stages`` the little one.
    """

    clip: Clip
    classes: int
    activation: str
    stem_width: int
    stages: tuple[tuple[TsnLayer, ...], ...]
    head_width: int
    dropout: float
    temporal: TemporalConfig
    blvnet: BLVNetConfig

    @property
    def features(self) -> int:
        """Channels entering the classifier."""
        return self.head_width or self.stages[-1][-1].cout

    @property
    def merge_widths(self) -> tuple[int, int]:
        """(little, big) channels at the bLVNet merge."""
        k = self.blvnet.stages
        return self.blvnet.little_stages[k - 1][-1].cout, self.stages[k - 1][-1].cout


def _stage_layers(stages: list[dict], cin: int, scale: float | None) -> tuple[tuple[TsnLayer, ...], ...]:
    """Resolve stages from ``cin`` input channels; ``scale`` narrows every width (the little branch)."""
    out = []
    for stage in stages:
        width = stage["width"] if scale is None else round8(stage["width"] * scale)
        layers = []
        for i, layer in enumerate(stage["layers"]):
            inner = max(1, round(cin * layer["expand"]))
            layers.append(TsnLayer(
                type=layer["type"], cin=cin, cout=width, inner=inner,
                expand_conv=not (layer["type"] == "ir" and layer["expand"] == 1.0),
                kernel=layer["kernel"], stride=stage["stride"] if i == 0 else 1,
                se_hidden=round8(inner / 4) if layer["se"] else 0, temporal=layer["temporal"],
            ))
            cin = width
        out.append(tuple(layers))
    return tuple(out)


def resolve(doc: dict, frames: int | None = None, crop: int | None = None) -> TsnNet:
    """Read the concrete network (``frames``/``crop`` override the clip)."""
    c = doc["clip"]
    clip_ = Clip(frames=frames or c["frames"], frame_stride=c["frame_stride"], crop=crop or c["crop"])
    t = doc.get("temporal") or {"shift_div": 8, "tam_frames": 3}
    b = doc.get("blvnet") or {"stages": 0, "little": 0.5}
    stem = doc["stem"]["width"]
    k = b["stages"]
    little_stem = round8(stem * b["little"]) if k else 0
    return TsnNet(
        clip=clip_, classes=doc["classes"], activation=doc["activation"], stem_width=stem,
        stages=_stage_layers(doc["stages"], stem, None),
        head_width=doc["head"]["width"], dropout=doc["head"]["dropout"],
        temporal=TemporalConfig(shift_div=t["shift_div"], tam_frames=t["tam_frames"]),
        blvnet=BLVNetConfig(stages=k, little=b["little"], little_stem_width=little_stem,
                            little_stages=_stage_layers(doc["stages"][:k], little_stem, b["little"]) if k else ()),
    )


def sth_quarters(channels: int) -> tuple[int, int, int, int]:
    """Sizes of the four channel quarters STH hybrid kernels use (``i * C // 4`` boundaries)."""
    bounds = [i * channels // 4 for i in range(5)]
    return tuple(bounds[i + 1] - bounds[i] for i in range(4))  # type: ignore[return-value]


def _spatial_conv_cost(tally: Tally, layer: TsnLayer, t: int, s: int, tam_frames: int) -> None:
    """The layer's kxk conv (or the STH kernels replacing it) and its BN, at output ``t x s x s``."""
    c, k, op = layer.inner, layer.kernel, layer.temporal
    out = (t, s, s)
    if not op.startswith("sth"):
        tally.conv(c, c, (1, k, k), out, groups=c if layer.depthwise else 1)
    elif op == "sth_merge":
        q = c // 4  # output channels from temporal kernels
        if layer.depthwise:
            tally.conv(q, q, (3, 1, 1), out, groups=q)
            tally.conv(c - q, c - q, (1, k, k), out, groups=c - q)
        else:
            tally.conv(c, q, (3, 1, 1), out)
            tally.conv(c, c - q, (1, k, k), out)
    else:  # hybrid: temporal + spatial outputs summed (or fused by attention)
        if layer.depthwise:
            tally.conv(c, c, (3, 1, 1), out, groups=c)
            tally.conv(c, c, (1, k, k), out, groups=c)
        else:
            for n in sth_quarters(c):
                tally.conv(n, n, (3, 1, 1), out)  # output quarter i from input quarter i
                tally.conv(c - n, n, (1, k, k), out)  # ... and from the other three quarters
        if op == "sth_hybrid_att":
            hidden = round8(c / 4)
            tally.conv(c, hidden, (1, 1, 1), (t, 1, 1), bias=True)
            tally.conv(hidden, 2 * c, (1, 1, 1), (t, 1, 1), bias=True)
    tally.bn(c)


def _layer_cost(tally: Tally, layer: TsnLayer, t: int, s: int, tam_frames: int) -> int:
    """Add one layer at input ``t x s x s``; return the output size."""
    s_out = same_out(s, layer.stride)
    if layer.temporal == "tam":
        tally.conv(layer.cin, layer.cin, (tam_frames, 1, 1), (t, s, s), groups=layer.cin)
    if layer.expand_conv:
        tally.conv(layer.cin, layer.inner, (1, 1, 1), (t, s, s))
        tally.bn(layer.inner)
    _spatial_conv_cost(tally, layer, t, s_out, tam_frames)
    if layer.se_hidden:
        tally.conv(layer.inner, layer.se_hidden, (1, 1, 1), (t, 1, 1), bias=True)
        tally.conv(layer.se_hidden, layer.inner, (1, 1, 1), (t, 1, 1), bias=True)
    tally.conv(layer.inner, layer.cout, (1, 1, 1), (t, s_out, s_out))
    tally.bn(layer.cout)
    if layer.conv_skip:
        tally.conv(layer.cin, layer.cout, (1, 1, 1), (t, s_out, s_out))
        tally.bn(layer.cout)
    return s_out


def _branch_cost(tally: Tally, stem: int, stages: tuple[tuple[TsnLayer, ...], ...], t: int, s: int,
                 tam_frames: int) -> int:
    """Stem and stages at input ``t x s x s``; return the output size."""
    s = same_out(s, 2)
    tally.conv(3, stem, (1, 3, 3), (t, s, s))
    tally.bn(stem)
    for stage in stages:
        for layer in stage:
            s = _layer_cost(tally, layer, t, s, tam_frames)
    return s


def cost(doc: dict, frames: int | None = None, crop: int | None = None) -> Cost:
    """Exact multiply-adds and params of the network :func:`resolve` describes."""
    net = resolve(doc, frames, crop)
    t, s = net.clip.frames, net.clip.crop
    r = net.temporal.tam_frames
    tally = Tally()
    rest = net.stages
    if net.blvnet.enabled:
        k = net.blvnet.stages
        t = -(-t // 2)  # frame pairs
        _branch_cost(tally, net.stem_width, net.stages[:k], t, same_out(s, 2), r)  # big: even frames, s/2
        s = _branch_cost(tally, net.blvnet.little_stem_width, net.blvnet.little_stages, t, s, r)  # little
        little, big = net.merge_widths
        tally.conv(little, big, (1, 1, 1), (t, s, s))
        tally.bn(big)
        rest = net.stages[k:]
        for stage in rest:
            for layer in stage:
                s = _layer_cost(tally, layer, t, s, r)
    else:
        s = _branch_cost(tally, net.stem_width, rest, t, s, r)
    if net.head_width:
        tally.conv(net.stages[-1][-1].cout, net.head_width, (1, 1, 1), (t, s, s))
        tally.bn(net.head_width)
    tally.linear(net.features, net.classes)
    return Cost(macs=tally.macs, params=tally.params, frames=net.clip.frames, size=net.clip.crop, profile=tally.profile)


def clip(doc: dict) -> Clip:
    """The clip the architecture is defined at."""
    c = doc["clip"]
    return Clip(c["frames"], c["frame_stride"], c["crop"])


def validate(doc: dict) -> None:
    """Checks across fields that the schema cannot express.

    Raises:
        DSLError: bLVNet splitting more stages than the network has, or STH kernels on a layer whose
            kxk conv has fewer than 4 channels (STH splits them into quarters).
    """
    b = doc.get("blvnet") or {"stages": 0}
    if b["stages"] > len(doc["stages"]):
        raise DSLError("blvnet/stages", b["stages"], f"an integer in [0, {len(doc['stages'])}] (the number of stages)")
    net = resolve(doc)
    layers = [(f"stages/{i}/layers/{j}", layer) for i, st in enumerate(net.stages) for j, layer in enumerate(st)]
    layers += [(f"stages/{i}/layers/{j} (little branch)", layer)
               for i, st in enumerate(net.blvnet.little_stages) for j, layer in enumerate(st)]
    for path, layer in layers:
        if layer.temporal.startswith("sth") and layer.inner < 4:
            raise DSLError(f"{path}/temporal", layer.temporal,
                           "an STH kernel only where the kxk conv has >= 4 channels "
                           f"(this layer's has {layer.inner}: raise expand or width)")


FAMILY = Family(name="tsn2d", fields=FIELDS, resolve=resolve, cost=cost, clip=clip, validate=validate)
