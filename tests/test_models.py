"""Built models against the analytic cost, for every reference architecture and random points of
every space (registry-driven), plus forward shapes, memory layouts and initialisation."""
from __future__ import annotations

import random

import pytest
import torch

from nas import load_arch, load_space
from nas.measure import count_params, measured_macs
from nas.models import build_model

torch.set_num_threads(2)


def _random_archs(space_name: str, n: int, seed: int):
    space = load_space(space_name)
    rng = random.Random(seed)
    return [space.freeze(space.random(rng)) for _ in range(n)]


def test_reference_params_and_macs_equal_measured(arch_name: str) -> None:
    """Exact at the architecture's own clip: counted on the meta device (shapes only)."""
    arch = load_arch(arch_name)
    cost = arch.cost()
    with torch.device("meta"):
        model = build_model(arch)
    assert count_params(model) == cost.params
    assert measured_macs(model, cost.frames, cost.size) == cost.macs


def test_reference_forward_shape_on_small_clip(arch_name: str) -> None:
    arch = load_arch(arch_name)
    model = build_model(arch).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 4, 48, 48))
    assert out.shape == (2, arch.doc["classes"])
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("count", [10, pytest.param(100, marks=pytest.mark.slow)])
def test_random_architectures_cost_equals_measured(space_name: str, count: int) -> None:
    """Random points of every space (10 in the default suite, 100 in the slow one): the counts on the
    meta device (shapes only); the first 3 on real CPU tensors at small clips (FlopCounterMode counts
    shapes, so the two agree; the real ones check that the models run)."""
    for i, arch in enumerate(_random_archs(space_name, count, seed=1234)):
        frames, size = 1 + i % 4, 24 + 8 * (i % 6)
        cost = arch.cost(frames=frames, size=size)
        if i < 3:
            model = build_model(arch)
            assert measured_macs(model, frames, size) == cost.macs, arch.name
        else:
            with torch.device("meta"):
                model = build_model(arch)
            assert measured_macs(model, frames, size, device="meta") == cost.macs, arch.name
        assert count_params(model) == cost.params, arch.name


@pytest.mark.parametrize("name", ["x3d-xs", "movinet-a0"])
def test_channels_last_3d_matches_channels_first(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(load_arch(name)).eval()
    # non-zero residual branches so the comparison exercises every layer
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
    for p in model.parameters():
        if p.ndim == 0 or p.numel() == 1:
            torch.nn.init.constant_(p, 0.5)
    x = torch.randn(2, 3, 4, 40, 40)
    with torch.no_grad():
        ref = model(x)
        cl_model = model.to(memory_format=torch.channels_last_3d)
        out = cl_model(x.to(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name,crop", [("movinet-a0", 32), ("movinet-a0", 17), ("x3d-xs", 16), ("tsm-mbv2", 16)])
def test_backward_in_channels_last_3d_equals_channels_first(name: str, crop: int) -> None:
    """Training in channels_last_3d takes the same gradients as in channels_first (float64), also at
    proxy crops whose last stage is a 1 x 1 map (MoViNet at 17 px: the trimmed convs' conv1d path, where
    a stride mismatch once made torch's batch_norm backward wrong in channels_last_3d only)."""
    torch.manual_seed(0)
    model = build_model(load_arch(name), zero_init_residual=False).double().train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    x = torch.randn(2, 3, 2, crop, crop, dtype=torch.float64)
    grads = []
    for fmt in (torch.contiguous_format, torch.channels_last_3d):
        model.zero_grad(set_to_none=True)
        model.to(memory_format=fmt)
        model(x.contiguous(memory_format=fmt)).logsumexp(1).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    scale = max(g.abs().max().item() for g in grads[0].values())
    assert scale > 0
    for n, a in grads[0].items():
        assert (grads[1][n] - a).abs().max().item() <= 1e-9 * scale, n


def test_x3d_last_bn_of_each_residual_branch_is_zero_initialised() -> None:
    from nas.families.x3d import resolve

    arch = load_arch("x3d-s")
    model = build_model(arch)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    zero = [m for m in bns if torch.count_nonzero(m.weight) == 0]
    assert all(torch.all(m.weight == 1) for m in bns if m not in zero)
    assert len(zero) == sum(s.depth for s in resolve(arch.doc).stages)


def test_movinet_residual_branches_start_at_zero_through_rezero() -> None:
    """The official MoViNet zero-initialises the ReZero scale of every layer and keeps BN gamma 1
    (zeroing both would leave the branch with zero gradient forever)."""
    arch = load_arch("movinet-a1")
    model = build_model(arch)
    scales = [p for n, p in model.named_parameters() if "rezero" in n]
    assert len(scales) == sum(len(b["layers"]) for b in arch.doc["blocks"])
    assert all(float(p.detach()) == 0.0 for p in scales)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert all(torch.all(m.weight == 1) for m in bns)
    model(torch.randn(1, 3, 2, 32, 32)).sum().backward()
    assert all(p.grad is not None and float(p.grad.abs()) > 0 for p in scales)


@pytest.mark.parametrize("name", ["x3d-xs", "movinet-a0", "movinet-a0-stream", "tsm-mbv2"])
def test_zero_init_residual_false_starts_every_branch_at_full_scale(name: str) -> None:
    """``build_model(zero_init_residual=False)`` sets exactly the residual scales (X3D / TSN last-BN
    gamma, MoViNet ReZero) to 1; the default keeps them at 0, and nothing else differs."""

    arch = load_arch(name)
    torch.manual_seed(0)
    zero = build_model(arch)
    torch.manual_seed(0)
    full = build_model(arch, zero_init_residual=False)
    scales = [m.residual_scale for m in full.modules() if getattr(m, "residual_scale", None) is not None]
    assert scales and all(torch.all(s == 1) for s in scales)
    assert all(torch.all(m.residual_scale == 0) for m in zero.modules()
               if getattr(m, "residual_scale", None) is not None)
    changed = {n for (n, a), (_, b) in zip(zero.state_dict().items(), full.state_dict().items()) if not torch.equal(a, b)}
    scale_ids = {id(s) for s in scales}
    expected = {n for n, p in full.named_parameters() if id(p) in scale_ids}
    assert changed == expected


@pytest.mark.parametrize("preset", [None, "2048"])
def test_importing_models_sizes_the_onednn_primitive_cache(preset: str | None) -> None:
    """Importing :mod:`nas.models` sets oneDNN's cache capacity unless the environment already does."""
    import os
    import subprocess
    import sys

    from nas.models.onednn import PRIMITIVE_CACHE_CAPACITY, SEARCH_PRIMITIVE_CACHE_CAPACITY

    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    if preset is not None:
        env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = preset
    # importing sets xnas's default; the search raises its own default, never a value the environment set
    code = ("import os, nas.models; from nas.models.onednn import SEARCH_PRIMITIVE_CACHE_CAPACITY as S, "
            "size_primitive_cache; v = 'ONEDNN_PRIMITIVE_CACHE_CAPACITY'; print(os.environ[v]); "
            "print(size_primitive_cache(S), os.environ[v])")
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True).stdout
    imported, searched = out.strip().splitlines()
    assert imported == (preset or str(PRIMITIVE_CACHE_CAPACITY))
    want = preset or str(SEARCH_PRIMITIVE_CACHE_CAPACITY)
    assert searched == f"{want} {want}"


def test_a_bad_onednn_cache_capacity_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from nas.models.onednn import size_primitive_cache

    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "lots")
    with pytest.raises(ValueError, match="ONEDNN_PRIMITIVE_CACHE_CAPACITY: got 'lots'"):
        size_primitive_cache()
