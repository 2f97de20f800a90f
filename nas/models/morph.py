"""Network morphism for X3D expansion: a child network that starts from its parent's trained weights.

Every X3D axis maps to a morphism (Chen et al., Net2Net, ICLR 2016; Wei et al., network morphism, 2016):

* **width, bottleneck** -- Net2Wider: each channel space (the stem's, each stage's residual stream, each
  block's bottleneck, each SE's hidden units, the head's conv5) grows by copying channels chosen by a
  seeded generator; a copied channel's producers (conv rows, BN parameters and statistics) are copied
  and its consumers' weights (the next conv's, the SE's, fc1's input columns) are divided by the number
  of copies, so the function is unchanged;
* **depth** -- new blocks appended to a stage are identities: their last BN has gamma = beta = 0, so the
  residual branch adds zero and the block's ReLU sees the previous block's (non-negative) output;
* **spatial, frames, frame stride** -- the same weights on another input: nothing changes shape, every
  key loads as it is (the BN statistics then describe another input: re-estimate them,
  :func:`reestimate_bn`).

In eval mode width, bottleneck and depth children compute their parent's logits exactly (to rounding;
``tests/test_morph.py``). ``noise`` adds symmetry-breaking noise to the copies *after* that, so copied
channels can learn apart during fine-tuning (Net2Net's suggestion); 0 keeps the function exactly.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from nas.dsl.arch import Arch
from nas.families.x3d import X3DNet, growth_error, resolve
from nas.models import build_model

__all__ = ["inherit", "reestimate_bn", "MorphError"]


class MorphError(ValueError):
    """The child is not a growth of the parent (a channel count, depth or structure would shrink or change)."""


def _mapping(new: int, old: int, gen: torch.Generator) -> torch.Tensor:
    """Indices of the old channel each new channel copies: the old ones first, then random old ones."""
    if new < old:
        raise MorphError(f"channels: got {new} < {old}; allowed: a morphism only grows a network")
    extra = torch.randint(0, old, (new - old,), generator=gen) if new > old else torch.empty(0, dtype=torch.long)
    return torch.cat([torch.arange(old), extra])


def _counts(g: torch.Tensor, old: int) -> torch.Tensor:
    """How many new channels copy each old one."""
    return torch.bincount(g, minlength=old).to(torch.float64)


def _split(weight: torch.Tensor, g: torch.Tensor, old: int) -> torch.Tensor:
    """Input columns (dim 1) for a grown input space: copied and divided by the number of copies."""
    scale = (1.0 / _counts(g, old)).to(weight.dtype)[g]
    shape = [1, -1] + [1] * (weight.dim() - 2)
    return weight[:, g] * scale.view(shape)


def _copy_bn(dst: nn.BatchNorm3d, src: nn.BatchNorm3d, g: torch.Tensor) -> None:
    dst.weight.copy_(src.weight[g])
    dst.bias.copy_(src.bias[g])
    dst.running_mean.copy_(src.running_mean[g])
    dst.running_var.copy_(src.running_var[g])
    dst.num_batches_tracked.copy_(src.num_batches_tracked)


def _check_growth(parent: X3DNet, child: X3DNet) -> None:
    why = growth_error(parent, child)
    if why is not None:
        raise MorphError(why)


@torch.no_grad()
def inherit(parent_model: nn.Module, parent: Arch, child: Arch, *, seed: int = 0, noise: float = 0.0) -> nn.Module:
    """Build ``child`` starting from ``parent_model``'s weights (see the module docstring).

    Args:
        parent_model: the trained parent (as :func:`nas.models.build_model` builds it for ``parent``,
            with the classes it was trained for).
        parent, child: the architectures (X3D family; the child a growth of the parent on any axes).
        seed: chooses which channels the new channels copy.
        noise: relative standard deviation of the symmetry-breaking noise added to copied weights
            (0: the child computes exactly the parent's function).

    Returns:
        The child model (eval/train mode as ``build_model`` returns it), with the parent's classifier.

    Raises:
        MorphError: a family without morphisms, or a child that is not a growth of the parent.
    """
    if parent.family != "x3d" or child.family != "x3d":
        raise MorphError(f"family: got {parent.family} -> {child.family}; allowed: x3d (the expansion's family)")
    classes = parent_model.head.classifier.out_features
    child, parent = child.with_classes(classes), parent.with_classes(classes)
    cnet, pnet = resolve(child.doc), resolve(parent.doc)
    _check_growth(pnet, cnet)
    model = build_model(child)
    dtype = next(parent_model.parameters()).dtype
    model.to(dtype)
    gen = torch.Generator().manual_seed(seed)
    copied: list[torch.Tensor] = []

    p, c = parent_model, model
    g_prev = _mapping(cnet.stem_width, pnet.stem_width, gen)
    c.stem.conv_xy.weight.copy_(p.stem.conv_xy.weight[g_prev])
    c.stem.conv_t.weight.copy_(p.stem.conv_t.weight[g_prev])
    _copy_bn(c.stem.bn, p.stem.bn, g_prev)
    copied += [c.stem.conv_xy.weight, c.stem.conv_t.weight]
    old_prev = pnet.stem_width
    for s, (cstage, pstage) in enumerate(zip(c.stages, p.stages)):
        g_s = _mapping(cnet.stages[s].width, pnet.stages[s].width, gen)
        old_s = pnet.stages[s].width
        for b, cblock in enumerate(cstage):
            if b >= len(pstage):  # a new block: an identity until it learns
                nn.init.zeros_(cblock.bn_c.weight)
                nn.init.zeros_(cblock.bn_c.bias)
                continue
            pblock = pstage[b]
            old_in = pnet.stages[s].inner
            g_in = _mapping(cnet.stages[s].inner, old_in, gen)
            cin_g, cin_old = (g_prev, old_prev) if b == 0 else (g_s, old_s)
            cblock.conv_a.weight.copy_(_split(pblock.conv_a.weight, cin_g, cin_old)[g_in])
            _copy_bn(cblock.bn_a, pblock.bn_a, g_in)
            cblock.conv_b.weight.copy_(pblock.conv_b.weight[g_in])
            _copy_bn(cblock.bn_b, pblock.bn_b, g_in)
            if isinstance(pblock.se, nn.Module) and hasattr(pblock.se, "reduce"):
                old_se = pblock.se.reduce.out_channels
                g_se = _mapping(cblock.se.reduce.out_channels, old_se, gen)
                cblock.se.reduce.weight.copy_(_split(pblock.se.reduce.weight, g_in, old_in)[g_se])
                cblock.se.reduce.bias.copy_(pblock.se.reduce.bias[g_se])
                cblock.se.expand.weight.copy_(_split(pblock.se.expand.weight, g_se, old_se)[g_in])
                cblock.se.expand.bias.copy_(pblock.se.expand.bias[g_in])
                copied += [cblock.se.reduce.weight, cblock.se.expand.weight]
            cblock.conv_c.weight.copy_(_split(pblock.conv_c.weight, g_in, old_in)[g_s])
            _copy_bn(cblock.bn_c, pblock.bn_c, g_s)
            if pblock.shortcut is not None:
                if len(cblock.shortcut) != len(pblock.shortcut):
                    raise MorphError(f"stages/{s}/0: the shortcut's BN comes or goes with the widths; allowed: "
                                     "a growth that keeps it")
                cblock.shortcut[0].weight.copy_(_split(pblock.shortcut[0].weight, cin_g, cin_old)[g_s])
                if len(pblock.shortcut) > 1:
                    _copy_bn(cblock.shortcut[1], pblock.shortcut[1], g_s)
                copied.append(cblock.shortcut[0].weight)
            copied += [cblock.conv_a.weight, cblock.conv_b.weight, cblock.conv_c.weight]
        g_prev, old_prev = g_s, old_s
    old_5 = pnet.head_inner
    g_5 = _mapping(cnet.head_inner, old_5, gen)
    c.head.conv5.weight.copy_(_split(p.head.conv5.weight, g_prev, old_prev)[g_5])
    _copy_bn(c.head.bn5, p.head.bn5, g_5)
    c.head.fc1.weight.copy_(_split(p.head.fc1.weight, g_5, old_5))
    c.head.classifier.load_state_dict(p.head.classifier.state_dict())
    copied += [c.head.conv5.weight, c.head.fc1.weight]
    if noise > 0:
        for w in copied:
            w.add_(torch.randn(w.shape, generator=gen, dtype=w.dtype) * noise * w.std())
    return model


@torch.no_grad()
def reestimate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """Re-estimate every BatchNorm's running statistics on ``batches`` (a cumulative average over them,
    weights untouched): after a morphism to another input size or frame count, the parent's statistics
    describe another distribution. Leaves the model in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    model.train()
    for x in batches:
        model(x)
    for m, momentum in zip(bns, saved):
        m.momentum = momentum
    return model.eval()
