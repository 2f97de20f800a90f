"""The tsn2d family: MobileNetV2 oracle, the cost of each temporal module, the frame-order behaviour of
the built networks, bLVNet, validation errors, memory layouts, the trainer and the CLI.

The registry-driven tests (tests/test_models.py, test_dsl.py, test_fuzz.py) already check every
tsn2d reference and random points of the space (cost == FlopCounterMode / 2, params, round trips)."""
from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from nas import DSLError, load_arch, load_space
from nas.dsl import Arch
from nas.families.tsn2d import TEMPORAL_OPS, resolve
from nas.measure import count_params, measured_macs
from nas.models import build_model

torch.set_num_threads(2)


def _tiny(ops: list[str], *, block: str = "ir", frames: int = 4, blvnet: int = 0, classes: int = 5) -> Arch:
    """A small network whose residual layers carry ``ops`` (one layer each)."""
    layers = [{"type": block, "expand": 2 if block == "ir" else 0.5, "kernel": 3, "se": False, "temporal": op}
              for op in ops]
    return Arch.from_dict({
        "xnas": 1, "kind": "architecture", "name": "tiny", "family": "tsn2d", "classes": classes,
        "clip": {"frames": frames, "frame_stride": 4, "crop": 32}, "activation": "relu6",
        "stem": {"width": 16},
        "stages": [
            {"width": 16, "stride": 1, "layers": [{"type": "ir", "expand": 1, "kernel": 3, "se": True,
                                                   "temporal": "none"}]},
            {"width": 24, "stride": 2, "layers": [{"type": block, "expand": 4, "kernel": 5, "se": False,
                                                   "temporal": "none"}] + layers},
        ],
        "head": {"width": 32, "dropout": 0.0},
        "temporal": {"shift_div": 4, "tam_frames": 3},
        "blvnet": {"stages": blvnet, "little": 0.5},
    })


def _randomise_bn(model: torch.nn.Module) -> None:
    """Zero-initialised residual BNs would hide every branch; give them non-zero scales."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.uniform_(m.bias, -0.2, 0.2)


def test_tsn_mbv2_is_mobilenet_v2_per_frame() -> None:
    """MobileNetV2 1.0 at 224² and 1000 classes: 3,504,872 params (torchvision's mobilenet_v2) and
    300.77 M multiply-adds per frame (the paper's "300M"), so 8 segments cost 8 frames' backbones."""
    doc = load_arch("tsn-mbv2").to_dict()
    doc["classes"] = 1000
    cost = Arch.from_dict(doc).cost(frames=1)
    assert cost.params == 3_504_872
    assert cost.macs == 300_774_272
    assert load_arch("tsn-mbv2").cost().macs == 8 * (300_774_272 - 1280 * 1000) + 1280 * 400


def test_shift_and_shuffle_are_free_and_tam_costs_its_depthwise_convs() -> None:
    tsn = load_arch("tsn-mbv2").cost()
    for name in ("tsm-mbv2", "tsm-online-mbv2", "shuffle-mbv2"):
        assert (load_arch(name).cost().macs, load_arch(name).cost().params) == (tsn.macs, tsn.params)
    # TAM (r = 3) on the input of the 10 residual blocks: channels x r per position, 8 frames
    places = [(24, 56, 1), (32, 28, 2), (64, 14, 3), (96, 14, 2), (160, 7, 2)]  # (channels, size, blocks)
    tam = load_arch("tam-mbv2").cost()
    assert tam.macs - tsn.macs == sum(3 * c * 8 * s * s * n for c, s, n in places)
    assert tam.params - tsn.params == sum(3 * c * n for c, _, n in places)


def test_sth_merge_costs_less_than_the_depthwise_conv_it_replaces() -> None:
    tsn, sth = load_arch("tsn-mbv2").cost(), load_arch("sth-mbv2").cost()
    # a quarter of each replaced depthwise 3x3 (9 taps) becomes a 3x1x1 (3 taps); BN unchanged
    places = [(144, 56, 1), (192, 28, 2), (384, 14, 3), (576, 14, 2), (960, 7, 2)]  # (inner, size, blocks)
    saved = sum((c // 4) * (9 - 3) * n for c, _, n in places)
    assert tsn.params - sth.params == saved
    assert tsn.macs - sth.macs == sum((c // 4) * 6 * 8 * s * s * n for c, s, n in places)


def test_blvnet_sees_twice_the_frames_at_about_one_branch_cost() -> None:
    blv, tam = load_arch("blvnet-tam-mbv2").cost(), load_arch("tam-mbv2").cost()
    assert blv.frames == 2 * tam.frames
    assert blv.macs < tam.macs  # 16 frames for less than the 8-frame network
    net = resolve(load_arch("blvnet-tam-mbv2").doc)
    assert [layer.cout for stage in net.blvnet.little_stages for layer in stage][:3] == [8, 16, 16]
    assert net.merge_widths == (16, 32)


def test_blvnet_runs_on_odd_and_even_frame_counts_at_its_exact_cost() -> None:
    arch = _tiny(["tam", "tsm"], blvnet=2)
    with torch.device("meta"):  # shapes only: the counter fires, nothing is computed
        meta = build_model(arch)
    for frames, size in [(1, 40), (3, 40), (4, 26)]:
        cost = arch.cost(frames=frames, size=size)
        assert count_params(meta) == cost.params
        assert measured_macs(meta, frames, size) == cost.macs
    with torch.no_grad():
        assert build_model(arch).eval()(torch.randn(2, 3, 3, 40, 40)).shape == (2, 5)


def test_blvnet_branches_read_even_and_odd_frames() -> None:
    from nas.models.tsn2d import _pairs

    x = torch.arange(5.0).view(1, 1, 5, 1, 1)
    even, odd = _pairs(x)
    assert even.flatten().tolist() == [0, 2, 4] and odd.flatten().tolist() == [1, 3, 4]


def test_only_temporal_modules_make_the_network_see_frame_order() -> None:
    """Plain TSN (per-frame network + average) gives the same scores for any frame order; every
    temporal module breaks that invariance (compact shuffle around a depthwise conv only through
    frame-position-dependent kernels: it still relates no two frames, see test_temporal_ops)."""
    x = torch.randn(2, 3, 4, 32, 32)
    for op in TEMPORAL_OPS:
        torch.manual_seed(0)
        model = build_model(_tiny([op, op])).eval()
        _randomise_bn(model)
        torch.nn.init.normal_(model.fc.weight)  # the 0.01 init would make every difference tiny
        with torch.no_grad():
            a, b = model(x), model(x.flip(2))
        if op == "none":
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        else:
            assert (a - b).abs().max() > 1e-3, op


def test_compact_shuffle_in_a_resnet_bottleneck_does_mix_frames() -> None:
    torch.manual_seed(0)
    model = build_model(_tiny(["shuffle_compact"], block="bottleneck")).eval()
    _randomise_bn(model)
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        assert (model(x) - model(x.flip(2))).abs().max() > 1e-4


@pytest.mark.parametrize("block", ["ir", "bottleneck"])
def test_every_module_and_block_type_costs_exactly_what_it_measures(block: str) -> None:
    arch = _tiny(list(TEMPORAL_OPS), block=block)
    with torch.device("meta"):
        model = build_model(arch)
    for frames, size in [(4, 32), (3, 24)]:
        cost = arch.cost(frames=frames, size=size)
        assert count_params(model) == cost.params
        assert measured_macs(model, frames, size) == cost.macs


def test_channels_last_3d_matches_channels_first_and_backpropagates() -> None:
    torch.manual_seed(0)
    model = build_model(_tiny(list(TEMPORAL_OPS), blvnet=2)).eval()
    _randomise_bn(model)
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        ref = model(x)
        out = model.to(memory_format=torch.channels_last_3d)(x.contiguous(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    model.train()
    model(x.contiguous(memory_format=torch.channels_last_3d)).logsumexp(1).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_validation_names_the_field() -> None:
    doc = _tiny(["tsm"]).to_dict()
    bad = copy.deepcopy(doc)
    bad["blvnet"]["stages"] = 3
    with pytest.raises(DSLError, match=r"blvnet/stages: got 3; allowed: an integer in \[0, 2\]"):
        Arch.from_dict(bad)
    bad = copy.deepcopy(doc)
    bad["stages"][0]["layers"][0].update(temporal="sth_merge", expand=0.125)
    with pytest.raises(DSLError, match=r"stages/0/layers/0/temporal: got 'sth_merge'; allowed: an STH kernel only"):
        Arch.from_dict(bad)
    bad = copy.deepcopy(doc)
    bad["stages"][1]["layers"][1]["temporal"] = "tsm_bidirectional"
    with pytest.raises(DSLError, match=r"stages/1/layers/1/temporal: got 'tsm_bidirectional'; allowed: one of 'none'"):
        Arch.from_dict(bad)


def test_space_offers_every_module_and_holds_the_references() -> None:
    space = load_space("tsn2d")
    temporal = [d for label, d in space.dims().items() if label.endswith("/temporal")]
    assert temporal and all(set(d.values) == set(TEMPORAL_OPS) for d in temporal)
    assert set(space.dims()["blvnet/stages"].values) == {0, 1, 2, 3}


def test_cli_cost_json_tsm_mbv2(capsys: pytest.CaptureFixture) -> None:
    from nas.cli import main

    assert main(["cost", "tsm-mbv2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["macs"] == load_arch("tsn-mbv2").cost().macs and out["params"] == 2_736_272
    assert (out["frames"], out["size"]) == (8, 224)


def test_trainer_runs_a_tiny_tsn2d_arch() -> None:
    """The trainer feeds channels_last_3d clips to a channels_last_3d model (its layout on small crops)."""
    from nas.train import Proxy, evaluate

    arch = _tiny(["tsm", "tam"], classes=400)
    proxy = Proxy(steps=2, batch_size=4, train_clips=8, val_clips=4, warmup_steps=1, checkpoint_every=0,
                  layout="channels_last_3d", task="event_order", size_scale=0.75)
    result = evaluate(arch, "synthetic", proxy, seed=0, progress=False, device="cpu")
    assert result.status == "ok", result.reason
    assert result.gflops == arch.cost().gflops and result.params == arch.cost().params  # document's own cost
    assert result.size == 24 and result.frames == 4 and result.steps == 2
    assert 0.0 <= result.top1 <= 100.0 and math.isfinite(result.loss)
    assert result.layout == "channels_last_3d"
