"""TF-'same' convolution and pooling primitives against the official Model Garden oracles.

TF tensors are N, T, H, W, C; the torch tensors here are N, C, T, H, W.
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from nas.models.layers import (  # noqa: E402
    AvgPool3dSame, Conv3dSame, SqueezeExcite3d, make_activation, make_gate, same_padding,
)


def _ones_conv(cin: int, cout: int, kernel, stride, groups: int = 1) -> Conv3dSame:
    conv = Conv3dSame(cin, cout, kernel, stride, groups=groups)
    torch.nn.init.ones_(conv.weight)
    return conv


def _ramp(t: int, h: int, w: int) -> torch.Tensor:
    """x[0, 0, f, i, j] = 100 f + w i + j: every cell distinct."""
    f, i, j = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    return (100 * f + w * i + j).float()[None, None]


def _naive_same_avg_pool(x: torch.Tensor, kernel, stride) -> torch.Tensor:
    """Average over the real cells of each TF-'same' window, by explicit loops."""
    t, h, w = x.shape[-3:]
    pw0, _, ph0, _, pt0, _ = same_padding((t, h, w), kernel, stride)
    dims = [(n + s - 1) // s for n, s in zip((t, h, w), stride)]
    out = torch.empty(*x.shape[:2], *dims)
    for a in range(dims[0]):
        for b in range(dims[1]):
            for c in range(dims[2]):
                t0, h0, w0 = a * stride[0] - pt0, b * stride[1] - ph0, c * stride[2] - pw0
                win = x[..., max(t0, 0):t0 + kernel[0], max(h0, 0):h0 + kernel[1], max(w0, 0):w0 + kernel[2]]
                out[..., a, b, c] = win.mean(dim=(-3, -2, -1))
    return out


@pytest.mark.parametrize("n, k, s, expected", [
    (4, 3, 2, (0, 1)),   # even size, stride 2: only the end is padded
    (5, 3, 2, (1, 1)),
    (4, 3, 1, (1, 1)),
    (7, 5, 1, (2, 2)),
    (4, 1, 2, (0, 0)),
    (8, 5, 2, (1, 2)),
])
def test_same_padding_per_dimension(n, k, s, expected):
    assert same_padding((1, 1, n), (1, 1, k), (1, 1, s))[:2] == expected


def test_same_padding_is_in_f_pad_order():
    # W first, then H, then T.
    assert same_padding((5, 4, 6), (3, 3, 1), (1, 2, 2)) == (0, 0, 0, 1, 1, 1)


def test_strided_same_conv_pads_only_bottom_right():
    # nn_layers_test: k 1x3x3, s 1x2x2 on ones [1, 1, 4, 4, 1] -> [[9, 6], [6, 4]] (== Keras 'same').
    conv = _ones_conv(1, 1, (1, 3, 3), (1, 2, 2))
    assert not conv.static_padding
    out = conv(torch.ones(1, 1, 1, 4, 4))
    assert out.shape == (1, 1, 1, 2, 2)
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([[9.0, 6.0], [6.0, 4.0]]))


def test_strided_same_conv_depthwise_odd_size():
    # Odd size 5 with stride 2 pads one cell each side: corners see 4 real cells, edges 6.
    conv = _ones_conv(3, 3, (1, 3, 3), (1, 2, 2), groups=3)
    out = conv(torch.ones(1, 3, 2, 5, 5))
    expected = torch.tensor([[4.0, 6.0, 4.0], [6.0, 9.0, 6.0], [4.0, 6.0, 4.0]])
    assert out.shape == (1, 3, 2, 3, 3)
    torch.testing.assert_close(out, expected.expand(1, 3, 2, 3, 3))


def test_stride_one_same_conv_keeps_size():
    conv = _ones_conv(1, 1, (1, 3, 3), 1)
    assert conv.static_padding and conv.padding == (0, 1, 1)  # the fast path: no F.pad copy
    out = conv(torch.ones(1, 1, 1, 4, 4))
    row_edge, row_mid = [4.0, 6.0, 6.0, 4.0], [6.0, 9.0, 9.0, 6.0]
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([row_edge, row_mid, row_mid, row_edge]))


def test_temporal_same_conv_is_symmetric():
    conv = _ones_conv(1, 1, (3, 1, 1), 1)
    out = conv(torch.ones(1, 1, 4, 2, 2))
    torch.testing.assert_close(out[0, 0, :, 0, 0], torch.tensor([2.0, 3.0, 3.0, 2.0]))


def test_same_conv_channels_last_matches():
    conv = Conv3dSame(4, 6, (3, 3, 3), (1, 2, 2))
    x = torch.randn(2, 4, 3, 6, 7)
    expected = conv(x)
    out = conv.to(memory_format=torch.channels_last_3d)(x.to(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(out, expected)


def test_avg_pool_same_even_size_excludes_padding():
    # 4x4 ramp 4i + j; windows cover rows/cols {0,1,2} and {2,3}: means 1 and 2.5 per axis.
    pool = AvgPool3dSame((1, 3, 3), (1, 2, 2))
    out = pool(_ramp(1, 4, 4))
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([[5.0, 6.5], [11.0, 12.5]]))


def test_avg_pool_same_odd_size_excludes_padding():
    # 5x5 ramp 5i + j; windows {0,1}, {1,2,3}, {3,4}: means 0.5, 2, 3.5 per axis.
    pool = AvgPool3dSame((1, 3, 3), (1, 2, 2))
    out = pool(_ramp(1, 5, 5))
    r = torch.tensor([0.5, 2.0, 3.5])
    torch.testing.assert_close(out[0, 0, 0], 5 * r[:, None] + r[None, :])
    # For odd sizes TF 'same' is symmetric, so PyTorch's own count_include_pad=False agrees.
    x = torch.randn(2, 3, 2, 7, 9)
    torch.testing.assert_close(pool(x), F.avg_pool3d(x, (1, 3, 3), (1, 2, 2), (0, 1, 1), count_include_pad=False))


@pytest.mark.parametrize("shape", [(2, 4, 4), (3, 5, 6), (1, 8, 7), (4, 1, 2)])
@pytest.mark.parametrize("kernel, stride", [((1, 3, 3), (1, 2, 2)), ((3, 3, 3), (2, 2, 2)), ((1, 3, 3), (1, 1, 1))])
def test_avg_pool_same_matches_naive(shape, kernel, stride):
    x = torch.randn(2, 3, *shape)
    pool = AvgPool3dSame(kernel, stride)
    expected = _naive_same_avg_pool(x, kernel, stride)
    torch.testing.assert_close(pool(x), expected)
    out_cl = pool(x.to(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(out_cl, expected)


@pytest.mark.parametrize("kernel, stride, size", [((1, 3, 3), (1, 2, 2), 8), ((5, 3, 3), (1, 1, 1), 7),
                                                  ((3, 3, 3), (1, 2, 2), 9), ((1, 1, 1), (1, 2, 2), 8)])
def test_same_conv_flops_equal_plain_conv(kernel, stride, size):
    same = Conv3dSame(8, 8, kernel, stride, groups=8)
    plain = torch.nn.Conv3d(8, 8, kernel, stride, padding=tuple(k // 2 for k in kernel), groups=8, bias=False)
    x = torch.zeros(1, 8, 4, size, size)
    counts = []
    for conv in (same, plain):
        with FlopCounterMode(display=False) as fc:
            y = conv(x)
        counts.append((fc.get_total_flops(), y.shape))
    assert counts[0] == counts[1]


def test_activations_and_gates():
    x = torch.linspace(-5, 5, 41)
    torch.testing.assert_close(make_activation("swish")(x), x * torch.sigmoid(x))
    torch.testing.assert_close(make_activation("hard_swish")(x), x * F.relu6(x + 3) / 6)
    torch.testing.assert_close(make_activation("relu")(x), x.clamp(min=0))
    torch.testing.assert_close(make_gate("hard_sigmoid")(x), F.relu6(x + 3) / 6)
    torch.testing.assert_close(make_gate("sigmoid")(x), torch.sigmoid(x))
    with pytest.raises(ValueError, match="activation"):
        make_activation("gelu")
    with pytest.raises(ValueError, match="gate"):
        make_gate("tanh")


def test_squeeze_excite_gates_each_channel():
    se = SqueezeExcite3d(4, 8, activation="relu", gate="sigmoid")
    x = torch.randn(2, 4, 3, 5, 5)
    s = x.mean(dim=(2, 3, 4), keepdim=True)
    gate = torch.sigmoid(se.expand(torch.relu(se.reduce(s))))
    torch.testing.assert_close(se(x), x * gate)
    assert sum(p.numel() for p in se.parameters()) == 4 * 8 + 8 + 8 * 4 + 4


@pytest.mark.parametrize("size", [(1, 1, 1), (4, 1, 1), (5, 2, 2), (3, 3, 2), (8, 7, 7), (2, 5, 9)])
@pytest.mark.parametrize("kernel,stride", [((1, 1, 1), (1, 1, 1)), ((3, 3, 3), (1, 1, 1)), ((1, 7, 7), (1, 1, 1)),
                                           ((5, 3, 3), (1, 2, 2)), ((7, 1, 1), (2, 1, 1)), ((4, 6, 5), (2, 3, 2))])
@pytest.mark.parametrize("groups", [1, 4])
def test_conv3d_same_equals_padding_then_the_whole_kernel(size, kernel, stride, groups) -> None:
    """Dropping the taps that only meet padding (and the 1 x 1 map's conv1d) changes no output and no
    gradient: the dropped taps' weight gradients are zero in the full conv too."""
    from nas.models.layers import conv3d_same

    torch.manual_seed(0)
    x = torch.randn(2, 4, *size, requires_grad=True)
    w = torch.randn(4, 4 // groups, *kernel, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    ref = F.conv3d(F.pad(x, same_padding(size, kernel, stride)), w, b, stride, 0, 1, groups)
    out = conv3d_same(x, w, b, stride, groups)
    assert out.shape == ref.shape == (2, 4, *(-(-n // s) for n, s in zip(size, stride)))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(ref)
    for a, c in zip(torch.autograd.grad(ref, (x, w, b), g), torch.autograd.grad(out, (x, w, b), g)):
        torch.testing.assert_close(c, a, atol=1e-4, rtol=1e-4)  # sums of ~100 products in another order


def test_whole_kernels_counts_the_taps_the_fast_path_skips() -> None:
    """A 1x7x7 kernel on a 1 x 1 map computes one tap per output; under whole_kernels() all 49, which
    is what the papers' multiply-add counts (and nas.measure.measured_macs) assume."""
    from nas.models.layers import conv3d_same, whole_kernels

    x, w = torch.randn(1, 8, 4, 1, 1), torch.randn(8, 1, 1, 7, 7)
    counts = []
    for ctx in (torch.no_grad, whole_kernels):
        with ctx(), FlopCounterMode(display=False) as counter:
            y = conv3d_same(x, w, groups=8)
        counts.append(counter.get_total_flops() // 2)
    assert counts == [8 * 4 * 1, 8 * 4 * 49]
    torch.testing.assert_close(y, conv3d_same(x, w, groups=8))


@pytest.mark.parametrize("kernel,groups", [((1, 1, 1), 1), ((3, 1, 1), 1), ((3, 5, 5), 8)])
def test_conv3d_same_on_a_1x1_map_gives_layout_free_gradients_through_batch_norm(kernel, groups) -> None:
    """The 1 x 1-map conv1d path must return canonical strides: torch 2.13's CPU batch_norm backward
    gave wrong gradients (forward right) on the channels-last result with stride-1 size-1 dims, which
    silently broke every channels_last_3d MoViNet and supernet whose last stage met a 1 x 1 map."""
    from nas.models.layers import conv3d_same

    torch.manual_seed(0)
    x0 = torch.randn(4, 8, 6, 1, 1, dtype=torch.float64)
    w0 = torch.randn(8, 8 // groups, *kernel, dtype=torch.float64)
    gamma0 = torch.rand(8, dtype=torch.float64) + 0.5
    g = torch.randn(4, 8, 6, 1, 1, dtype=torch.float64)
    grads = []
    for fmt in (torch.contiguous_format, torch.channels_last_3d):
        x = x0.contiguous(memory_format=fmt).requires_grad_()
        w = w0.contiguous(memory_format=fmt).requires_grad_()
        gamma = gamma0.clone().requires_grad_()
        y = F.batch_norm(conv3d_same(x, w, groups=groups), None, None, gamma, None, training=True)
        grads.append(torch.autograd.grad(y, (x, w, gamma), g))
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)
