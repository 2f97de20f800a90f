"""TuNAS supernet: extract equivalence, weight sharing, masked L2, op warm-up, errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import nas
from nas.dsl import Arch
from nas.drivers.tunas.supernet import Path, Supernet, kernel_positions
from nas.drivers.tunas.testing import tiny_space


def _standalone_train_mode(model: torch.nn.Module) -> torch.nn.Module:
    """Batch-statistics BN like the supernet, dropout off."""
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.eval()
    return model


@pytest.fixture(scope="module")
def supernet() -> Supernet:
    torch.manual_seed(0)
    net = Supernet(tiny_space())
    # Random non-default values everywhere (ReZero 0 and BN 1/0 would hide wrong copies).
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("rezero") or ".bn." in name or name.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.5 + (1.0 if name.endswith("bn.weight") else 0.0))
    return net.eval()  # eval: no dropout; BN still uses batch statistics


@pytest.mark.parametrize("seed", range(6))
def test_extract_matches_supernet(supernet: Supernet, seed: int) -> None:
    space = tiny_space()
    arch = space.freeze(space.random(seed))
    x = torch.randn(3, 3, 4, 32, 32, generator=torch.Generator().manual_seed(seed))
    model = _standalone_train_mode(supernet.extract(arch))
    with torch.no_grad():
        expected = supernet(x, arch)
        got = model(x)
    assert got.shape == (3, 5)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # the standalone model is the architecture's: same parameter count as the analytic cost
    assert sum(p.numel() for p in model.parameters()) == arch.cost().params


def test_different_archs_differ(supernet: Supernet) -> None:
    """The equivalence above is not vacuous: the path changes the supernet's output."""
    space = tiny_space()
    x = torch.randn(2, 3, 4, 32, 32)
    outs = [supernet(x, space.freeze(space.random(s))) for s in range(4)]
    assert all(not torch.allclose(outs[0], o) for o in outs[1:])


@pytest.mark.slow
def test_reference_movinet_a0_extracts_at_tiny_resolution() -> None:
    """The full movinet space builds, and A0 (a point of it) runs in it and extracts exactly."""
    space = nas.load_space("movinet")
    a0 = nas.load_arch("movinet-a0")
    arch = Arch.from_dict({**a0.to_dict(), "classes": 7})
    torch.manual_seed(1)
    net = Supernet(space, classes=7).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("rezero"):
                p.fill_(0.5)
    x = torch.randn(2, 3, 2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(_standalone_train_mode(net.extract(arch))(x), net(x, arch), rtol=1e-4, atol=1e-5)


def test_shared_weights_get_gradients_only_where_active(supernet: Supernet) -> None:
    space = tiny_space()
    sample = space.random(3)
    sample.update({"blocks/0/layers/repeat": 1, "blocks/0/layers/0/kernel": "3x3x3", "blocks/0/layers/0/expand": 16})
    arch = space.freeze(sample)
    supernet.zero_grad(set_to_none=True)
    supernet(torch.randn(2, 3, 4, 32, 32), arch).sum().backward()
    grads = {n: p.grad for n, p in supernet.named_parameters()}
    assert grads["blocks.0.0.feature.3x3x3.conv.weight"] is not None
    assert grads["blocks.0.0.feature.1x3x3.conv.weight"] is None  # other kernels: own weights, untouched
    assert grads["blocks.0.1.expansion.conv.weight"] is None  # skipped layer
    exp = grads["blocks.0.0.expansion.conv.weight"]
    assert exp[:16].abs().sum() > 0 and exp[16:].abs().sum() == 0  # filter-wise: first 16 channels only
    supernet.zero_grad(set_to_none=True)


def test_masked_l2_counts_active_conv_weights_only(supernet: Supernet) -> None:
    space = tiny_space()
    arch = space.freeze(space.random(5))
    params = dict(supernet.named_parameters())
    expected = sum(params[n][tuple(slice(0, k) for k in shape)].pow(2).sum()
                   for n, shape in supernet.slices(arch) if len(shape) > 1)
    torch.testing.assert_close(supernet.l2(arch), expected)
    # the standalone model's conv/linear weights are exactly these slices
    model = supernet.extract(arch)
    standalone = sum(p.pow(2).sum() for p in model.parameters() if p.ndim > 1)
    torch.testing.assert_close(supernet.l2(arch).detach(), standalone.detach())
    assert supernet.l2(arch) < sum(p.pow(2).sum() for p in supernet.parameters() if p.ndim > 1)


def test_fused_l2_gradient_equals_autograd_of_the_loss(supernet: Supernet) -> None:
    # the search trains with supernet_backward (L2 gradient added directly); it must be the gradient of
    # supernet_loss, the definition, and report the same loss value
    from nas.drivers.tunas.search import SearchConfig, supernet_backward, supernet_loss

    space = tiny_space()
    cfg = SearchConfig(target_gflops=1.0, weight_decay=0.3)  # large, so a missing or doubled L2 gradient shows
    path = Path.of(space.freeze(space.random(2)))
    torch.manual_seed(0)
    x, y = torch.randn(2, 3, 4, 32, 32), torch.tensor([0, 1])
    supernet.zero_grad(set_to_none=True)
    with torch.random.fork_rng():
        loss = supernet_loss(supernet, path, x, y, cfg) * 0.5
        loss.backward()
    expected_loss = float(loss.detach())
    expected = {n: p.grad.clone() for n, p in supernet.named_parameters() if p.grad is not None}
    supernet.zero_grad(set_to_none=True)
    with torch.random.fork_rng():
        value = supernet_backward(supernet, path, x, y, cfg, scale=0.5)
    got = {n: p.grad for n, p in supernet.named_parameters() if p.grad is not None}
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-7, msg=name)
    assert abs(0.5 * value - expected_loss) < 1e-5
    supernet.zero_grad(set_to_none=True)


def test_op_warmup_averages_every_kernel(supernet: Supernet) -> None:
    space = tiny_space()
    sample = space.random(0)
    sample["blocks/0/layers/repeat"] = 1
    x = torch.randn(2, 3, 4, 32, 32)
    outs = []
    for k in ("1x3x3", "3x3x3", "5x1x1"):
        outs.append(supernet(x, space.freeze({**sample, "blocks/0/layers/0/kernel": k})))
    mixed = supernet(x, Path.of(space.freeze(sample), mixed=[(0, 0)]))
    assert mixed.shape == outs[0].shape
    assert all(not torch.allclose(mixed, o) for o in outs)  # the mixed op is none of the single ones
    names = {n for n, _ in supernet.slices(Path.of(space.freeze(sample), mixed=[(0, 0)]))}
    assert {f"blocks.0.0.feature.{k}.conv.weight" for k in ("1x3x3", "3x3x3", "5x1x1")} <= names
    assert kernel_positions(space)["blocks/0/layers/2/kernel"] == [(0, 2)]


def test_errors_name_the_field(supernet: Supernet) -> None:
    other = Arch.from_dict({**tiny_space().freeze(tiny_space().random(0)).to_dict(), "classes": 9})
    with pytest.raises(ValueError, match="classes: got 9"):
        supernet(torch.randn(1, 3, 4, 32, 32), other)
    doc = tiny_space().freeze(tiny_space().random(0)).to_dict()
    doc["blocks"][0]["layers"][0]["kernel"] = "7x1x1"
    with pytest.raises(ValueError, match="blocks/0/layers/0/kernel: got '7x1x1'"):
        supernet.extract(Arch.from_dict(doc))
    with pytest.raises(ValueError, match="space.family"):
        Supernet(nas.load_space("x3d"))


def test_rezero_init_follows_zero_init_residual() -> None:
    """The supernet starts its ReZero scalars at 0 like the standalone MoViNet, or at 1 when asked
    (the search's default, ``SearchConfig.zero_init_residual=False``); an extracted child keeps them."""
    space = tiny_space()
    zero, full = Supernet(space), Supernet(space, zero_init_residual=False)
    rezero = [n for n, _ in full.named_parameters() if n.endswith("rezero")]
    assert rezero
    assert all(float(dict(full.named_parameters())[n]) == 1.0 for n in rezero)
    assert all(float(dict(zero.named_parameters())[n]) == 0.0 for n in rezero)
    child = full.extract(space.freeze(space.random(0)))
    assert all(float(p) == 1.0 for n, p in child.named_parameters() if n.endswith("rezero"))


def test_search_config_round_trip_keeps_zero_init_residual() -> None:
    """``to_dict`` leaves the field out at True (the hash of a search made before it existed stays
    the same, so its checkpoint resumes) and ``from_dict`` reads a missing field back as True."""
    from nas.drivers.tunas.search import SearchConfig

    new, legacy = SearchConfig(target_gflops=0.2), SearchConfig(target_gflops=0.2, zero_init_residual=True)
    assert new.zero_init_residual is False and "zero_init_residual" not in legacy.to_dict()
    assert SearchConfig.from_dict(new.to_dict()) == new
    assert SearchConfig.from_dict(legacy.to_dict()) == legacy
    assert new.hash != legacy.hash


def test_search_config_round_trip_keeps_the_layout() -> None:
    """``layout`` is left out at channels_first (what every search ran before the field existed), so an
    old configuration keeps its hash; ``from_dict`` reads a missing field as channels_first. The default,
    channels_last_3d, is written."""
    from nas.drivers.tunas.search import SearchConfig

    default, first = SearchConfig(target_gflops=0.2), SearchConfig(target_gflops=0.2, layout="channels_first")
    assert default.layout == "channels_last_3d" and default.to_dict()["layout"] == "channels_last_3d"
    assert "layout" not in first.to_dict()
    assert SearchConfig.from_dict(default.to_dict()) == default
    assert SearchConfig.from_dict(first.to_dict()) == first
    assert default.hash != first.hash
    with pytest.raises(ValueError, match="search.layout: got 'nhwc'; allowed: one of channels_first, channels_last_3d"):
        SearchConfig(target_gflops=0.2, layout="nhwc")


def test_a_search_in_either_layout_trains_the_same(tmp_path) -> None:
    """The memory layout changes speed, not the search: the same Q at every step, losses to float noise."""
    from nas.drivers.tunas.search import SearchConfig, default_fixed, run_search
    from nas.drivers.tunas.testing import tiny_space

    space = tiny_space()
    runs = {}
    for layout in ("channels_first", "channels_last_3d"):
        cfg = SearchConfig(target_gflops=0.0015, fixed=default_fixed(space), steps=6, batch_size=2, val_multiplier=2,
                           size_scale=0.5, train_clips=4, heldout_clips=4, log_every=2, layout=layout)
        runs[layout] = run_search(space, cfg, tmp_path / layout, top_k=0, progress=False, plot=False,
                                  log=lambda m: None)
    first, last = runs["channels_first"].trajectory, runs["channels_last_3d"].trajectory
    assert [r["q"] for r in first] == [r["q"] for r in last]
    assert [r["loss"] for r in last] == pytest.approx([r["loss"] for r in first], rel=1e-4)
    assert runs["channels_first"].argmax == runs["channels_last_3d"].argmax


@pytest.mark.parametrize("t_kernel,t_stride,frames", [(1, 1, 4), (3, 1, 4), (5, 2, 5), (7, 1, 1), (4, 2, 4)])
@pytest.mark.parametrize("groups", [1, 4])
def test_conv_on_a_1x1_map_equals_the_conv3d_it_replaces(t_kernel: int, t_stride: int, frames: int, groups: int) -> None:
    """On a 1 x 1 spatial map the supernet's conv runs a conv1d over time with the kernel's spatial
    centre tap: the same output and the same gradients (zero for the taps that meet only padding) as
    the TF-'same' Conv3d, at every spatial kernel and stride, odd and even temporal kernels."""
    from nas.drivers.tunas.supernet import _conv
    from nas.models.layers import same_padding

    torch.manual_seed(0)
    for kh, kw, spatial_stride in [(1, 1, 1), (3, 3, 2), (7, 7, 1), (1, 5, 2)]:
        stride = (t_stride, spatial_stride, spatial_stride)
        x = torch.randn(3, 4, frames, 1, 1, requires_grad=True)
        w = torch.randn(4, 4 // groups, t_kernel, kh, kw, requires_grad=True)
        b = torch.randn(4, requires_grad=True)
        ref = F.conv3d(F.pad(x, same_padding(x.shape[-3:], w.shape[-3:], stride)), w, b, stride, 0, 1, groups)
        out = _conv(x, w, stride, groups, b)
        assert out.shape == ref.shape
        g = torch.randn_like(ref)
        for a, c in zip(torch.autograd.grad(ref, (x, w, b), g), torch.autograd.grad(out, (x, w, b), g)):
            assert torch.allclose(a, c, atol=1e-5)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_supernet_gradients_are_layout_free_on_1x1_maps() -> None:
    """At a crop whose last block runs on a 1 x 1 map (the default search's 14 px does), the supernet
    in channels_last_3d takes the same gradients as in channels_first (float64). A stride mismatch in
    the 1 x 1 conv path once made torch's batch_norm backward wrong there, and channels_last_3d
    searches learned less with the same losses."""
    import copy

    from nas.drivers.tunas.search import SearchConfig, supernet_backward

    space = tiny_space()  # fed 4 px clips: stem stride 2 -> 2 px, block stride 2 -> 1 x 1
    arch = space.freeze(space.random(3))
    torch.manual_seed(0)
    base = Supernet(space, zero_init_residual=False).double().train()
    x = torch.randn(3, 3, 4, 4, 4, dtype=torch.float64)
    y = torch.tensor([0, 1, 2])
    cfg = SearchConfig(target_gflops=0.001)
    grads = []
    for fmt in (torch.contiguous_format, torch.channels_last_3d):
        net = copy.deepcopy(base).to(memory_format=fmt)
        supernet_backward(net, Path.of(arch), x.contiguous(memory_format=fmt), y, cfg)
        grads.append({n: p.grad for n, p in net.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    scale = max(g.abs().max().item() for g in grads[0].values())
    for n, a in grads[0].items():
        assert (grads[1][n] - a).abs().max().item() <= 1e-9 * scale, n
