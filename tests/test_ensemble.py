"""Temporal ensembles: the DSL (names, inline members, choices), exact cost = sum of members, the built
model's frame routing and logit averaging, and a proxy-training run."""
from __future__ import annotations

import math
import random

import pytest
import torch
import yaml

from nas import DSLError, load_arch
from nas.dsl import Arch, Space
from nas.measure import count_params, measured_macs
from nas.models import build_model

torch.set_num_threads(1)  # tiny inputs; OpenMP spinning on a busy 2-core box costs more than it gains

# A small causal MoViNet member, written inline (no classes, clip overridden by the ensemble).
SMALL = """
    family: movinet
    clip: {frames: 8, frame_stride: 1, crop: 32}
    activation: hard_swish
    gating: hard_sigmoid
    causal: true
    conv_type: 2plus1d
    se_type: 2plus3d
    stem: {width: 8, kernel: 1x3x3, stride: [1, 2, 2]}
    blocks:
      - width: 16
        stride: [1, 2, 2]
        layers: [{kernel: 3x3x3, expand: KSIZE}]
    head: {project: 32, width: 32, dropout: 0.0}
"""


def _member(expand: object = 32) -> dict:
    doc = yaml.safe_load(SMALL.replace("KSIZE", "0"))
    doc["blocks"][0]["layers"][0]["expand"] = expand
    return doc


def _doc(members: list, frames: int = 6, crop: int = 32, kind: str = "architecture") -> dict:
    return {"xnas": 1, "kind": kind, "name": "ens", "family": "ensemble", "classes": 7,
            "clip": {"frames": frames, "frame_stride": 2, "crop": crop}, "members": members}


def _ens(frames: int = 6, expand: int = 32) -> Arch:
    return Arch.from_dict(_doc([_member(expand), "movinet-a0-stream"], frames=frames))


def test_cost_is_the_sum_of_members_on_their_frames() -> None:
    arch = _ens(frames=7)
    a0 = load_arch("movinet-a0-stream")
    a0_doc = {**a0.to_dict(), "classes": 7}
    # member 1 (offset 1) reads frames 1, 3, 5 of 7 -> 3 frames; member 0 reads 0, 2, 4, 6 -> 4 frames
    a0_cost = Arch.from_dict(a0_doc).cost(frames=3, size=32)
    first = Arch.from_dict({"xnas": 1, "kind": "architecture", "name": "m0", "classes": 7,
                            **_member()}).cost(frames=4, size=32)
    cost = arch.cost()
    assert cost.macs == first.macs + a0_cost.macs and cost.params == first.params + a0_cost.params
    assert (cost.frames, cost.size) == (7, 32)
    bigger = arch.cost(frames=20, size=48)
    assert bigger.macs > cost.macs and bigger.params == cost.params


def test_built_ensemble_costs_exactly_and_routes_frames() -> None:
    arch = _ens(frames=6)
    model = build_model(arch).eval()
    cost = arch.cost()
    assert count_params(model) == cost.params
    assert measured_macs(model, 6, 32) == cost.macs
    x = torch.randn(2, 3, 6, 32, 32)
    with torch.no_grad():
        out = model(x)
        member0, member1 = model.members
        expected = (member0(x[:, :, 0::2]) + member1(x[:, :, 1::2])) / 2  # half rate, one-frame offset
    assert out.shape == (2, 7)
    torch.testing.assert_close(out, expected)


def test_ensemble_yaml_round_trip_and_hash() -> None:
    arch = _ens()
    again = Arch.from_yaml(arch.to_yaml())
    assert again == arch and again.hash == arch.hash
    assert _ens(expand=40).hash != arch.hash


def test_ensemble_errors_name_the_field() -> None:
    with pytest.raises(DSLError, match=r"members/1: got 'movinet-a9'; allowed: a reference architecture name"):
        Arch.from_dict(_doc([_member(), "movinet-a9"]))
    bad = _member()
    bad["blocks"][0]["layers"][0]["kernel"] = "4x3x3"
    with pytest.raises(DSLError, match=r"members/0/blocks/0/layers/0/kernel: got '4x3x3'"):
        Arch.from_dict(_doc([bad, "movinet-a0-stream"]))
    with pytest.raises(DSLError, match=r"members/0/family"):
        Arch.from_dict(_doc([{**_member(), "family": "ensemble"}, "movinet-a0-stream"]))
    with pytest.raises(DSLError, match=r"clip/frames: got 1; allowed: at least one frame per member"):
        _ens(frames=1)
    with pytest.raises(DSLError, match=r"members: got"):
        Arch.from_dict(_doc([_member()]))


def test_ensemble_space_with_member_choices() -> None:
    doc = _doc([_member({"choice": [24, 32]}), {"choice": ["movinet-a0-stream", "movinet-a1-stream"]}], kind="space")
    space = Space.from_dict(doc)
    assert set(space.dims()) == {"members/0/blocks/0/layers/0/expand", "members/1"}
    assert space.size() == 4
    rng = random.Random(0)
    for _ in range(4):
        arch = space.freeze(space.random(rng))
        assert space.contains(arch) and arch.family == "ensemble"
        assert math.isfinite(arch.cost().gflops)


def test_ensemble_trains_with_the_proxy_trainer() -> None:
    from nas.train import Proxy, evaluate

    arch = Arch.from_dict(_doc([_member(32), _member(24)], frames=4))
    proxy = Proxy(steps=3, batch_size=4, train_clips=12, val_clips=8, warmup_steps=1, checkpoint_every=0,
                  layout="channels_first", task="event_order", size_scale=1.0)
    result = evaluate(arch, "synthetic", proxy, seed=0, progress=False)
    assert result.status == "ok", result.reason
    assert (result.gflops, result.params) == (arch.cost().gflops, arch.cost().params)
    assert 0.0 <= result.top1 <= 100.0 and math.isfinite(result.loss)


def test_causal_ensemble_streams_to_the_whole_clip_result() -> None:
    """Frame t goes to member t mod n; after the last chunk the averaged logits equal forward(clip)."""
    torch.manual_seed(0)
    model = build_model(Arch.from_dict(_doc([_member(32), _member(24)], frames=7))).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 0:
                p.fill_(0.8)  # switch the ReZero branches on so the stream buffers matter
    x = torch.randn(2, 3, 7, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        whole = model(x)
        for chunk in (1, 2, 3):
            state = model.init_state(2, 32, dtype=torch.float64)
            for start in range(0, 7, chunk):
                logits, state = model.step(x[:, :, start:start + chunk], state)
            torch.testing.assert_close(logits, whole, atol=1e-10, rtol=0)
            assert int(state["frames"][0]) == 7 and int(state["member1/frames"][0]) == 3
        first, _ = model.step(x[:, :, :1], model.init_state(2, 32, dtype=torch.float64))
        torch.testing.assert_close(first, model.members[0](x[:, :, :1]))  # only member 0 has a frame yet
    with pytest.raises(ValueError, match="non-causal member"):
        build_model(Arch.from_dict(_doc([_member(), "movinet-a0"]))).init_state(1)
