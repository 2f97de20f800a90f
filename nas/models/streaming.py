"""Stream MoViNets: causal (2+1)D / 3D networks that run on a video one chunk at a time.

Built by :func:`nas.models.build_model` for every MoViNet-family architecture that uses a stream
option (``causal``, ``conv_type: 2plus1d``, ``se_type: 2plus3d``, ``positional_encoding`` or a
separate classifier activation); base architectures keep :class:`nas.models.movinet.Movinet`.

Streaming API (causal architectures)::

    model = build_model(load_arch("movinet-a0-stream")).eval()
    state = model.init_state(batch_size=1, size=172)      # zeros: the start of a video
    for chunk in chunks:                                   # (B, 3, T_chunk, H, W), any T_chunk >= 1
        logits, state = model.step(chunk, state)           # logits of every frame seen so far

After the last chunk, ``logits`` equals ``model(whole_clip)`` (the whole-clip causal forward), for any
chunking. ``model.eval()`` is needed for that: in training mode BN normalises each chunk with its own
statistics.

The state is a plain ``dict[str, Tensor]`` (the model itself holds none), so it can be saved, moved to
another device or passed through an exported graph. Its keys (``B`` batch, ``H', W'`` the spatial size
where the tensor lives)::

    frames                          int64 (1,)  frames seen so far (every layer sees all frames: no
                                                temporal stride in MoViNets)
    stem_stream_buffer              (B, C, k_t - 1, H', W')   only if the stem kernel has k_t > 1
    block{b}_layer{l}_stream_buffer (B, C_expand, k_t - 1, H', W')  per layer with k_t > 1: the last
                                                k_t - 1 input frames of its temporal conv (post-stride
                                                for 2plus1d, pre-stride for 3d)
    block{b}_layer{l}_pool_buffer   (B, C_expand)  per layer: sum of the per-frame spatial means seen
                                                so far (the causal SE's cumulative average, CGAP)
    head_pool_buffer                (B, project)  sum of the head's per-frame spatial means

Each stream buffer keeps the last ``k_t - 1`` frames of ``concat(buffer, input)``, initialised with
zeros; the official TF state names are the same with a ``state_`` prefix and one frame counter per
layer (here one shared ``frames``).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from nas.cost import same_out
from nas.families.movinet import MovinetLayer, MovinetNet
from nas.models.layers import (AvgPool3dSame, CausalConv3d, Conv3dSame, causal_frame_mean, init_conv_bn_,
                               make_activation, make_gate, positional_encoding)
from nas.models.movinet import BatchNorm, ConvBn

__all__ = ["StreamState", "StepContext", "StreamConvBn", "StreamSqueezeExcite", "StreamBottleneck", "StreamStep",
           "StreamHead", "MovinetStream", "FRAMES_KEY"]

StreamState = dict[str, torch.Tensor]
FRAMES_KEY = "frames"


@dataclass
class StepContext:
    """What the layers of one causal call read and write: the incoming state (read-only), the new state
    being filled in, and the number of frames seen before this call."""

    state: Mapping[str, torch.Tensor]
    seen: torch.Tensor
    new: StreamState = field(default_factory=dict)


class StreamConvBn(nn.Module):
    """A conv + BN + act, causal or not, 3D or (2+1)D (official ``ConvBlock``).

    ``conv_type='3d'``: ``conv`` (k_t x k_h x k_w) -> ``bn`` -> ``act``.
    ``conv_type='2plus1d'``: ``conv`` (1 x k_h x k_w, strided) -> ``bn`` -> ``act`` -> (when k_t > 1)
    ``conv_temporal`` (k_t x 1 x 1) -> ``bn_temporal`` -> ``act``. When causal, the temporal conv reads a
    stream buffer (state ``{key}_stream_buffer``).

    Args:
        cin: input channels.
        cout: output channels.
        kernel: (T, H, W) kernel.
        stride: (T, H, W) stride (temporal stride 1 when causal).
        depthwise: grouped per channel (cin == cout).
        activation: activation name.
        conv_type: ``3d`` or ``2plus1d``.
        causal: causal in time.
        key: state-key prefix (``block0_layer1``).
    """

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int], stride: tuple[int, int, int], *,
                 depthwise: bool, activation: str, conv_type: str, causal: bool, key: str) -> None:
        super().__init__()
        self.key, self.causal, self.kernel_t = key, causal, kernel[0]
        self.split = conv_type == "2plus1d"
        self.channels, self.stride = cout, stride
        groups = cin if depthwise else 1
        conv: nn.Module
        if self.split:
            self.conv = Conv3dSame(cin, cout, (1, *kernel[1:]), stride, groups=groups)
            self.bn = BatchNorm(cout)
            self.act = make_activation(activation)
            if kernel[0] > 1:
                temporal = (kernel[0], 1, 1)
                tgroups = cout if depthwise else 1
                conv = (CausalConv3d(cout, cout, temporal, groups=tgroups) if causal
                        else Conv3dSame(cout, cout, temporal, groups=tgroups))
                self.conv_temporal = conv
                self.bn_temporal = BatchNorm(cout)
        else:
            conv = (CausalConv3d(cin, cout, kernel, stride, groups=groups) if causal and kernel[0] > 1
                    else Conv3dSame(cin, cout, kernel, stride, groups=groups))
            self.conv = conv
            self.bn = BatchNorm(cout)
            self.act = make_activation(activation)

    @property
    def buffered(self) -> bool:
        """Whether this conv keeps a stream buffer (causal with k_t > 1)."""
        return self.causal and self.kernel_t > 1

    def state_shapes(self, size: tuple[int, int], cin: int) -> dict[str, tuple[int, ...]]:
        """Shapes (without batch) of this conv's state for an input of spatial ``size``."""
        if not self.buffered:
            return {}
        if self.split:  # the buffer sits between the spatial (strided) and temporal convs
            h, w = same_out(size[0], self.stride[1]), same_out(size[1], self.stride[2])
            return {f"{self.key}_stream_buffer": (self.channels, self.kernel_t - 1, h, w)}
        return {f"{self.key}_stream_buffer": (cin, self.kernel_t - 1, *size)}

    def _causal(self, conv: nn.Module, x: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        name = f"{self.key}_stream_buffer"
        y, ctx.new[name] = conv(x, ctx.state[name])
        return y

    def forward(self, x: torch.Tensor, ctx: StepContext | None = None) -> torch.Tensor:
        """Apply the conv(s); ``ctx`` carries the stream state when causal."""
        if self.split:
            x = self.act(self.bn(self.conv(x)))
            if self.kernel_t > 1:
                x = self._causal(self.conv_temporal, x, ctx) if self.causal else self.conv_temporal(x)  # type: ignore[arg-type]
                x = self.act(self.bn_temporal(x))
            return x
        x = self._causal(self.conv, x, ctx) if self.buffered else self.conv(x)  # type: ignore[arg-type]
        return self.act(self.bn(x))


class StreamSqueezeExcite(nn.Module):
    """Squeeze-excitation of the stream variants (official ``StreamSqueezeExcitation``).

    Pooled input: ``3d`` = mean over (T, H, W) (non-causal, one gate per clip) or CGAP (causal, one gate
    per frame); ``2plus3d`` = concat(that per-frame mean over time, per-frame spatial mean), 2C channels.
    With ``positional_encoding`` the scaled sin/cos encoding of the frame index is added before
    ``reduce``. Then ``reduce`` (1x1x1, bias) -> act -> ``expand`` (1x1x1, bias) -> gate -> x * gate.

    Args:
        channels: input (and gated) channels C.
        hidden: reduce width.
        activation: activation after ``reduce``.
        gate: gate name.
        se_type: ``3d`` or ``2plus3d``.
        causal: CGAP instead of a mean over the whole clip.
        pos_encoding: add the positional encoding (learnable scale ``pos_encoding_scale``, init 0).
        key: state-key prefix.
    """

    def __init__(self, channels: int, hidden: int, *, activation: str, gate: str, se_type: str, causal: bool,
                 pos_encoding: bool, key: str) -> None:
        super().__init__()
        self.key, self.causal, self.concat = key, causal, se_type == "2plus3d"
        self.pooled = channels * (2 if self.concat else 1)
        self.reduce = nn.Conv3d(self.pooled, hidden, 1, bias=True)
        self.act = make_activation(activation)
        self.expand = nn.Conv3d(hidden, channels, 1, bias=True)
        self.gate = make_gate(gate)
        # ReZero-style: the encoding starts switched off (official initializer 'zeros').
        self.pos_encoding_scale = nn.Parameter(torch.zeros(())) if pos_encoding else None

    def forward(self, x: torch.Tensor, ctx: StepContext | None = None) -> torch.Tensor:
        """Gate ``x`` (B, C, T, H, W)."""
        space = x.mean(dim=(3, 4))  # (B, C, T)
        if self.causal:
            name = f"{self.key}_pool_buffer"
            time, ctx.new[name] = causal_frame_mean(space, ctx.state[name], ctx.seen)  # type: ignore[union-attr]
        else:
            time = space.mean(dim=2, keepdim=True)
            if self.concat:
                time = time.expand_as(space)
        pooled = torch.cat([time, space], dim=1) if self.concat else time  # (B, C or 2C, T or 1)
        if self.pos_encoding_scale is not None:
            n = pooled.shape[2]
            start = ctx.seen if ctx is not None else torch.zeros(1, dtype=torch.long, device=x.device)
            positions = (start + torch.arange(n, device=x.device)).to(pooled.dtype)
            enc = positional_encoding(positions, self.pooled).transpose(0, 1)  # (2C, T)
            pooled = pooled + self.pos_encoding_scale * enc
        gate = self.gate(self.expand(self.act(self.reduce(pooled[..., None, None]))))
        return x * gate


class StreamBottleneck(nn.Module):
    """One stream MoViNet layer: ``expansion`` -> ``feature`` (:class:`StreamConvBn`) -> ``se`` ->
    ``projection``, scaled by ``rezero``, plus ``skip`` (as :class:`nas.models.movinet.MovinetBottleneck`).

    Args:
        layer: the resolved layer.
        net: the resolved network (activation, gating and the stream options).
        key: state-key prefix (``block{b}_layer{l}``).
    """

    def __init__(self, layer: MovinetLayer, net: MovinetNet, key: str) -> None:
        super().__init__()
        self.expansion = ConvBn(layer.cin, layer.expand, activation=net.activation)
        self.feature = StreamConvBn(layer.expand, layer.expand, layer.kernel, layer.stride, depthwise=True,
                                    activation=net.activation, conv_type=net.conv_type, causal=net.causal, key=key)
        self.se = StreamSqueezeExcite(layer.expand, layer.se_hidden, activation=net.activation, gate=net.gating,
                                      se_type=net.se_type, causal=net.causal,
                                      pos_encoding=net.positional_encoding, key=key)
        self.projection = ConvBn(layer.expand, layer.cout)
        self.rezero = nn.Parameter(torch.zeros(()))
        self.skip: nn.Module | None = None
        if layer.skip != "identity":
            skip: list[nn.Module] = []
            if layer.skip == "pool_conv":
                skip.append(AvgPool3dSame((1, 3, 3), layer.stride))
            skip.append(ConvBn(layer.cin, layer.cout))
            self.skip = nn.Sequential(*skip)
        self.layer, self.key = layer, key

    @property
    def residual_scale(self) -> torch.Tensor:
        """What scales the residual branch: the ReZero scalar (:func:`~nas.models.layers.init_residual_branches_`)."""
        return self.rezero

    def state_shapes(self, size: tuple[int, int]) -> dict[str, tuple[int, ...]]:
        """Shapes (without batch) of this layer's state for an input of spatial ``size``."""
        shapes = self.feature.state_shapes(size, self.layer.expand)
        if self.se.causal:
            shapes[f"{self.key}_pool_buffer"] = (self.layer.expand,)
        return shapes

    def forward(self, x: torch.Tensor, ctx: StepContext | None = None) -> torch.Tensor:
        """Residual inverted bottleneck."""
        y = self.projection(self.se(self.feature(self.expansion(x), ctx), ctx))
        skip = x if self.skip is None else self.skip(x)
        return skip + self.rezero * y


class StreamHead(nn.Module):
    """``project`` -> pool -> ``fc`` -> ``act`` -> ``dropout`` -> ``classifier``.

    Causal pooling accumulates the per-frame spatial means across calls (state ``head_pool_buffer``) and
    divides by all frames seen: the prediction after the last chunk is the whole clip's.

    Args:
        cin: input channels.
        project: projection channels.
        width: pre-classifier channels.
        classes: classes.
        activation: activation of ``project``.
        classifier_activation: activation after ``fc``.
        dropout: dropout before the classifier.
        causal: accumulate the pool across calls.
    """

    def __init__(self, cin: int, project: int, width: int, classes: int, activation: str,
                 classifier_activation: str, dropout: float, causal: bool) -> None:
        super().__init__()
        self.project = ConvBn(cin, project, activation=activation)
        self.fc = nn.Conv3d(project, width, 1, bias=True)
        self.act = make_activation(classifier_activation)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv3d(width, classes, 1, bias=True)
        self.causal = causal

    def forward(self, x: torch.Tensor, ctx: StepContext | None = None) -> torch.Tensor:
        """(B, cin, T, H, W) -> (B, classes) logits of every frame seen so far."""
        x = self.project(x)
        if self.causal:
            total = ctx.state["head_pool_buffer"] + x.mean(dim=(3, 4)).sum(dim=2)  # type: ignore[union-attr]
            ctx.new["head_pool_buffer"] = total  # type: ignore[union-attr]
            pooled = total / (ctx.seen + x.shape[2]).to(total.dtype)  # type: ignore[union-attr]
            x = pooled[:, :, None, None, None]
        else:
            x = x.mean(dim=(2, 3, 4), keepdim=True)
        x = self.dropout(self.act(self.fc(x)))
        return self.classifier(x).flatten(1)


class MovinetStream(nn.Module):
    """A MoViNet with the stream options (see the module docstring): ``stem``, ``blocks``, ``head``.

    Args:
        net: the resolved network description.
    """

    def __init__(self, net: MovinetNet) -> None:
        super().__init__()
        if net.causal and (net.stem_stride[0] != 1 or any(layer.stride[0] != 1 for b in net.blocks for layer in b)):
            raise ValueError("causal: a causal MoViNet needs temporal stride 1 everywhere")
        self.net = net
        self.causal = net.causal
        self.stem = StreamConvBn(3, net.stem_width, net.stem_kernel, net.stem_stride, depthwise=False,
                                 activation=net.activation, conv_type=net.conv_type, causal=net.causal, key="stem")
        self.blocks = nn.Sequential(*(
            nn.Sequential(*(StreamBottleneck(layer, net, f"block{b}_layer{i}") for i, layer in enumerate(block)))
            for b, block in enumerate(net.blocks)
        ))
        self.head = StreamHead(net.blocks[-1][-1].cout, net.head_project, net.head_width, net.classes,
                               net.activation, net.classifier_activation, net.dropout, net.causal)
        init_conv_bn_(self)
        nn.init.normal_(self.head.classifier.weight, std=0.01)
        nn.init.zeros_(self.head.classifier.bias)

    # -- the state ------------------------------------------------------------------------------
    def state_shapes(self, size: int | tuple[int, int] | None = None) -> dict[str, tuple[int, ...]]:
        """Every state tensor's shape without the batch dimension (``frames`` is (1,) int64).

        Args:
            size: input frame size (one int for square, or (H, W)); default the architecture's crop.
        """
        h, w = _size(size if size is not None else self.net.clip.crop)
        shapes: dict[str, tuple[int, ...]] = {FRAMES_KEY: (1,)}
        shapes.update(self.stem.state_shapes((h, w), 3))
        h, w = same_out(h, self.net.stem_stride[1]), same_out(w, self.net.stem_stride[2])
        for block in self.blocks:
            for layer in block:
                shapes.update(layer.state_shapes((h, w)))
                h, w = same_out(h, layer.layer.stride[1]), same_out(w, layer.layer.stride[2])
        shapes["head_pool_buffer"] = (self.net.head_project,)
        return shapes

    def init_state(self, batch_size: int, size: int | tuple[int, int] | None = None, *,
                   device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> StreamState:
        """The state at the start of a video: zeros (see the module docstring for the keys).

        Args:
            batch_size: videos streamed together.
            size: frame size the chunks will have (int or (H, W)); default the architecture's crop.
            device: default the model's.
            dtype: float dtype of the buffers; default the model's.

        Raises:
            ValueError: if the model is not causal, or ``batch_size < 1``.
        """
        if not self.causal:
            raise ValueError("causal: got false; allowed: true -- only a causal MoViNet can be streamed")
        if batch_size < 1:
            raise ValueError(f"batch_size: got {batch_size}; allowed: an integer >= 1")
        param = next(self.parameters())
        device = param.device if device is None else device
        dtype = param.dtype if dtype is None else dtype
        state: StreamState = {}
        for name, shape in self.state_shapes(size).items():
            if name == FRAMES_KEY:
                state[name] = torch.zeros(shape, dtype=torch.long, device=device)
            else:
                state[name] = torch.zeros((batch_size, *shape), dtype=dtype, device=device)
        return state

    # -- running --------------------------------------------------------------------------------
    def step(self, chunk: torch.Tensor, state: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, StreamState]:
        """Run one chunk (B, 3, T, H, W) of a video, T >= 1, continuing from ``state``.

        Returns:
            ``(logits, new_state)``: logits (B, classes) of all frames seen so far; ``state`` is not
            modified.

        Raises:
            ValueError: if the model is not causal or ``state`` lacks a key this model needs.
        """
        if not self.causal:
            raise ValueError("causal: got false; allowed: true -- only a causal MoViNet can be streamed")
        shapes = self.state_shapes(tuple(chunk.shape[-2:]))  # type: ignore[arg-type]
        missing = [k for k in shapes if k not in state]
        if missing:
            raise ValueError(f"state: missing {', '.join(missing[:4])}; allowed: the mapping init_state() returns")
        for key, shape in shapes.items():
            got = tuple(state[key].shape) if key == FRAMES_KEY else tuple(state[key].shape[1:])
            if got != shape or (key != FRAMES_KEY and state[key].shape[0] != chunk.shape[0]):
                raise ValueError(f"state[{key!r}]: got shape {tuple(state[key].shape)}; allowed: "
                                 f"{(chunk.shape[0], *shape) if key != FRAMES_KEY else shape} for a batch of "
                                 f"{chunk.shape[0]} and {chunk.shape[-2]}x{chunk.shape[-1]} frames (init_state's size)")
        ctx = StepContext(state=state, seen=state[FRAMES_KEY])
        logits = self._run(chunk, ctx)
        ctx.new[FRAMES_KEY] = ctx.seen + chunk.shape[2]
        return logits, ctx.new

    def _run(self, x: torch.Tensor, ctx: StepContext | None) -> torch.Tensor:
        x = self.stem(x, ctx)
        for block in self.blocks:
            for layer in block:
                x = layer(x, ctx)
        return self.head(x, ctx)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) clip -> (B, classes) logits (causal: the whole clip from a zero state)."""
        if not self.causal:
            return self._run(x, None)
        state = self.init_state(x.shape[0], tuple(x.shape[-2:]), device=x.device, dtype=x.dtype)  # type: ignore[arg-type]
        return self._run(x, StepContext(state=state, seen=state[FRAMES_KEY]))


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def build_movinet_stream(net: MovinetNet) -> nn.Module:
    """Build the stream-variant MoViNet ``net`` describes, freshly initialised."""
    return MovinetStream(net)


class StreamStep(nn.Module):
    """``model.step`` as a module with the state as explicit positional tensors, for export.

    ``forward(chunk, *state)`` takes the state tensors in :attr:`state_names` order (sorted keys of
    ``init_state``) and returns ``(logits, *new_state)`` in the same order, so an exported graph (ONNX,
    TorchScript) is the step function with the state as its inputs and outputs.

    Args:
        model: a causal :class:`MovinetStream`.
        size: the frame size the state is laid out for.
    """

    def __init__(self, model: MovinetStream, size: int | tuple[int, int] | None = None) -> None:
        super().__init__()
        if not model.causal:
            raise ValueError("causal: got false; allowed: true -- only a causal MoViNet can be streamed")
        self.model = model
        self.state_names: list[str] = sorted(model.state_shapes(size))

    def forward(self, chunk: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One step: ``(chunk, *state) -> (logits, *new_state)``."""
        logits, new = self.model.step(chunk, dict(zip(self.state_names, state)))
        return (logits, *(new[name] for name in self.state_names))
