"""TSN-2D models in PyTorch, built from a resolved :class:`~nas.families.tsn2d.TsnNet`.

The network is 2D per frame, written with ``Conv3d`` layers whose kernels are ``1 x k x k``: the
activations stay ``(B, C, T, H, W)`` from input to head, so the temporal modules of
:mod:`nas.models.temporal` slot in between convs without reshapes, and the whole model accepts (and
converts with ``model.to(memory_format=torch.channels_last_3d)``) the trainer's 5D clips in either
memory format. Layer semantics, placements and the cost of every part: :mod:`nas.families.tsn2d`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nas.families.tsn2d import BLVNetConfig, TemporalConfig, TsnLayer, TsnNet
from nas.models.layers import init_conv_bn_, init_residual_branches_
from nas.models.temporal import FrameShuffle, STHConv, TemporalAggregation, TemporalShift

__all__ = ["ConvBn", "FrameSE", "TsnBlock", "Branch", "TSN2D", "build_tsn2d", "BUILDER"]

_ACTIVATIONS = {"relu6": nn.ReLU6, "relu": nn.ReLU, "hard_swish": nn.Hardswish, "swish": nn.SiLU}


def make_activation(name: str) -> nn.Module:
    """A fresh activation module (``relu6``, ``relu``, ``hard_swish``, ``swish``)."""
    return _ACTIVATIONS[name]()


class ConvBn(nn.Sequential):
    """Bias-free per-frame conv (``1 x k x k``, symmetric padding) -> BN -> optional activation.

    Args:
        cin: input channels.
        cout: output channels.
        kernel: spatial kernel k.
        stride: spatial stride.
        groups: channel groups.
        activation: activation name, or None.
    """

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 activation: str | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, (1, kernel, kernel), (1, stride, stride), (0, kernel // 2, kernel // 2),
                              groups=groups, bias=False)
        self.bn = nn.BatchNorm3d(cout)
        if activation is not None:
            self.act = make_activation(activation)


class FrameSE(nn.Module):
    """Squeeze-excitation per frame (MobileNetV3): pool HxW -> 1x1 (bias) -> ReLU -> 1x1 (bias) ->
    hard sigmoid -> scale. Pooling per frame keeps the network frame-local (no leak across time).

    Args:
        channels: input (and output) channels.
        hidden: bottleneck channels.
    """

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.reduce = nn.Conv3d(channels, hidden, 1)
        self.act = nn.ReLU()
        self.expand = nn.Conv3d(hidden, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale each channel of each frame by its gate."""
        s = x.mean(dim=(3, 4), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(s))))


class TsnBlock(nn.Module):
    """One layer: an inverted bottleneck (``ir``) or a ResNet bottleneck, with its temporal module.

    Flow (brackets: present only for some layers / modules)::

        x -> [shift | TAM | shuffle (headtail)] -> [expand 1x1 -> BN -> act]
          -> [shuffle (compact)] -> kxk conv or STH kernels -> [restore (compact)] -> BN -> act
          -> [SE] -> project 1x1 -> BN -> [restore (headtail)] -> + [x | shortcut(x)] -> [act (bottleneck)]

    Args:
        layer: the resolved layer.
        activation: main activation name.
        temporal: shared temporal hyper-parameters.
    """

    def __init__(self, layer: TsnLayer, activation: str, temporal: TemporalConfig) -> None:
        super().__init__()
        self.layer = layer
        op = layer.temporal
        self.pre: nn.Module | None = None
        if op in ("tsm", "tsm_online"):
            self.pre = TemporalShift(temporal.shift_div, online=op == "tsm_online")
        elif op == "tam":
            self.pre = TemporalAggregation(layer.cin, temporal.tam_frames, temporal.shift_div)
        self.shuffle = FrameShuffle() if op.startswith("shuffle") else None
        self.expand = ConvBn(layer.cin, layer.inner, activation=activation) if layer.expand_conv else None
        c, k, s = layer.inner, layer.kernel, layer.stride
        if op.startswith("sth"):
            self.spatial: nn.Module = STHConv(c, k, s, mode="merge" if op == "sth_merge" else "hybrid",
                                              depthwise=layer.depthwise, attention=op == "sth_hybrid_att")
        else:
            self.spatial = nn.Conv3d(c, c, (1, k, k), (1, s, s), (0, k // 2, k // 2),
                                     groups=c if layer.depthwise else 1, bias=False)
        self.bn = nn.BatchNorm3d(c)
        self.act = make_activation(activation)
        self.se = FrameSE(c, layer.se_hidden) if layer.se_hidden else None
        self.project = ConvBn(c, layer.cout)
        self.shortcut = ConvBn(layer.cin, layer.cout, stride=s) if layer.conv_skip else None
        self.out_act = make_activation(activation) if layer.type == "bottleneck" else None

    @property
    def residual_scale(self) -> torch.Tensor | None:
        """What scales the residual branch: its last BN's gamma, or ``None`` for a layer without a skip
        (:func:`~nas.models.layers.init_residual_branches_`)."""
        return self.project.bn.weight if self.layer.identity_skip or self.layer.conv_skip else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, cin, T, H, W) -> (B, cout, T, H / stride, W / stride)."""
        op = self.layer.temporal
        y = x
        if self.pre is not None:
            y = self.pre(y)  # residual placement: the identity path below keeps the unshifted x
        elif op == "shuffle_headtail":
            y = self.shuffle(y)
        if self.expand is not None:
            y = self.expand(y)
        if op == "shuffle_compact":
            y = self.shuffle(self.spatial(self.shuffle(y)))
        else:
            y = self.spatial(y)
        y = self.act(self.bn(y))
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        if op == "shuffle_headtail":
            y = self.shuffle(y)  # restore
        if self.layer.identity_skip:
            y = y + x
        elif self.shortcut is not None:
            y = y + self.shortcut(x)
        return y if self.out_act is None else self.out_act(y)


class Branch(nn.Sequential):
    """Stem (conv 1x3x3 s(1,2,2) -> BN -> act) followed by the layers of some stages.

    Args:
        stem_width: stem channels.
        stages: resolved layers per stage.
        activation: main activation name.
        temporal: shared temporal hyper-parameters.
    """

    def __init__(self, stem_width: int, stages: tuple[tuple[TsnLayer, ...], ...], activation: str,
                 temporal: TemporalConfig) -> None:
        super().__init__()
        self.stem = ConvBn(3, stem_width, 3, 2, activation=activation)
        self.layers = nn.Sequential(*(TsnBlock(layer, activation, temporal) for stage in stages for layer in stage))


def _pairs(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """bLVNet input split: (even frames, odd frames), ``ceil(T / 2)`` each; for odd T the last frame
    is used by both branches."""
    even, odd = x[:, :, 0::2], x[:, :, 1::2]
    if x.shape[2] % 2:
        odd = torch.cat([odd, x[:, :, -1:]], dim=2)
    return even, odd


class BigLittle(nn.Module):
    """bLVNet front end: big branch on even frames at half resolution, little branch (narrower) on odd
    frames at full resolution, merged (big upsampled, little through 1x1 -> BN, added, act).

    Args:
        net: the resolved network (its first ``net.blvnet.stages`` stages form the big branch).
    """

    def __init__(self, net: TsnNet) -> None:
        super().__init__()
        cfg: BLVNetConfig = net.blvnet
        self.big = Branch(net.stem_width, net.stages[:cfg.stages], net.activation, net.temporal)
        self.little = Branch(cfg.little_stem_width, cfg.little_stages, net.activation, net.temporal)
        little, big = net.merge_widths
        self.merge = ConvBn(little, big)
        self.act = make_activation(net.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, C, ceil(T / 2), H', W') merged features."""
        even, odd = _pairs(x)
        big = self.big(F.avg_pool3d(even, (1, 2, 2), (1, 2, 2), ceil_mode=True))
        little = self.little(odd)
        big = F.interpolate(big, size=little.shape[2:], mode="nearest")
        return self.act(big + self.merge(little))


class TSN2D(nn.Module):
    """TSN-style video network: per-frame 2D backbone with temporal modules, average consensus.

    Modules: ``front`` (a :class:`Branch`, or :class:`BigLittle` with bLVNet), ``layers`` (the stages
    after the bLVNet merge; empty without it), ``head_conv`` (optional), ``dropout``, ``fc``.

    Args:
        net: the resolved network description.
    """

    def __init__(self, net: TsnNet) -> None:
        super().__init__()
        self.net = net
        k = net.blvnet.stages
        if net.blvnet.enabled:
            self.front: nn.Module = BigLittle(net)
            rest = net.stages[k:]
        else:
            self.front = Branch(net.stem_width, net.stages, net.activation, net.temporal)
            rest = ()
        self.layers = nn.Sequential(*(TsnBlock(layer, net.activation, net.temporal) for st in rest for layer in st))
        self.head_conv = (ConvBn(net.stages[-1][-1].cout, net.head_width, activation=net.activation)
                          if net.head_width else None)
        self.dropout = nn.Dropout(net.dropout)
        self.fc = nn.Linear(net.features, net.classes)
        self._init_weights()

    def _init_weights(self) -> None:
        init_conv_bn_(self)
        for m in self.modules():
            if isinstance(m, TemporalAggregation):
                m.reset_parameters()  # TAM starts as the TSM shift, not as a random conv
        init_residual_branches_(self, zero=True)  # residual blocks start as their shortcut
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) clip of T segments -> (B, classes) logits."""
        y = self.layers(self.front(x))
        if self.head_conv is not None:
            y = self.head_conv(y)
        # per-frame global pooling, then the consensus (average over frames); the classifier is
        # linear, so this equals averaging the per-frame class scores as TSN does
        y = y.mean(dim=(3, 4)).mean(dim=2)
        return self.fc(self.dropout(y))


def build_tsn2d(net: TsnNet) -> nn.Module:
    """Build the TSN-2D model ``net`` describes, freshly initialised.

    Args:
        net: the resolved description (:func:`nas.families.tsn2d.resolve`).

    Returns:
        The model; input (B, 3, T, H, W), output (B, classes) logits.
    """
    return TSN2D(net)


BUILDER = build_tsn2d
