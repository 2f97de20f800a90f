"""The TuNAS weight-sharing supernet of a MoViNet-family space.

One network holds the weights of every architecture of the space (Bender et al. 2020, §1.6 of
``shared/reference/tunas.md``):

* **filter-wise sharing for widths** -- every width choice (stem width, block widths, per-layer
  expansion widths, the SE width derived from them, the head projection) owns one tensor of the
  *largest* width; a choice of ``k`` channels uses its first ``k`` channels. TuNAS multiplies by a
  0/1 mask; here the tensors are *sliced* to the active channels, which gives the same outputs and
  the same gradients on the active channels (masked channels are exactly zero and receive zero
  gradient) at the cost of the sampled network instead of the widest one;
* **op-wise sharing for kernels** -- every kernel choice of a layer owns its own depthwise kernel
  and its own BN (TuNAS's ``Switch``, no centre cropping); the expansion, SE and projection
  weights are shared by all kernels and expansion widths of the layer;
* **skippable layers for depths** -- a block whose layer count is a choice holds the largest count
  of layers; layers past the sampled count are skipped (identity; MoViNet layers after the first of
  a block never change the width or stride, so their skip is the identity);
* **BN always uses batch statistics** (TuNAS's stateless BN), at the validation forward too.

The architecture is an **argument of the forward pass** (:class:`Path`: a resolved network plus
the layers that run every kernel during the op warm-up); no module keeps an "active" state.
:meth:`Supernet.extract` returns the standalone :func:`nas.models.build_model` network of an
architecture with the shared weights copied in (its output equals the supernet's; tests check it),
and :meth:`Supernet.l2` is the masked L2 penalty of the weights a path uses (TuNAS puts it in the
loss instead of using optimiser weight decay, which would decay unselected weights every step).

Parameter names mirror the standalone model's (``blocks.2.0.expansion.conv.weight``), except that a
layer's depthwise conv and BN live under ``feature.<kernel>`` (one per kernel choice) and the
first layer's skip conv under ``skip`` (the standalone model numbers it after an optional pool).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nas.dsl.arch import Arch
from nas.dsl.choice import Choice, Repeat
from nas.dsl.space import Space
from nas.families.movinet import MovinetNet, parse_kernel, resolve
from nas.models.layers import AvgPool3dSame, conv3d_same, init_conv_bn_, init_residual_branches_

__all__ = ["Path", "Supernet", "build_supernet", "SEARCH_FIXED_PREFIXES", "BN_EPS"]

BN_EPS = 1e-3  # MoViNet's BN epsilon (the standalone model's)

# Labels of choices that do not change the network's weights: the clip and the head dropout. A
# search fixes them (the supernet trains at one input size); they are not policy dimensions.
SEARCH_FIXED_PREFIXES = ("clip/", "head/dropout")

_ACT = {"swish": F.silu, "hard_swish": F.hardswish, "relu": F.relu}
_GATE = {"sigmoid": torch.sigmoid, "hard_sigmoid": F.hardsigmoid}
_LAYER_PATH = re.compile(r"^blocks/(\d+)/layers/(\d+)/kernel$")


@dataclass(frozen=True)
class Path:
    """What one forward pass runs: an architecture, and the layers that mix every kernel.

    Attributes:
        net: the resolved network (widths, kernels, depths) -- the architecture.
        mixed: ``(block, layer)`` positions whose depthwise op runs every kernel choice and averages
            the outputs (TuNAS's op warm-up); empty for a plain architecture.
    """

    net: MovinetNet
    mixed: frozenset[tuple[int, int]] = field(default_factory=frozenset)

    @classmethod
    def of(cls, arch: Arch | MovinetNet, mixed: Sequence[tuple[int, int]] = (), classes: int | None = None) -> "Path":
        """The path of a frozen architecture (or an already resolved network), with ``classes``
        outputs when given (the data's class count, which the supernet's head is built for)."""
        net = arch if isinstance(arch, MovinetNet) else resolve(arch.doc)
        return cls(net if classes is None else replace(net, classes=classes), frozenset(mixed))


def _values(node: Any, what: str) -> tuple[Any, ...]:
    """The values a node may take: a categorical choice's values, or the fixed value."""
    if isinstance(node, Choice):
        if node.values is None:
            raise ValueError(f"{node.label}: got a continuous range; allowed: categorical choices in a supernet")
        return tuple(node.values)
    return (node,)


def _fixed(node: Any, label: str) -> Any:
    if isinstance(node, (Choice, Repeat)):
        raise ValueError(f"{label}: got a choice; allowed: a fixed value (the supernet cannot share weights over it)")
    return node


def _kernel_key(kernel: tuple[int, int, int] | str) -> str:
    return kernel if isinstance(kernel, str) else "x".join(map(str, kernel))


def _conv(x: torch.Tensor, weight: torch.Tensor, stride: Sequence[int] = (1, 1, 1), groups: int = 1,
          bias: torch.Tensor | None = None) -> torch.Tensor:
    """Conv3d with TF 'same' padding, as :class:`nas.models.layers.Conv3dSame` computes it
    (:func:`~nas.models.layers.conv3d_same`: no work for the kernel taps that meet only padding).

    On a 1 x 1 spatial map (the last stages at the search's 14 px) that runs a conv1d over time with
    the kernel's centre tap; on CPU it made a whole search step 3.4x faster on the warm-up path and
    1.6x (median) on paths near the default target, on 2 idle cores
    (``experiments/tunas/bench_supernet_conv.py``).
    """
    return conv3d_same(x, weight, bias, stride, groups)


def _bn(x: torch.Tensor, bn: nn.BatchNorm3d) -> torch.Tensor:
    """Batch-statistics BN over the first ``C`` channels of a max-width BN."""
    c = x.shape[1]
    return F.batch_norm(x, None, None, bn.weight[:c], bn.bias[:c], training=True, eps=BN_EPS)


def _holder_conv(cout: int, cin: int, kernel: Sequence[int], bias: bool = False) -> nn.Conv3d:
    """A Conv3d used only to hold a max-width weight (the forward slices it)."""
    return nn.Conv3d(cin, cout, tuple(kernel), bias=bias)


class _ConvBn(nn.Module):
    def __init__(self, cout: int, cin: int, kernel: Sequence[int] = (1, 1, 1)) -> None:
        super().__init__()
        self.conv = _holder_conv(cout, cin, kernel)
        self.bn = nn.BatchNorm3d(cout, eps=BN_EPS, track_running_stats=False)


@dataclass(frozen=True)
class _LayerShape:
    """The largest widths and the kernel choices of one layer slot."""

    cin: int
    cout: int
    expand: int
    se_hidden: int
    kernels: tuple[str, ...]
    first: bool  # the block's first layer: may stride and change the width, so it has a skip conv


class _SuperLayer(nn.Module):
    """One layer slot: shared expansion / SE / projection, one depthwise conv + BN per kernel choice."""

    def __init__(self, shape: _LayerShape) -> None:
        super().__init__()
        self.shape = shape
        self.expansion = _ConvBn(shape.expand, shape.cin)
        self.feature = nn.ModuleDict({
            k: _ConvBn(shape.expand, 1, parse_kernel(k)) for k in shape.kernels
        })
        self.se = nn.Module()
        self.se.reduce = _holder_conv(shape.se_hidden, shape.expand, (1, 1, 1), bias=True)
        self.se.expand = _holder_conv(shape.expand, shape.se_hidden, (1, 1, 1), bias=True)
        self.projection = _ConvBn(shape.cout, shape.expand)
        self.rezero = nn.Parameter(torch.zeros(()))
        if shape.first:
            self.skip = _ConvBn(shape.cout, shape.cin)

    @property
    def residual_scale(self) -> torch.Tensor:
        """What scales the residual branch: the ReZero scalar (:func:`~nas.models.layers.init_residual_branches_`)."""
        return self.rezero


class Supernet(nn.Module):
    """The weight-sharing network of a MoViNet-family space (see the module docstring).

    Args:
        space: a ``movinet``-family space; widths, expansion widths, kernels, layer counts and the
            head projection may be choices; activation, gating, strides, stem kernel and head width
            must be fixed.
        classes: classifier outputs (default: the space's ``classes``; a search on the synthetic
            data uses the data's class count).
        zero_init_residual: whether every layer's ReZero scalar starts at 0 (the standalone model's
            init) rather than 1 (:func:`~nas.models.layers.init_residual_branches_`).

    Raises:
        ValueError: for a space of another family or a choice the supernet cannot share over.
    """

    def __init__(self, space: Space, classes: int | None = None, zero_init_residual: bool = True) -> None:
        super().__init__()
        if space.family != "movinet":
            raise ValueError(f"space.family: got {space.family!r}; allowed: 'movinet' (the only family with a supernet)")
        doc = space.doc
        self.space = space
        self.classes = classes or _fixed(doc["classes"], "classes")
        self.activation = _fixed(doc["activation"], "activation")
        self.gating = _fixed(doc["gating"], "gating")
        stem = doc["stem"]
        stem_kernel = parse_kernel(_fixed(stem["kernel"], "stem/kernel"))
        stem_width = max(_values(stem["width"], "stem/width"))
        self.stem = _ConvBn(stem_width, 3, stem_kernel)
        blocks = nn.ModuleList()
        self.max_layers: list[int] = []
        cin = stem_width
        for b, block in enumerate(doc["blocks"]):
            width = max(_values(block["width"], f"blocks/{b}/width"))
            _fixed(block["stride"], f"blocks/{b}/stride")
            layers = block["layers"]
            slots = layers.slots if isinstance(layers, Repeat) else layers
            mods = nn.ModuleList()
            for i, slot in enumerate(slots):
                expand = max(_values(slot["expand"], f"blocks/{b}/layers/{i}/expand"))
                kernels = tuple(dict.fromkeys(_values(slot["kernel"], f"blocks/{b}/layers/{i}/kernel")))
                shape = _LayerShape(cin=cin if i == 0 else width, cout=width, expand=expand,
                                    se_hidden=_round8(expand * 0.25), kernels=kernels, first=i == 0)
                mods.append(_SuperLayer(shape))
            blocks.append(mods)
            self.max_layers.append(len(slots))
            cin = width
        self.blocks = blocks
        head = doc["head"]
        project = max(_values(head["project"], "head/project"))
        head_width = _fixed(head["width"], "head/width")
        self.head = nn.Module()
        self.head.project = _ConvBn(project, cin)
        self.head.fc = _holder_conv(head_width, project, (1, 1, 1), bias=True)
        self.head.classifier = _holder_conv(self.classes, head_width, (1, 1, 1), bias=True)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        # The standalone model's init (He fan-out convs, BN 1/0, classifier N(0, 0.01), ReZero 0 or 1).
        init_conv_bn_(self)
        init_residual_branches_(self, zero=zero_init_residual)
        nn.init.normal_(self.head.classifier.weight, std=0.01)
        nn.init.zeros_(self.head.classifier.bias)

    # -- forward ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, path: Path | Arch) -> torch.Tensor:
        """Run the architecture ``path`` on clips ``x`` (B, 3, T, H, W); returns (B, classes) logits.

        The head dropout of the architecture applies in training mode only; BN always uses the
        batch's statistics.
        """
        path = path if isinstance(path, Path) else Path.of(path)
        net = path.net
        self._check(net)
        act = _ACT[self.activation]
        x = act(_bn(_conv(x, self._w(self.stem.conv.weight, net.stem_width, 3), net.stem_stride), self.stem.bn))
        for b, block in enumerate(net.blocks):
            for i, layer in enumerate(block):
                x = self._layer(x, self.blocks[b][i], layer, (b, i) in path.mixed)
        head = self.head
        x = act(_bn(_conv(x, self._w(head.project.conv.weight, net.head_project, x.shape[1])), head.project.bn))
        x = x.mean(dim=(2, 3, 4), keepdim=True)
        x = act(F.conv3d(x, head.fc.weight[:, : net.head_project], head.fc.bias))
        if self.training and net.dropout > 0:
            x = F.dropout(x, net.dropout, training=True)
        return F.conv3d(x, head.classifier.weight, head.classifier.bias).flatten(1)

    @staticmethod
    def _w(weight: torch.Tensor, cout: int, cin: int) -> torch.Tensor:
        return weight[:cout, :cin]

    def _layer(self, x: torch.Tensor, mod: _SuperLayer, layer: Any, mixed: bool) -> torch.Tensor:
        act, gate = _ACT[self.activation], _GATE[self.gating]
        e, h = layer.expand, layer.se_hidden
        y = act(_bn(_conv(x, self._w(mod.expansion.conv.weight, e, layer.cin)), mod.expansion.bn))
        kernels = mod.shape.kernels if mixed else (_kernel_key(layer.kernel),)
        outs = []
        for k in kernels:
            op = mod.feature[k]
            outs.append(act(_bn(_conv(y, op.conv.weight[:e], layer.stride, groups=e), op.bn)))
        # op warm-up: the Switch runs every branch and outputs their mean
        y = outs[0] if len(outs) == 1 else torch.stack(outs).mean(0)
        s = y.mean(dim=(2, 3, 4), keepdim=True)
        s = act(F.conv3d(s, mod.se.reduce.weight[:h, :e], mod.se.reduce.bias[:h]))
        y = y * gate(F.conv3d(s, mod.se.expand.weight[:e, :h], mod.se.expand.bias[:e]))
        y = _bn(_conv(y, self._w(mod.projection.conv.weight, layer.cout, e)), mod.projection.bn)
        if layer.skip == "identity":
            skip = x
        else:
            if layer.skip == "pool_conv":
                x = AvgPool3dSame((1, 3, 3), layer.stride)(x)
            skip = _bn(_conv(x, self._w(mod.skip.conv.weight, layer.cout, layer.cin)), mod.skip.bn)
        return skip + mod.rezero * y

    def _check(self, net: MovinetNet) -> None:
        """Raise ValueError if ``net`` does not fit the supernet (not a point of its space)."""
        if len(net.blocks) != len(self.blocks):
            raise ValueError(f"blocks: got {len(net.blocks)} blocks; allowed: {len(self.blocks)} (the space's)")
        if net.classes != self.classes:
            raise ValueError(f"classes: got {net.classes}; allowed: {self.classes} (the supernet's classifier)")
        for b, block in enumerate(net.blocks):
            if len(block) > self.max_layers[b]:
                raise ValueError(f"blocks/{b}/layers: got {len(block)} layers; allowed: at most {self.max_layers[b]}")
            for i, layer in enumerate(block):
                shape = self.blocks[b][i].shape
                key = _kernel_key(layer.kernel)
                if key not in shape.kernels:
                    raise ValueError(f"blocks/{b}/layers/{i}/kernel: got {key!r}; allowed: one of {', '.join(shape.kernels)}")
                if layer.expand > shape.expand or layer.cout > shape.cout or layer.cin > shape.cin:
                    raise ValueError(f"blocks/{b}/layers/{i}: widths (in {layer.cin}, expand {layer.expand}, out "
                                     f"{layer.cout}) exceed the supernet's ({shape.cin}, {shape.expand}, {shape.cout})")

    # -- what a path uses -----------------------------------------------------------------------
    def slices(self, path: Path | Arch) -> Iterator[tuple[str, tuple[int, ...]]]:
        """``(parameter name, shape of the slice used)`` for every parameter ``path`` uses."""
        path = path if isinstance(path, Path) else Path.of(path)
        net = path.net
        params = dict(self.named_parameters())

        def conv_bn(prefix: str, cout: int, cin: int) -> Iterator[tuple[str, tuple[int, ...]]]:
            w = params[f"{prefix}.conv.weight"]
            yield f"{prefix}.conv.weight", (cout, cin, *w.shape[2:])
            yield f"{prefix}.bn.weight", (cout,)
            yield f"{prefix}.bn.bias", (cout,)

        yield from conv_bn("stem", net.stem_width, 3)
        for b, block in enumerate(net.blocks):
            for i, layer in enumerate(block):
                p = f"blocks.{b}.{i}"
                mod = self.blocks[b][i]
                e, h = layer.expand, layer.se_hidden
                yield from conv_bn(f"{p}.expansion", e, layer.cin)
                kernels = mod.shape.kernels if (b, i) in path.mixed else (_kernel_key(layer.kernel),)
                for k in kernels:
                    yield from conv_bn(f"{p}.feature.{k}", e, 1)
                yield f"{p}.se.reduce.weight", (h, e, 1, 1, 1)
                yield f"{p}.se.reduce.bias", (h,)
                yield f"{p}.se.expand.weight", (e, h, 1, 1, 1)
                yield f"{p}.se.expand.bias", (e,)
                yield from conv_bn(f"{p}.projection", layer.cout, e)
                yield f"{p}.rezero", ()
                if layer.skip != "identity":
                    yield from conv_bn(f"{p}.skip", layer.cout, layer.cin)
        last = net.blocks[-1][-1].cout
        yield from conv_bn("head.project", net.head_project, last)
        fc = params["head.fc.weight"]
        yield "head.fc.weight", (fc.shape[0], net.head_project, 1, 1, 1)
        yield "head.fc.bias", (fc.shape[0],)
        yield "head.classifier.weight", tuple(params["head.classifier.weight"].shape)
        yield "head.classifier.bias", (self.classes,)

    def _decayed(self, path: Path | Arch) -> list[tuple[nn.Parameter, tuple[slice, ...]]]:
        """The conv / linear weights ``path`` uses (no BN, biases, scalars), with the slice it uses of each."""
        params = dict(self.named_parameters())
        return [(params[name], tuple(slice(0, n) for n in shape)) for name, shape in self.slices(path) if len(shape) > 1]

    def l2(self, path: Path | Arch) -> torch.Tensor:
        """Masked L2: the sum of squares of the conv / linear weights ``path`` uses (no BN, biases,
        scalars). The loss adds ``weight_decay / 2 * l2`` (Keras ``l2(wd / 2)``, as TuNAS)."""
        total = next(self.parameters()).new_zeros(())
        for param, used in self._decayed(path):
            total = total + param[used].pow(2).sum()
        return total

    @torch.no_grad()
    def add_l2_grad(self, path: Path | Arch, coefficient: float) -> float:
        """Add ``coefficient * w`` to the gradient of every weight slice ``path`` uses: the gradient of
        ``coefficient / 2 * l2(path)``, applied in one fused call instead of through autograd (which runs a
        slice, square and sum per weight forward and as many backward: 4.7 % of a supernet step measured,
        ``experiments/tunas/bench_step_ratio.py --compare-l2``). Returns ``l2(path)`` (its value, for the logged loss)."""
        decayed = self._decayed(path)
        for param, _ in decayed:
            if param.grad is None:
                param.grad = torch.zeros_like(param)
        weights = [param[used] for param, used in decayed]
        torch._foreach_add_([param.grad[used] for param, used in decayed], weights, alpha=coefficient)
        return float(torch.stack(torch._foreach_norm(weights)).pow(2).sum())

    # -- standalone networks --------------------------------------------------------------------
    def extract(self, arch: Arch) -> nn.Module:
        """The standalone :func:`nas.models.build_model` network of ``arch`` with the shared weights.

        Its output equals ``self(x, arch)`` when both use batch statistics (the standalone model in
        training mode with dropout off). Its BN running statistics are the fresh defaults: train
        on, or recalibrate, before evaluating it in eval mode.

        Raises:
            ValueError: if ``arch`` does not fit the supernet, or the standalone model has a
                parameter the supernet does not know (a changed model layout).
        """
        from nas.models import build_model

        net = resolve(arch.doc)
        self._check(net)
        model = build_model(arch)
        params = dict(self.named_parameters())
        state = {}
        for name, p in model.named_parameters():
            sup = _supernet_name(name, net)
            if sup not in params:
                raise ValueError(f"extract: standalone parameter {name!r} has no supernet counterpart {sup!r}")
            src = params[sup]
            if src.dim() != p.dim() or any(n > m for n, m in zip(p.shape, src.shape)):
                raise ValueError(f"extract: {name}: shape {tuple(p.shape)} does not fit the supernet's {tuple(src.shape)}")
            state[name] = src.detach()[tuple(slice(0, n) for n in p.shape)].clone()
        missing = set(dict(model.named_parameters())) - set(state)
        if missing:  # unreachable while every parameter is mapped above; keeps a silent partial copy impossible
            raise ValueError(f"extract: parameters not copied: {sorted(missing)[:4]}")
        model.load_state_dict(state, strict=False)
        return model


def _supernet_name(name: str, net: MovinetNet) -> str:
    """Standalone parameter name -> supernet parameter name."""
    parts = name.split(".")
    if parts[0] == "blocks":
        b, i = int(parts[1]), int(parts[2])
        if parts[3] == "feature":
            return ".".join([*parts[:4], _kernel_key(net.blocks[b][i].kernel), *parts[4:]])
        if parts[3] == "skip":  # skip.<j>.conv|bn.* where j counts an optional pool first
            return ".".join([*parts[:4], *parts[5:]])
    return name


def _round8(x: float) -> int:
    from nas.cost import round8

    return round8(x)


def build_supernet(space: Space | str, classes: int | None = None, zero_init_residual: bool = True) -> Supernet:
    """The supernet of a space (a :class:`Space` or a shipped space name); see :class:`Supernet`."""
    if isinstance(space, str):
        from nas.registry import load_space

        space = load_space(space)
    return Supernet(space, classes, zero_init_residual)


def kernel_positions(space: Space) -> dict[str, list[tuple[int, int]]]:
    """Kernel-choice label -> the ``(block, layer)`` positions it decides (several when shared)."""
    out: dict[str, list[tuple[int, int]]] = {}
    for label, choice in space.dims().items():
        for p in choice.paths:
            m = _LAYER_PATH.match(p)
            if m:
                out.setdefault(label, []).append((int(m.group(1)), int(m.group(2))))
    return out

