"""Shared building blocks: TF-'same' convolution and pooling, activations, squeeze-excitation, init.

TF/Keras ``padding='same'`` differs from PyTorch's symmetric ``padding=k//2`` whenever a dimension is
strided: TF pads ``pad_total = max(k - ((n - 1) % s + 1), 0)`` cells, ``pad_total // 2`` in front and
the rest at the end, so a stride-2 3x3 conv on an even size pads only bottom/right. MoViNet weights
and shapes depend on it; X3D uses plain symmetric PyTorch padding.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "same_padding", "conv3d_same", "whole_kernels", "Conv3dSame", "AvgPool3dSame", "Swish", "SqueezeExcite3d",
    "make_activation", "make_gate", "init_conv_bn_",
    "CausalConv3d", "causal_frame_mean", "positional_encoding",
]

Triple = tuple[int, int, int]


def _triple(value: int | Sequence[int]) -> Triple:
    if isinstance(value, int):
        return (value, value, value)
    t, h, w = value
    return (int(t), int(h), int(w))


def same_padding(size: Sequence[int], kernel: Sequence[int], stride: Sequence[int]) -> tuple[int, ...]:
    """TF 'same' padding of a (T, H, W) input, in :func:`torch.nn.functional.pad` order.

    Args:
        size: input extent per dimension (T, H, W).
        kernel: kernel extent per dimension.
        stride: stride per dimension.

    Returns:
        ``(w_beg, w_end, h_beg, h_end, t_beg, t_end)``: ``F.pad`` lists the last dimension first.
    """
    pads: list[int] = []
    for n, k, s in zip(reversed(tuple(size)), reversed(tuple(kernel)), reversed(tuple(stride))):
        total = max(k - ((n - 1) % s + 1), 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)


def _is_static(kernel: Triple, stride: Triple) -> bool:
    """Whether TF 'same' padding is ``k // 2`` on both sides whatever the input size.

    True for odd kernels at stride 1 (``pad_total = k - 1``) and for size-1 kernels at any stride
    (``pad_total = 0``); then the conv's own symmetric ``padding`` does the job without an F.pad copy.
    """
    return all(k == 1 or (s == 1 and k % 2 == 1) for k, s in zip(kernel, stride))


_TRIM_TAPS = [True]  # conv3d_same drops the taps that meet only padding (whole_kernels() turns it off)


@contextlib.contextmanager
def whole_kernels() -> Iterator[None]:
    """Within the block :func:`conv3d_same` convolves with every tap of the kernel, as the papers'
    multiply-add counts assume (:func:`nas.measure.measured_macs` counts under it)."""
    _TRIM_TAPS.append(False)
    try:
        yield
    finally:
        _TRIM_TAPS.pop()


def _reachable_taps(n: int, k: int, s: int, before: int) -> tuple[int, int]:
    """The first and last kernel tap of one dimension that meets data at some output position.

    Output ``o`` (``0 <= o < ceil(n / s)``) reads input ``o * s - before + t`` at tap ``t``: a tap
    below ``before - (out - 1) * s`` always lands in the front padding, one above ``n - 1 + before``
    always in the back padding. (With a stride larger than the input a tap inside the range may still
    miss every cell; keeping it costs time, not correctness.)
    """
    out = -(-n // s)
    return max(0, before - (out - 1) * s), min(k - 1, n - 1 + before)


def conv3d_same(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                stride: Sequence[int] = (1, 1, 1), groups: int = 1) -> torch.Tensor:
    """Conv3d with TF 'same' padding, computed without the kernel taps that only ever meet padding.

    At the small inputs of proxy training a large kernel hangs over the map: a 1x7x7 kernel on the
    1 x 1 map of MoViNet's last stage at 17 px sees data only at its centre tap. Those taps multiply
    zeros, so dropping them (and as much padding) gives the same output, and their weight gradients are
    zero either way; on CPU the dropped work is most of the conv's backward (oneDNN's depthwise weight
    gradient scales with the kernel, not with the data). A 1 x 1 map runs as a conv1d over time.

    Args:
        x: (N, C, T, H, W) input.
        weight: (C_out, C / groups, kT, kH, kW) kernel.
        bias: optional (C_out,) bias.
        stride: (T, H, W) stride.
        groups: channel groups.

    Returns:
        The output, ``ceil(n / s)`` per dimension, equal to padding ``x`` with :func:`same_padding` and
        convolving with the whole kernel.
    """
    size, kernel, stride = tuple(x.shape[-3:]), tuple(weight.shape[-3:]), tuple(int(v) for v in stride)
    pad = same_padding(size, kernel, stride)
    trim = _TRIM_TAPS[-1]
    out, lows, begs, ends, keep = [], [], [], [], []
    for n, k, s, before in zip(size, kernel, stride, (pad[4], pad[2], pad[0])):
        lo, hi = _reachable_taps(n, k, s, before) if trim else (0, k - 1)
        kept = hi - lo + 1
        o = -(-n // s)
        beg = before - lo
        out.append(o)
        lows.append(lo)
        keep.append(kept)
        begs.append(beg)
        # enough for the last window, no more (for the whole kernel: TF's own end padding)
        ends.append(max(0, (o - 1) * s - beg + kept - n))
    if tuple(keep) != kernel:
        weight = weight[:, :, lows[0]:lows[0] + keep[0], lows[1]:lows[1] + keep[1], lows[2]:lows[2] + keep[2]]
    if trim and size[1:] == (1, 1):  # a 1 x 1 map: the kept spatial tap is the only one; a conv1d over time
        x1 = x.flatten(2)  # (N, C, T): a view
        w1 = weight[:, :, :, 0, 0]
        if begs[0] == ends[0]:
            y = F.conv1d(x1, w1, bias, stride[0], begs[0], 1, groups)
        else:
            y = F.conv1d(F.pad(x1, (begs[0], ends[0])), w1, bias, stride[0], 0, 1, groups)
        # view, not [..., None, None]: indexing gives the two new size-1 dims stride 1, and on a
        # channels-last result (strides (T*C, 1, C, 1, 1)) torch 2.13's CPU batch_norm backward then
        # returns wrong gradients (forward right); view gives them the canonical strides (C, C).
        y = y[:, :, :out[0]]
        return y.view(*y.shape, 1, 1)
    if begs == ends:  # symmetric: the conv pads by itself (no copy)
        y = F.conv3d(x, weight, bias, stride, tuple(begs), 1, groups)
    else:
        y = F.conv3d(F.pad(x, (begs[2], ends[2], begs[1], ends[1], begs[0], ends[0])), weight, bias, stride, 0, 1,
                     groups)
    if tuple(y.shape[-3:]) != tuple(out):  # a trimmed window can fit once more at the end
        y = y[:, :, :out[0], :out[1], :out[2]]
    return y


class Conv3dSame(nn.Conv3d):
    """``nn.Conv3d`` with TF 'same' padding (see the module docstring); no dilation.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: (T, H, W) kernel or one int for all three.
        stride: (T, H, W) stride or one int.
        groups: channel groups (``in_channels`` for depthwise).
        bias: whether the conv has a bias.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
                 stride: int | Sequence[int] = 1, groups: int = 1, bias: bool = False) -> None:
        kernel, strides = _triple(kernel_size), _triple(stride)
        self.static_padding = _is_static(kernel, strides)
        padding = tuple(k // 2 for k in kernel) if self.static_padding else (0, 0, 0)
        super().__init__(in_channels, out_channels, kernel, strides, padding=padding, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """TF-'same' convolution without the taps that meet only padding (:func:`conv3d_same`)."""
        return conv3d_same(x, self.weight, self.bias, self.stride, self.groups)


class AvgPool3dSame(nn.Module):
    """Average pooling with TF 'same' padding; padded cells are excluded from the divisor (as in TF).

    Args:
        kernel_size: (T, H, W) window or one int.
        stride: (T, H, W) stride or one int.
    """

    def __init__(self, kernel_size: int | Sequence[int], stride: int | Sequence[int]) -> None:
        super().__init__()
        self.kernel_size = _triple(kernel_size)
        self.stride = _triple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool ``x`` of shape (B, C, T, H, W)."""
        pad = same_padding(x.shape[-3:], self.kernel_size, self.stride)
        if not any(pad):
            return F.avg_pool3d(x, self.kernel_size, self.stride)
        # F.pad is asymmetric and pooling the padded tensor divides by the full window volume; a
        # single-channel ones mask pooled the same way gives the fraction of real cells per window.
        mean_with_zeros = F.avg_pool3d(F.pad(x, pad), self.kernel_size, self.stride)
        ones = x.new_ones((1, 1, *x.shape[-3:]))
        real_fraction = F.avg_pool3d(F.pad(ones, pad), self.kernel_size, self.stride)
        return mean_with_zeros / real_fraction

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class Swish(nn.Module):
    """``x * sigmoid(x)`` (SiLU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply swish."""
        return F.silu(x)


_ACTIVATIONS = {"swish": Swish, "hard_swish": nn.Hardswish, "relu": nn.ReLU}
# nn.Hardsigmoid is relu6(x + 3) / 6, the Model Garden hard_sigmoid.
_GATES = {"sigmoid": nn.Sigmoid, "hard_sigmoid": nn.Hardsigmoid}


def make_activation(name: str) -> nn.Module:
    """A fresh activation module: ``swish``, ``hard_swish`` (x * relu6(x + 3) / 6) or ``relu``.

    Raises:
        ValueError: for an unknown name.
    """
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of {', '.join(_ACTIVATIONS)}") from None


def make_gate(name: str) -> nn.Module:
    """A fresh gating module: ``sigmoid`` or ``hard_sigmoid`` (relu6(x + 3) / 6).

    Raises:
        ValueError: for an unknown name.
    """
    try:
        return _GATES[name]()
    except KeyError:
        raise ValueError(f"unknown gate {name!r}; expected one of {', '.join(_GATES)}") from None


class SqueezeExcite3d(nn.Module):
    """Squeeze-excitation over (T, H, W): pool -> 1x1x1 (bias) -> act -> 1x1x1 (bias) -> gate -> scale.

    Args:
        channels: input (and output) channels.
        hidden: bottleneck channels.
        activation: activation name after the reduce conv (see :func:`make_activation`).
        gate: gate name after the expand conv (see :func:`make_gate`).
    """

    def __init__(self, channels: int, hidden: int, activation: str = "relu", gate: str = "sigmoid") -> None:
        super().__init__()
        self.reduce = nn.Conv3d(channels, hidden, 1, bias=True)
        self.act = make_activation(activation)
        self.expand = nn.Conv3d(hidden, channels, 1, bias=True)
        self.gate = make_gate(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale each channel of ``x`` by its gate."""
        s = x.mean(dim=(2, 3, 4), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(s))))


def init_residual_branches_(module: nn.Module, zero: bool) -> None:
    """Set the scale of every residual branch in ``module`` to 0 or 1, in place.

    A block names the tensor that scales its branch with a ``residual_scale`` attribute (``None``: the
    block has no residual): the last BN's gamma in X3D and TSN blocks, the ReZero scalar in MoViNet
    layers. ``zero=True`` makes every block start as its shortcut (X3D's ``ZERO_INIT_FINAL_BN``, timm's
    ``zero_init_last``, MoViNet's ReZero); ``zero=False`` starts every branch at full scale.

    Why it is a choice: while a branch's scale is 0 no weight inside it gets a gradient, and on the
    pure-temporal synthetic tasks a short proxy spends hundreds of steps waiting for the scales to
    grow (``experiments/results/residual_init.md``); ImageNet-length training does not notice.
    """
    with torch.no_grad():
        for m in module.modules():
            scale = getattr(m, "residual_scale", None)
            if isinstance(scale, torch.Tensor):
                scale.fill_(0.0 if zero else 1.0)


def init_conv_bn_(module: nn.Module) -> None:
    """He/Kaiming normal (fan_out) convs with zero bias, BN gamma 1 and beta 0, in place.

    Callers then set each residual branch's scale (:func:`init_residual_branches_`) and re-initialise
    their classifier. Meta tensors (a model built only to count its cost or memory) hold no values:
    they are left alone, since the meta device runs every init through Python (a third of a trial's
    memory estimate).
    """
    if any(p.is_meta for p in module.parameters()):
        return
    for m in module.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class CausalConv3d(nn.Conv3d):
    """``nn.Conv3d`` that is causal in time and TF 'same' in space (official ``padding='causal'``).

    Its input is ``concat(buffer, x)`` along time, where ``buffer`` holds the ``k_t - 1`` frames before
    ``x`` (zeros at the start of a video, so a whole clip is exactly zero left-padding by ``k_t - 1``);
    the conv then runs 'valid' in time and returns as many frames as ``x`` has. The new buffer is the
    last ``k_t - 1`` frames of the concatenation, so a chunk shorter than the buffer keeps the old tail.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: (T, H, W) kernel or one int.
        stride: (T, H, W) stride or one int. A temporal stride > 1 is exact for a whole clip (zero
            buffer) but not streamable chunk by chunk; MoViNets stride only in space.
        groups: channel groups (``in_channels`` for depthwise).
        bias: whether the conv has a bias.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
                 stride: int | Sequence[int] = 1, groups: int = 1, bias: bool = False) -> None:
        kernel, strides = _triple(kernel_size), _triple(stride)
        spatial_kernel, spatial_stride = (1, *kernel[1:]), (1, *strides[1:])
        self.static_padding = _is_static(spatial_kernel, spatial_stride)  # type: ignore[arg-type]
        padding = (0, kernel[1] // 2, kernel[2] // 2) if self.static_padding else (0, 0, 0)
        super().__init__(in_channels, out_channels, kernel, strides, padding=padding, groups=groups, bias=bias)
        self.buffer_frames = kernel[0] - 1

    def forward(self, x: torch.Tensor, buffer: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        """Convolve ``x`` (B, C, T, H, W) after its ``buffer`` (B, C, k_t - 1, H, W).

        Returns:
            ``(y, new_buffer)``: y has T frames; new_buffer the last k_t - 1 frames of concat(buffer, x).
        """
        full = torch.cat([buffer, x], dim=2) if self.buffer_frames else x
        new_buffer = full[:, :, full.shape[2] - self.buffer_frames:]
        if not self.static_padding:
            pad = same_padding((1, *full.shape[-2:]), (1, *self.kernel_size[1:]), (1, *self.stride[1:]))
            if any(pad):
                full = F.pad(full, pad)
        return super().forward(full), new_buffer


def causal_frame_mean(frames: torch.Tensor, running_sum: torch.Tensor,
                      seen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cumulative global average pooling (official CGAP): the running mean over all frames so far.

    Args:
        frames: per-frame features (B, C, T) (already averaged over space).
        running_sum: (B, C) sum of the per-frame features of every earlier frame (zeros at the start).
        seen: int64 tensor of shape (1,): the number of earlier frames.

    Returns:
        ``(means, new_running_sum)``: ``means[..., t]`` is the mean of frames ``0 .. seen + t``; frames
        1, 2, 3, 4 give 1, 1.5, 2, 2.5 however they are chunked.
    """
    sums = torch.cumsum(frames, dim=2) + running_sum.unsqueeze(2)
    count = seen + torch.arange(1, frames.shape[2] + 1, device=frames.device)
    return sums / count.to(frames.dtype), sums[:, :, -1]


def positional_encoding(positions: torch.Tensor, channels: int) -> torch.Tensor:
    """The official MoViNet positional encoding: (T,) positions -> (T, channels).

    ``angle_i = 1 / 10000^(2 floor(i/2) / C)``; the encoding is the sin block of the even angles
    followed by the cos block of the odd ones (concatenated, not interleaved).
    """
    idx = torch.arange(channels, device=positions.device)
    power = (2 * torch.div(idx, 2, rounding_mode="floor")).to(positions.dtype) / channels
    radians = positions.unsqueeze(1) * torch.pow(torch.tensor(10_000.0, dtype=positions.dtype,
                                                              device=positions.device), -power)
    return torch.cat([torch.sin(radians[:, 0::2]), torch.cos(radians[:, 1::2])], dim=1)
