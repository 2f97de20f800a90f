"""Temporal modules for per-frame 2D networks: TSM shift, TAM, VSN channel shuffle, STH kernels.

Every operator takes and returns ``(B, C, T, H, W)`` tensors (any memory format, ``channels_last_3d``
included), so a 2D network written with 1xkxk ``Conv3d`` layers can use them between its convs.
Conventions shared by all of them:

* frame ``t`` of the output depends on frames of the *same clip* only; a shift or an aggregation
  reads zeros past the clip ends (zero fill, as TSM's offline shift and a zero-padded conv);
* a shift or a shuffle moves data, it multiplies nothing: 0 multiply-adds (``FlopCounterMode``
  counts 0 for slicing, ``cat`` and ``pad``), 0 parameters;
* TAM and STH are convolutions and cost what their convs cost (see :mod:`nas.families.tsn2d`).

Sources (the reading notes in ``shared/reference/seeds/``): TSM (Lin et al., ICCV 2019), bLVNet-TAM
(Fan et al., NeurIPS 2019, "More Is Less"), VSN (Video Shuffle Networks, 2019) and STH kernels (the
VSN note's second half). The code here is written from the descriptions, not from their code.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nas.cost import round8

__all__ = [
    "temporal_shift", "online_shift_step", "TemporalShift", "TemporalAggregation", "frame_shuffle",
    "FrameShuffle", "STHConv", "tsm_as_tam_weights",
]


def _pad_time(x: torch.Tensor, front: int, back: int) -> torch.Tensor:
    """Zero-pad the T axis of a (B, C, T, H, W) tensor (``F.pad`` lists the last axis first)."""
    return F.pad(x, (0, 0, 0, 0, front, back))


def temporal_shift(x: torch.Tensor, shift_div: int = 8, *, online: bool = False) -> torch.Tensor:
    """TSM's partial channel shift along time, zero-filled at the clip ends.

    Offline (bidirectional)::

        out[:, 0:f,   t] = x[:, 0:f,   t + 1]    (from the next frame; zeros at the last frame)
        out[:, f:2f,  t] = x[:, f:2f,  t - 1]    (from the previous frame; zeros at the first frame)
        out[:, 2f:,   t] = x[:, 2f:,   t]

    Online (unidirectional, causal, so it streams): only ``out[:, 0:f, t] = x[:, 0:f, t - 1]``.

    Args:
        x: (B, C, T, H, W).
        shift_div: ``f = C // shift_div`` channels move each way (TSM's default 8: 1/8 each way).
        online: unidirectional (past to present) instead of bidirectional.

    Returns:
        A tensor of the same shape; no multiply-adds.
    """
    f = x.shape[1] // shift_div
    if f == 0:
        return x
    if online:
        return torch.cat([_pad_time(x[:, :f, :-1], 1, 0), x[:, f:]], dim=1)
    future = _pad_time(x[:, :f, 1:], 0, 1)
    past = _pad_time(x[:, f:2 * f, :-1], 1, 0)
    return torch.cat([future, past, x[:, 2 * f:]], dim=1)


def online_shift_step(frame: torch.Tensor, buffer: torch.Tensor | None,
                      shift_div: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """One frame of the online shift, for streaming: equal to ``temporal_shift(clip, online=True)``
    frame by frame.

    Args:
        frame: the current frame's features, (B, C, 1, H, W).
        buffer: the cached ``C // shift_div`` channels of the previous frame, or ``None`` at the start.
        shift_div: as in :func:`temporal_shift`.

    Returns:
        ``(output frame, new buffer)``.
    """
    f = frame.shape[1] // shift_div
    old = torch.zeros_like(frame[:, :f]) if buffer is None else buffer
    return torch.cat([old, frame[:, f:]], dim=1), frame[:, :f].clone()


class TemporalShift(nn.Module):
    """:func:`temporal_shift` as a module.

    Args:
        shift_div: channels shifted each way = C // shift_div.
        online: unidirectional (streamable) instead of bidirectional.
    """

    def __init__(self, shift_div: int = 8, online: bool = False) -> None:
        super().__init__()
        self.shift_div, self.online = shift_div, online

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shift (B, C, T, H, W) features along T."""
        return temporal_shift(x, self.shift_div, online=self.online)

    def extra_repr(self) -> str:
        return f"shift_div={self.shift_div}, online={self.online}"


def tsm_as_tam_weights(channels: int, frames: int = 3, shift_div: int = 8) -> torch.Tensor:
    """The TAM weights that make TAM equal to the bidirectional TSM shift, shape (C, 1, r, 1, 1).

    The bLVNet note's example (8 channels, r = 3, a 1/2 shift i.e. ``shift_div`` 4):
    ``w_1 = [1,1,0,0,0,0,0,0]`` (from frame t+1), ``w_0 = [0,0,0,0,1,1,1,1]``,
    ``w_-1 = [0,0,1,1,0,0,0,0]`` (from frame t-1). Kernel index ``j + r // 2`` holds ``w_j``.
    """
    f, mid = channels // shift_div, frames // 2
    w = torch.zeros(channels, 1, frames, 1, 1)
    w[:f, 0, mid + 1] = 1.0
    w[f:2 * f, 0, mid - 1] = 1.0
    w[2 * f:, 0, mid] = 1.0
    return w


class TemporalAggregation(nn.Module):
    """TAM (bLVNet): per frame, a learnable per-channel weighted sum of ``r`` neighbouring frames.

    ``y_t = sum_{j=-r//2..r//2} w_j * x_{t+j}`` with one weight vector ``w_j`` (length C) per offset
    and zeros past the clip ends: a depthwise ``r x 1 x 1`` convolution, ``C * r`` multiply-adds per
    output position and ``C * r`` parameters, no bias. It starts as the TSM shift (``init="tsm"``,
    the generalisation the bLVNet note describes) or as the identity (``init="identity"``).

    Args:
        channels: C.
        frames: r, odd.
        shift_div: the TSM shift it starts as (``init="tsm"``).
        init: ``tsm`` or ``identity``.
    """

    def __init__(self, channels: int, frames: int = 3, shift_div: int = 8, init: str = "tsm") -> None:
        super().__init__()
        if frames % 2 != 1:
            raise ValueError(f"TAM frames: got {frames}; allowed: an odd number (centred window)")
        if init not in ("tsm", "identity"):
            raise ValueError(f"TAM init: got {init!r}; allowed: 'tsm', 'identity'")
        self.frames, self.shift_div, self.init = frames, shift_div, init
        self.conv = nn.Conv3d(channels, channels, (frames, 1, 1), padding=(frames // 2, 0, 0),
                              groups=channels, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Set the weights to the initial pattern (``init``); network-wide conv inits must call this after."""
        w = self.conv.weight
        with torch.no_grad():
            if self.init == "tsm":
                w.copy_(tsm_as_tam_weights(w.shape[0], self.frames, self.shift_div).to(w.device))
            else:
                w.zero_()
                w[:, 0, self.frames // 2] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Aggregate (B, C, T, H, W) features over neighbouring frames."""
        return self.conv(x)


def frame_shuffle(x: torch.Tensor) -> torch.Tensor:
    """VSN channel shuffle across frames; it is its own inverse, so it also *restores*.

    Each frame's first ``G * T`` channels (``G = C // T``) are cut into T groups of G; group g of
    frame t goes to group t of frame g (a transpose of the frame and group axes). After it, frame g
    holds a slice of every frame, so the next conv mixes the whole clip; applying it again puts every
    channel back. Channels past ``G * T`` stay in place (none when T divides C); with C < T nothing
    moves. 0 multiply-adds.

    Args:
        x: (B, C, T, H, W).
    """
    b, c, t, h, w = x.shape
    g = c // t
    if g == 0 or t == 1:
        return x
    n = g * t
    # channel index = group * G + k  ->  axes (group, k); swap the group axis with the frame axis
    y = x[:, :n].reshape(b, t, g, t, h, w).permute(0, 3, 2, 1, 4, 5).reshape(b, n, t, h, w)
    return y if n == c else torch.cat([y, x[:, n:]], dim=1)


class FrameShuffle(nn.Module):
    """:func:`frame_shuffle` as a module (shuffle and restore are the same operation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shuffle (or restore) (B, C, T, H, W) features across frames."""
        return frame_shuffle(x)


class STHConv(nn.Module):
    """STH kernels: a spatial ``1 x k x k`` conv in which some kernels are temporal ``3 x 1 x 1``.

    Modes (C in = C out = ``channels``):

    * ``merge``: the first ``C // 4`` output channels come from temporal kernels, the other
      ``C - C // 4`` from spatial ones (concatenated).
    * ``hybrid``: the input is cut into quarters (``i * C // 4`` boundaries); output quarter i gets a
      temporal kernel over input quarter i plus spatial kernels over the other three quarters, so
      every output sees a quarter of its inputs in time and three quarters in space; the two outputs
      are summed, or with ``attention`` fused as ``a_S * O_S + a_T * O_T`` where (a_S, a_T) is a
      softmax over the pair of per-channel, per-frame logits from
      ``pool HxW(O_S + O_T) -> 1x1 (bias) -> ReLU -> 1x1 (bias) to 2C`` (hidden ``round8(C / 4)``;
      SK-style, my reading of the note's attention fusion, whose formula is an image).

    ``depthwise=True`` (an inverted bottleneck's depthwise conv, where an output channel sees only
    its own input channel): merge makes the first ``C // 4`` channels temporal and the rest spatial;
    hybrid gives every channel both a temporal and a spatial depthwise kernel.

    Args:
        channels: C (at least 4).
        kernel: k of the spatial kernels.
        stride: spatial stride (both kernels).
        mode: ``merge`` or ``hybrid``.
        depthwise: depthwise kernels (see above).
        attention: attention fusion (``hybrid`` only).
    """

    def __init__(self, channels: int, kernel: int = 3, stride: int = 1, mode: str = "merge",
                 depthwise: bool = False, attention: bool = False) -> None:
        super().__init__()
        if mode not in ("merge", "hybrid"):
            raise ValueError(f"STH mode: got {mode!r}; allowed: 'merge', 'hybrid'")
        if channels < 4:
            raise ValueError(f"STH channels: got {channels}; allowed: at least 4 (STH splits them into quarters)")
        if attention and mode != "hybrid":
            raise ValueError("STH attention: allowed only with mode 'hybrid' (merge outputs disjoint channels)")
        c, self.mode, self.depthwise = channels, mode, depthwise
        st, sp = (1, stride, stride), (0, kernel // 2, kernel // 2)

        def t_conv(cin: int, cout: int, groups: int = 1) -> nn.Conv3d:
            return nn.Conv3d(cin, cout, (3, 1, 1), st, (1, 0, 0), groups=groups, bias=False)

        def s_conv(cin: int, cout: int, groups: int = 1) -> nn.Conv3d:
            return nn.Conv3d(cin, cout, (1, kernel, kernel), st, sp, groups=groups, bias=False)

        self.bounds = [i * c // 4 for i in range(5)]
        q = c // 4
        if mode == "merge" and depthwise:
            self.temporal, self.spatial = t_conv(q, q, q), s_conv(c - q, c - q, c - q)
        elif mode == "merge":
            self.temporal, self.spatial = t_conv(c, q), s_conv(c, c - q)
        elif depthwise:
            self.temporal, self.spatial = t_conv(c, c, c), s_conv(c, c, c)
        else:
            sizes = [self.bounds[i + 1] - self.bounds[i] for i in range(4)]
            self.temporal = nn.ModuleList(t_conv(n, n) for n in sizes)
            self.spatial = nn.ModuleList(s_conv(c - n, n) for n in sizes)
        self.attention: nn.Sequential | None = None
        if attention:
            hidden = round8(c / 4)
            self.attention = nn.Sequential(nn.Conv3d(c, hidden, 1), nn.ReLU(), nn.Conv3d(hidden, 2 * c, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, C, T, H / stride, W / stride)."""
        q = self.bounds[1]
        if self.mode == "merge":
            if self.depthwise:
                return torch.cat([self.temporal(x[:, :q]), self.spatial(x[:, q:])], dim=1)
            return torch.cat([self.temporal(x), self.spatial(x)], dim=1)
        if self.depthwise:
            o_t, o_s = self.temporal(x), self.spatial(x)
        else:
            b = self.bounds
            quarters = [x[:, b[i]:b[i + 1]] for i in range(4)]
            o_t = torch.cat([conv(quarters[i]) for i, conv in enumerate(self.temporal)], dim=1)
            o_s = torch.cat([
                conv(torch.cat(quarters[:i] + quarters[i + 1:], dim=1)) for i, conv in enumerate(self.spatial)
            ], dim=1)
        if self.attention is None:
            return o_s + o_t
        logits = self.attention((o_s + o_t).mean(dim=(3, 4), keepdim=True))
        a = logits.unflatten(1, (2, -1)).softmax(dim=1)  # (B, 2, C, T, 1, 1)
        return a[:, 0] * o_s + a[:, 1] * o_t
