"""The temporal operators of nas.models.temporal: exact semantics, costs, forward and backward."""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nas.cost import round8
from nas.models.temporal import (
    FrameShuffle, STHConv, TemporalAggregation, TemporalShift, frame_shuffle, online_shift_step, temporal_shift,
)

torch.set_num_threads(2)


def _macs(fn, *args) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops() // 2


def _clip(c: int = 8, t: int = 4, s: int = 3, b: int = 2) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(b, c, t, s, s)


# -- TSM ------------------------------------------------------------------------------------------

def test_offline_shift_moves_one_eighth_each_way_zero_filled() -> None:
    x = _clip(c=16, t=4)
    y = temporal_shift(x)  # shift_div 8: 2 channels from t+1, 2 from t-1, 12 unchanged
    zero = torch.zeros_like(x[:, :2, 0])
    for t in range(4):
        torch.testing.assert_close(y[:, 0:2, t], x[:, 0:2, t + 1] if t < 3 else zero, rtol=0, atol=0)
        torch.testing.assert_close(y[:, 2:4, t], x[:, 2:4, t - 1] if t > 0 else zero, rtol=0, atol=0)
    torch.testing.assert_close(y[:, 4:], x[:, 4:], rtol=0, atol=0)


def test_online_shift_is_causal_and_streams_frame_by_frame() -> None:
    x = _clip(c=16, t=5)
    y = temporal_shift(x, online=True)
    torch.testing.assert_close(y[:, :2, 1:], x[:, :2, :-1], rtol=0, atol=0)
    assert torch.count_nonzero(y[:, :2, 0]) == 0
    torch.testing.assert_close(y[:, 2:], x[:, 2:], rtol=0, atol=0)
    # causal: changing a future frame changes no earlier output
    x2 = x.clone()
    x2[:, :, 3] += 1.0
    torch.testing.assert_close(temporal_shift(x2, online=True)[:, :, :3], y[:, :, :3], rtol=0, atol=0)
    # streaming one frame at a time with a cached buffer gives the same clip
    buffer, frames = None, []
    for t in range(5):
        out, buffer = online_shift_step(x[:, :, t:t + 1], buffer)
        frames.append(out)
    torch.testing.assert_close(torch.cat(frames, dim=2), y, rtol=0, atol=0)


@pytest.mark.parametrize("online", [False, True])
def test_shift_costs_nothing_and_passes_gradients(online: bool) -> None:
    x = _clip(c=16).requires_grad_()
    assert _macs(TemporalShift(online=online), x) == 0
    TemporalShift(online=online)(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert torch.count_nonzero(x.grad[:, 4:]) == x.grad[:, 4:].numel()  # unshifted channels get gradient


def test_shift_with_fewer_channels_than_shift_div_is_identity() -> None:
    x = _clip(c=4)
    assert temporal_shift(x, 8) is x


# -- TAM ------------------------------------------------------------------------------------------

def test_tam_with_the_seed_note_weights_is_tsm_with_a_half_shift() -> None:
    """bLVNet note: for 8 channels and r = 3, w1 = [1,1,0,0,0,0,0,0], w0 = [0,0,0,0,1,1,1,1] and
    w-1 = [0,0,1,1,0,0,0,0] make TAM the TSM shift of half the channels (a quarter each way)."""
    tam = TemporalAggregation(8, frames=3, init="identity")
    w_next = torch.tensor([1, 1, 0, 0, 0, 0, 0, 0.0])
    w_same = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1.0])
    w_prev = torch.tensor([0, 0, 1, 1, 0, 0, 0, 0.0])
    with torch.no_grad():
        # y_t = sum_j w_j * x_{t+j}; a zero-padded conv reads x_{t-1}, x_t, x_{t+1} at kernel index 0, 1, 2
        tam.conv.weight[:, 0, :, 0, 0] = torch.stack([w_prev, w_same, w_next], dim=1)
    x = _clip(c=8, t=6, s=5)
    with torch.no_grad():
        torch.testing.assert_close(tam(x), temporal_shift(x, shift_div=4), rtol=0, atol=0)


@pytest.mark.parametrize("channels, shift_div", [(16, 8), (24, 8), (32, 4)])
def test_tam_starts_as_the_tsm_shift(channels: int, shift_div: int) -> None:
    tam = TemporalAggregation(channels, frames=3, shift_div=shift_div)
    x = _clip(c=channels, t=5)
    with torch.no_grad():
        torch.testing.assert_close(tam(x), temporal_shift(x, shift_div), rtol=0, atol=0)


def test_tam_identity_init_and_a_five_frame_window() -> None:
    x = _clip(c=8, t=6)
    with torch.no_grad():
        torch.testing.assert_close(TemporalAggregation(8, 5, init="identity")(x), x, rtol=0, atol=0)
    tam = TemporalAggregation(8, 5, init="identity")
    with torch.no_grad():
        tam.conv.weight.zero_()
        tam.conv.weight[:, 0, 0] = 1.0  # w_-2: every channel from two frames back
        y = tam(x)
    torch.testing.assert_close(y[:, :, 2:], x[:, :, :-2], rtol=0, atol=0)
    assert torch.count_nonzero(y[:, :, :2]) == 0


def test_tam_cost_is_its_depthwise_macs_and_it_learns() -> None:
    c, r, t, s = 16, 3, 4, 5
    tam = TemporalAggregation(c, r)
    x = _clip(c=c, t=t, s=s).requires_grad_()
    assert _macs(tam, x.detach()[:1]) == c * r * t * s * s  # one clip
    assert sum(p.numel() for p in tam.parameters()) == c * r
    tam(x).square().sum().backward()
    assert torch.isfinite(tam.conv.weight.grad).all() and tam.conv.weight.grad.abs().sum() > 0
    assert torch.isfinite(x.grad).all()


def test_tam_rejects_an_even_window() -> None:
    with pytest.raises(ValueError, match="TAM frames: got 4; allowed: an odd number"):
        TemporalAggregation(8, 4)


# -- VSN shuffle ----------------------------------------------------------------------------------

def test_frame_shuffle_transposes_frames_and_channel_groups() -> None:
    t, g = 4, 3
    x = _clip(c=t * g, t=t)
    y = frame_shuffle(x)
    for src_t in range(t):
        for grp in range(t):
            for k in range(g):
                # group `grp` of frame `src_t` lands in group `src_t` of frame `grp`
                torch.testing.assert_close(y[:, src_t * g + k, grp], x[:, grp * g + k, src_t], rtol=0, atol=0)


@pytest.mark.parametrize("c, t", [(12, 4), (14, 4), (3, 4), (8, 1)])
def test_frame_shuffle_restores_itself_and_costs_nothing(c: int, t: int) -> None:
    x = _clip(c=c, t=t)
    torch.testing.assert_close(frame_shuffle(frame_shuffle(x)), x, rtol=0, atol=0)
    assert _macs(FrameShuffle(), x) == 0
    if c % t:
        torch.testing.assert_close(frame_shuffle(x)[:, c - c % t:], x[:, c - c % t:], rtol=0, atol=0)


def test_shuffle_lets_a_conv_see_every_frame() -> None:
    """After a shuffle, one frame's features depend on all frames (the VSN point)."""
    x = _clip(c=8, t=4).requires_grad_()
    frame_shuffle(x)[:, :, 0].sum().backward()
    per_frame = x.grad.abs().sum(dim=(0, 1, 3, 4))
    assert (per_frame > 0).all()


def test_compact_shuffle_around_a_depthwise_conv_stays_frame_local() -> None:
    """Shuffle -> depthwise conv -> restore only re-assigns kernels: no frame mixing (why compact
    shuffle needs a full kxk conv, as in ResNet bottlenecks, to model time)."""
    dw = torch.nn.Conv3d(8, 8, (1, 3, 3), padding=(0, 1, 1), groups=8, bias=False)
    x = _clip(c=8, t=4).requires_grad_()
    frame_shuffle(dw(frame_shuffle(x)))[:, :, 1].sum().backward()
    per_frame = x.grad.abs().sum(dim=(0, 1, 3, 4))
    assert per_frame[1] > 0 and torch.count_nonzero(per_frame) == 1


# -- STH ------------------------------------------------------------------------------------------

def _sth_macs_expected(c: int, k: int, mode: str, depthwise: bool, attention: bool, t: int, s: int) -> int:
    """Per output position: the kernels' taps (written out independently of nas.families.tsn2d)."""
    q = c // 4
    if mode == "merge":
        per_pos = (q * 3 + (c - q) * k * k) if depthwise else (q * c * 3 + (c - q) * c * k * k)
    elif depthwise:
        per_pos = c * 3 + c * k * k
    else:
        bounds = [i * c // 4 for i in range(5)]
        per_pos = sum((b1 - b0) * (b1 - b0) * 3 + (b1 - b0) * (c - (b1 - b0)) * k * k
                      for b0, b1 in zip(bounds, bounds[1:]))
    macs = per_pos * t * s * s
    if attention:
        hidden = round8(c / 4)
        macs += t * (c * hidden + hidden * 2 * c)
    return macs


STH_CASES = [
    ("merge", False, False), ("merge", True, False), ("hybrid", False, False), ("hybrid", True, False),
    ("hybrid", False, True), ("hybrid", True, True),
]


@pytest.mark.parametrize("mode, depthwise, attention", STH_CASES)
@pytest.mark.parametrize("c", [16, 18])
def test_sth_shapes_costs_and_backward(mode: str, depthwise: bool, attention: bool, c: int) -> None:
    k, t, s = 3, 4, 6
    conv = STHConv(c, k, stride=1, mode=mode, depthwise=depthwise, attention=attention)
    x = _clip(c=c, t=t, s=s).requires_grad_()
    assert _macs(conv, x.detach()[:1]) == _sth_macs_expected(c, k, mode, depthwise, attention, t, s)
    y = conv(x)
    assert y.shape == x.shape
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in conv.parameters())
    strided = STHConv(c, 5, stride=2, mode=mode, depthwise=depthwise, attention=attention)
    assert strided(x).shape == (2, c, t, 3, 3)


@pytest.mark.parametrize("depthwise", [False, True])
def test_sth_merge_is_temporal_in_exactly_a_quarter_of_the_outputs(depthwise: bool) -> None:
    conv = STHConv(16, 3, mode="merge", depthwise=depthwise)
    x = _clip(c=16, t=4)
    x2 = x.clone()
    x2[:, :, 2] += 1.0  # change frame 2 only
    with torch.no_grad():
        diff = (conv(x2) - conv(x))[:, :, 1].abs().sum(dim=(0, 2, 3))  # output frame 1
    assert (diff[:4] > 0).all() and torch.count_nonzero(diff[4:]) == 0


def test_sth_hybrid_temporal_kernel_of_a_quarter_reads_only_its_input_quarter() -> None:
    conv = STHConv(16, 3, mode="hybrid")
    x = _clip(c=16, t=4)
    x2 = x.clone()
    x2[:, 4:8, 2] += 1.0  # frame 2 of input quarter 1
    with torch.no_grad():
        diff = (conv(x2) - conv(x))[:, :, 1].abs().sum(dim=(0, 2, 3))  # output frame 1: temporal path only
    assert (diff[4:8] > 0).all() and torch.count_nonzero(diff[:4]) == 0 and torch.count_nonzero(diff[8:]) == 0


def test_sth_attention_fuses_with_weights_that_sum_to_one() -> None:
    torch.manual_seed(1)
    plain = STHConv(16, 3, mode="hybrid")
    fused = STHConv(16, 3, mode="hybrid", attention=True)
    fused.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        last = fused.attention[-1]
        last.weight.zero_()
        last.bias.zero_()  # equal logits: a_S = a_T = 1/2
        x = _clip(c=16, t=3)
        torch.testing.assert_close(fused(x), 0.5 * plain(x))


def test_sth_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="STH channels: got 3; allowed: at least 4"):
        STHConv(3)
    with pytest.raises(ValueError, match="STH mode: got 'x'"):
        STHConv(8, mode="x")
    with pytest.raises(ValueError, match="attention"):
        STHConv(8, mode="merge", attention=True)


# -- every operator in channels_last_3d -----------------------------------------------------------

OPS = {
    "tsm": lambda: TemporalShift(),
    "tsm_online": lambda: TemporalShift(online=True),
    "tam": lambda: TemporalAggregation(16),
    "shuffle": lambda: FrameShuffle(),
    "sth_merge": lambda: STHConv(16, mode="merge"),
    "sth_hybrid_att_dw": lambda: STHConv(16, mode="hybrid", depthwise=True, attention=True),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_operators_agree_in_channels_last_3d(name: str) -> None:
    torch.manual_seed(0)
    op = OPS[name]()
    x = _clip(c=16, t=4, s=5)
    with torch.no_grad():
        ref = op(x)
        out = op.to(memory_format=torch.channels_last_3d)(x.contiguous(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
