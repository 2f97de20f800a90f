"""X3D in PyTorch, built from a resolved :class:`~nas.families.x3d.X3DNet` (pytorchvideo layout).

The layer structure is the one documented in :mod:`nas.families.x3d`, so parameter and multiply-add
counts equal :func:`nas.families.x3d.cost` exactly. Padding is PyTorch's symmetric ``k // 2`` as in
the reference implementations (a stride-2 3x3 conv gives ``ceil(n / 2)`` either way).
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from nas.families.x3d import X3DNet
from nas.models.layers import SqueezeExcite3d, Swish, init_conv_bn_, init_residual_branches_

__all__ = ["X3D", "X3DBlock", "X3DHead", "X3DStem", "build_x3d"]

# SlowFast / pytorchvideo BN settings.
BatchNorm = partial(nn.BatchNorm3d, eps=1e-5, momentum=0.1)


class X3DStem(nn.Module):
    """Spatial 1x3x3 stride-(1,2,2) conv, then a depthwise temporal kx1x1 conv, BN, ReLU.

    Args:
        width: output channels.
        temporal_kernel: temporal extent k of the depthwise conv.
    """

    def __init__(self, width: int, temporal_kernel: int) -> None:
        super().__init__()
        self.conv_xy = nn.Conv3d(3, width, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False)
        self.conv_t = nn.Conv3d(width, width, (temporal_kernel, 1, 1), padding=(temporal_kernel // 2, 0, 0),
                                groups=width, bias=False)
        self.bn = BatchNorm(width)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> (B, width, T, H/2, W/2)."""
        return self.act(self.bn(self.conv_t(self.conv_xy(x))))


class X3DBlock(nn.Module):
    """Bottleneck: 1x1x1 -> BN -> ReLU -> depthwise 3x3x3 -> BN -> [SE] -> Swish -> 1x1x1 -> BN; + shortcut; ReLU.

    Args:
        cin: input channels.
        inner: bottleneck channels.
        cout: output channels.
        stride: spatial stride of the depthwise conv (and of the shortcut conv).
        se_dim: SE hidden channels; 0 for no SE.
        shortcut: whether the block has a 1x1x1 projection shortcut (block 0 of each stage).
        temporal_kernel: temporal extent of the depthwise conv (3 in X3D; 1 = frame-wise ablation).
    """

    def __init__(self, cin: int, inner: int, cout: int, stride: int, se_dim: int, shortcut: bool,
                 temporal_kernel: int = 3) -> None:
        super().__init__()
        self.conv_a = nn.Conv3d(cin, inner, 1, bias=False)
        self.bn_a = BatchNorm(inner)
        self.act_a = nn.ReLU()
        self.conv_b = nn.Conv3d(inner, inner, (temporal_kernel, 3, 3), stride=(1, stride, stride),
                                padding=(temporal_kernel // 2, 1, 1), groups=inner, bias=False)
        self.bn_b = BatchNorm(inner)
        self.se = SqueezeExcite3d(inner, se_dim, activation="relu", gate="sigmoid") if se_dim else nn.Identity()
        self.act_b = Swish()
        self.conv_c = nn.Conv3d(inner, cout, 1, bias=False)
        self.bn_c = BatchNorm(cout)
        self.shortcut: nn.Module | None = None
        if shortcut:
            layers: list[nn.Module] = [nn.Conv3d(cin, cout, 1, stride=(1, stride, stride), bias=False)]
            if cin != cout:  # pytorchvideo has no shortcut BN when widths match; the param counts need it
                layers.append(BatchNorm(cout))
            self.shortcut = nn.Sequential(*layers)
        self.act = nn.ReLU()

    @property
    def residual_scale(self) -> torch.Tensor:
        """What scales the residual branch: its last BN's gamma (:func:`~nas.models.layers.init_residual_branches_`)."""
        return self.bn_c.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual bottleneck."""
        y = self.act_a(self.bn_a(self.conv_a(x)))
        y = self.act_b(self.se(self.bn_b(self.conv_b(y))))
        y = self.bn_c(self.conv_c(y))
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.act(y + skip)


class X3DHead(nn.Module):
    """conv5 1x1x1 -> BN -> ReLU -> global average pool -> 1x1x1 (no bias, no BN) -> ReLU -> dropout -> linear.

    Args:
        cin: input channels.
        inner: conv5 channels.
        width: pre-classifier channels.
        classes: number of classes.
        dropout: dropout probability before the classifier.
    """

    def __init__(self, cin: int, inner: int, width: int, classes: int, dropout: float) -> None:
        super().__init__()
        self.conv5 = nn.Conv3d(cin, inner, 1, bias=False)
        self.bn5 = BatchNorm(inner)
        self.act5 = nn.ReLU()
        self.fc1 = nn.Conv3d(inner, width, 1, bias=False)
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, cin, T, H, W) -> (B, classes) logits."""
        x = self.act5(self.bn5(self.conv5(x)))
        # A global mean rather than the reference's build-time pool kernel: any clip size works.
        x = x.mean(dim=(2, 3, 4), keepdim=True)
        x = self.dropout(self.act(self.fc1(x)))
        return self.classifier(x.flatten(1))


class X3D(nn.Module):
    """X3D network: ``stem``, ``stages`` (a Sequential of Sequentials of :class:`X3DBlock`), ``head``.

    Args:
        net: the resolved network description.
    """

    def __init__(self, net: X3DNet) -> None:
        super().__init__()
        self.stem = X3DStem(net.stem_width, net.stem_temporal_kernel)
        stages = []
        cin = net.stem_width
        for stage in net.stages:
            blocks = []
            for b in range(stage.depth):
                se_dim = stage.se_dim if net.has_se(b) else 0
                blocks.append(X3DBlock(cin, stage.inner, stage.width, stride=2 if b == 0 else 1,
                                       se_dim=se_dim, shortcut=b == 0,
                                       temporal_kernel=net.block_temporal_kernel))
                cin = stage.width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = X3DHead(cin, net.head_inner, net.head_width, net.classes, net.dropout)
        self._init_weights()

    def _init_weights(self) -> None:
        init_conv_bn_(self)
        init_residual_branches_(self, zero=True)  # X3D's recipe; build_model(zero_init_residual=False) undoes it
        nn.init.normal_(self.head.classifier.weight, std=0.01)
        nn.init.zeros_(self.head.classifier.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) clip -> (B, classes) logits."""
        return self.head(self.stages(self.stem(x)))


def build_x3d(net: X3DNet) -> nn.Module:
    """Build the X3D network ``net`` describes, freshly initialised.

    Args:
        net: the resolved description (:func:`nas.families.x3d.resolve`).

    Returns:
        The model; input (B, 3, T, H, W), output (B, classes) logits.
    """
    return X3D(net)
