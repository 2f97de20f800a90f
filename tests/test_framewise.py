"""The frame-wise ablation used by the proxy check (issue 3): X3D with every temporal kernel set to 1.

Its logits must not depend on frame order (so on the synthetic tasks it is capped at the orderless
ceiling), its cost must stay exact, and leaving ``block_temporal_kernel`` out must not change the
existing documents' hashes.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nas import load_arch
from nas.dsl import Arch
from nas.errors import DSLError
from nas.measure import count_params, measured_macs
from nas.models import build_model

FRAMEWISE = Path(__file__).resolve().parents[1] / "experiments" / "proxy" / "x3d-s-framewise.yaml"


def test_framewise_cost_is_exact_and_smaller() -> None:
    arch = Arch.load(FRAMEWISE)
    model = build_model(arch)
    cost = arch.cost(size=32)
    assert cost.macs == measured_macs(model, arch.clip.frames, 32)
    assert cost.params == count_params(model)
    assert arch.cost().macs < load_arch("x3d-s").cost().macs


def test_framewise_logits_ignore_frame_order() -> None:
    torch.manual_seed(0)
    model = build_model(Arch.load(FRAMEWISE)).eval()
    x = torch.randn(2, 3, 13, 32, 32)
    perm = torch.randperm(13)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x[:, :, perm]), rtol=1e-4, atol=1e-5)


def test_temporal_x3d_logits_depend_on_frame_order() -> None:
    torch.manual_seed(0)
    model = build_model(load_arch("x3d-s")).eval()
    x = torch.randn(2, 3, 13, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x.flip(2)), atol=1e-4)


def test_block_temporal_kernel_is_optional_and_validated() -> None:
    doc = load_arch("x3d-s").to_dict()
    assert "block_temporal_kernel" not in doc["base"]
    explicit = Arch.from_dict({**doc, "base": {**doc["base"], "block_temporal_kernel": 3}})
    assert explicit.cost() == load_arch("x3d-s").cost()
    with pytest.raises(DSLError, match=r"base/block_temporal_kernel: got 2; allowed: one of 1, 3, 5, 7"):
        Arch.from_dict({**doc, "base": {**doc["base"], "block_temporal_kernel": 2}})
