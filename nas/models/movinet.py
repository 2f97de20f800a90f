"""MoViNet base (non-causal) models in PyTorch, built from a resolved :class:`~nas.families.movinet.MovinetNet`.

Mirrors the official TF Model Garden ``movinet_layers.py`` (see :mod:`nas.families.movinet`): TF
'same' padding everywhere, BN eps 1e-3 and Keras momentum 0.99, a ReZero scalar (init 0) on every
residual branch, and a ResNet-D style pooled skip on strided layers.
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from nas.families.movinet import MovinetLayer, MovinetNet
from nas.models.layers import AvgPool3dSame, Conv3dSame, SqueezeExcite3d, init_conv_bn_, make_activation

__all__ = ["ConvBn", "Movinet", "MovinetBottleneck", "MovinetHead"]

# Keras momentum 0.99 keeps 99 % of the running statistic; PyTorch's momentum is the new-sample weight.
BatchNorm = partial(nn.BatchNorm3d, eps=1e-3, momentum=0.01)


class ConvBn(nn.Sequential):
    """Bias-free :class:`Conv3dSame` -> BN -> optional activation (modules ``conv``, ``bn``, ``act``).

    Args:
        cin: input channels.
        cout: output channels.
        kernel: (T, H, W) kernel.
        stride: (T, H, W) stride.
        groups: channel groups.
        activation: activation name, or None for none.
    """

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int] = (1, 1, 1),
                 stride: tuple[int, int, int] = (1, 1, 1), groups: int = 1, activation: str | None = None) -> None:
        super().__init__()
        self.conv = Conv3dSame(cin, cout, kernel, stride, groups=groups, bias=False)
        self.bn = BatchNorm(cout)
        if activation is not None:
            self.act = make_activation(activation)


class MovinetBottleneck(nn.Module):
    """One MoViNet layer: expand -> depthwise -> SE -> project, scaled by ReZero, plus the skip.

    Args:
        layer: the resolved layer (widths, kernel, stride, SE width).
        activation: main activation name.
        gating: SE gate name.
    """

    def __init__(self, layer: MovinetLayer, activation: str, gating: str) -> None:
        super().__init__()
        self.expansion = ConvBn(layer.cin, layer.expand, activation=activation)
        self.feature = ConvBn(layer.expand, layer.expand, layer.kernel, layer.stride, groups=layer.expand,
                              activation=activation)
        self.se = SqueezeExcite3d(layer.expand, layer.se_hidden, activation=activation, gate=gating)
        self.projection = ConvBn(layer.expand, layer.cout)
        # One learnable scalar, init 0: the layer starts as its skip path (official ``Scale``).
        self.rezero = nn.Parameter(torch.zeros(()))
        self.skip: nn.Module | None = None
        if layer.skip != "identity":
            skip: list[nn.Module] = []
            if layer.skip == "pool_conv":
                # Official: AvgPool3D (1,3,3) strides (1,2,2) 'same'. Striding with the layer's own stride
                # keeps the shapes consistent should a space ever stride in time (kernel 1 there).
                skip.append(AvgPool3dSame((1, 3, 3), layer.stride))
            skip.append(ConvBn(layer.cin, layer.cout))
            self.skip = nn.Sequential(*skip)

    @property
    def residual_scale(self) -> torch.Tensor:
        """What scales the residual branch: the ReZero scalar (:func:`~nas.models.layers.init_residual_branches_`)."""
        return self.rezero

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual inverted bottleneck."""
        y = self.projection(self.se(self.feature(self.expansion(x))))
        skip = x if self.skip is None else self.skip(x)
        return skip + self.rezero * y


class MovinetHead(nn.Module):
    """project 1x1x1 -> BN -> act -> global avg pool -> 1x1x1 (bias) -> act -> dropout -> 1x1x1 (bias).

    Args:
        cin: input channels.
        project: projection channels.
        width: pre-classifier channels.
        classes: number of classes.
        activation: activation name.
        dropout: dropout probability before the classifier.
    """

    def __init__(self, cin: int, project: int, width: int, classes: int, activation: str, dropout: float) -> None:
        super().__init__()
        self.project = ConvBn(cin, project, activation=activation)
        self.fc = nn.Conv3d(project, width, 1, bias=True)
        self.act = make_activation(activation)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv3d(width, classes, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, cin, T, H, W) -> (B, classes) logits."""
        x = self.project(x).mean(dim=(2, 3, 4), keepdim=True)
        x = self.dropout(self.act(self.fc(x)))
        return self.classifier(x).flatten(1)


class Movinet(nn.Module):
    """MoViNet base model: ``stem``, ``blocks`` (a Sequential of Sequentials of layers), ``head``.

    Args:
        net: the resolved network description.
    """

    def __init__(self, net: MovinetNet) -> None:
        super().__init__()
        self.stem = ConvBn(3, net.stem_width, net.stem_kernel, net.stem_stride, activation=net.activation)
        self.blocks = nn.Sequential(*(
            nn.Sequential(*(MovinetBottleneck(layer, net.activation, net.gating) for layer in block))
            for block in net.blocks
        ))
        self.head = MovinetHead(net.blocks[-1][-1].cout, net.head_project, net.head_width, net.classes,
                                net.activation, net.dropout)
        self._init_weights()

    def _init_weights(self) -> None:
        # The ReZero scalars are already 0; the projection BN keeps gamma 1 as in the official code.
        # Zeroing it too would leave rezero * BN(...) with zero gradient in both factors, so the
        # residual branches could never start learning.
        init_conv_bn_(self)
        nn.init.normal_(self.head.classifier.weight, std=0.01)
        nn.init.zeros_(self.head.classifier.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) clip -> (B, classes) logits."""
        return self.head(self.blocks(self.stem(x)))
