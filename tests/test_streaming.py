"""Causal / stream MoViNets: the official oracles (causal conv, CGAP, positional encoding, state shapes),
exact cost of the stream variants, and streaming == whole-clip causal forward for every stream reference."""
from __future__ import annotations

import io
import math

import pytest
import torch

from nas import arch_names, load_arch
from nas.dsl import Arch
from nas.measure import count_params, measured_macs
from nas.models import build_model
from nas.models.layers import CausalConv3d, causal_frame_mean, positional_encoding
from nas.models.movinet import Movinet
from nas.models.streaming import MovinetStream

torch.set_num_threads(1)  # tiny inputs; OpenMP spinning on a busy 2-core box costs more than it gains

STREAM_ARCHS = arch_names("movinet-stream")

# shared/reference/movinet_specs.json, models.aX.computed: params_stream_2plus1d_2plus3d_600cls and
# gmacs_stream_2plus1d_at_eval_input (an analytic count, a PyTorch mirror and the Atze00 port agree).
CODE_DERIVED = {
    "movinet-a0-stream": (3_748_031, 2.426),
    "movinet-a1-stream": (6_447_352, 5.540),
    "movinet-a2-stream": (7_326_962, 10.700),
    "movinet-a3-stream": (10_986_618, 52.134),
    "movinet-a4-stream": (18_136_182, 96.741),
    "movinet-a5-stream": (31_495_934, 261.710),
}


def _randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BN statistics and non-zero scalars (ReZero, positional-encoding scale), so every
    branch and every stream buffer influences the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 0:
                p.copy_(0.5 + torch.rand((), generator=g))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.2, 0.2, generator=g)
                m.running_mean.uniform_(-0.2, 0.2, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
    return model


def _stream(model: MovinetStream, x: torch.Tensor, chunk: int) -> torch.Tensor:
    state = model.init_state(x.shape[0], tuple(x.shape[-2:]), dtype=x.dtype)
    logits = None
    for start in range(0, x.shape[2], chunk):
        logits, state = model.step(x[:, :, start:start + chunk], state)
    assert logits is not None
    return logits


# -- cost ----------------------------------------------------------------------------------------

def test_stream_references_are_the_six_official_ones() -> None:
    assert sorted(STREAM_ARCHS) == sorted(CODE_DERIVED)


@pytest.mark.parametrize("name", sorted(CODE_DERIVED))
def test_stream_reference_cost_equals_code_derived(name: str) -> None:
    params, gmacs = CODE_DERIVED[name]
    cost = load_arch(name).cost()
    assert cost.params == params
    assert round(cost.gflops, 3) == gmacs


def test_stream_options_leave_base_documents_unchanged() -> None:
    """The optional fields are absent from base documents: same content, same hash, same class."""
    arch = load_arch("movinet-a0")
    assert not {"causal", "conv_type", "se_type", "positional_encoding"} & set(arch.doc)
    assert "activation" not in arch.doc["head"]
    assert type(build_model(arch)) is Movinet
    assert isinstance(build_model(load_arch("movinet-a0-stream")), MovinetStream)


def _variant(**changes: object) -> Arch:
    doc = load_arch("movinet-a0").to_dict()
    doc.update(changes)
    doc["name"] = "variant"
    return Arch.from_dict(doc)


@pytest.mark.parametrize("changes", [
    {"causal": True},                                                     # causal 3D, base SE -> CGAP SE
    {"conv_type": "2plus1d"},                                             # non-causal (2+1)D
    {"se_type": "2plus3d", "positional_encoding": True},                  # non-causal 2plus3d SE
    {"causal": True, "se_type": "2plus3d", "positional_encoding": True},  # causal 3D stream
])
def test_every_stream_option_combination_costs_exactly(changes: dict) -> None:
    arch = _variant(**changes)
    for frames, size in ((3, 40), (1, 24)):
        cost = arch.cost(frames=frames, size=size)
        model = build_model(arch)
        assert count_params(model) == cost.params
        assert measured_macs(model, frames, size) == cost.macs


def test_stream_option_errors_name_the_field() -> None:
    from nas import DSLError

    with pytest.raises(DSLError, match=r"conv_type: got '2plus3d'; allowed: one of '3d', '2plus1d'"):
        _variant(conv_type="2plus3d")
    with pytest.raises(DSLError, match=r"causal: got 'yes'; allowed: one of False, True"):
        _variant(causal="yes")


# -- official oracles (shared/reference/movinet.md §4-§5, from nn_layers_test.py) -----------------

def _ones_conv(cin: int, kernel: tuple[int, int, int], stride: tuple[int, int, int], groups: int) -> CausalConv3d:
    conv = CausalConv3d(cin, cin if groups > 1 else 1, kernel, stride, groups=groups)
    torch.nn.init.ones_(conv.weight)
    return conv


def test_causal_conv_oracles() -> None:
    # depthwise 3x3x3, stride (1,2,2), causal, ones (1, 3 ch, 2 frames, 4x4)
    conv = _ones_conv(3, (3, 3, 3), (1, 2, 2), groups=3)
    y, buffer = conv(torch.ones(1, 3, 2, 4, 4), torch.zeros(1, 3, 2, 4, 4))
    expected_t0 = torch.tensor([[9.0, 6.0], [6.0, 4.0]])
    for c in range(3):
        assert torch.equal(y[0, c, 0], expected_t0) and torch.equal(y[0, c, 1], 2 * expected_t0)
    assert torch.equal(buffer, torch.ones(1, 3, 2, 4, 4))  # the last k_t - 1 frames of concat(buffer, x)
    # 1x3x3, stride (1,2,2): same as Keras 'same' (pad only bottom/right on an even size)
    y, _ = _ones_conv(1, (1, 3, 3), (1, 2, 2), groups=1)(torch.ones(1, 1, 1, 4, 4), torch.zeros(1, 1, 0, 4, 4))
    assert torch.equal(y[0, 0, 0], expected_t0)
    # 3x1x1, temporal stride 2, causal, on 4 frames of ones -> [1, 3]
    y, _ = _ones_conv(1, (3, 1, 1), (2, 1, 1), groups=1)(torch.ones(1, 1, 4, 1, 1), torch.zeros(1, 1, 2, 1, 1))
    assert y.flatten().tolist() == [1.0, 3.0]


def test_stream_buffer_keeps_the_old_tail_for_short_chunks() -> None:
    conv = _ones_conv(1, (5, 1, 1), (1, 1, 1), groups=1)
    buffer = torch.arange(4.0).reshape(1, 1, 4, 1, 1)
    _, new = conv(torch.full((1, 1, 1, 1, 1), 9.0), buffer)
    assert new.flatten().tolist() == [1.0, 2.0, 3.0, 9.0]


@pytest.mark.parametrize("chunks", [(1, 1, 1, 1), (2, 2), (4,), (3, 1), (1, 3)])
def test_cgap_oracle_under_any_chunking(chunks: tuple[int, ...]) -> None:
    frames = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 4)
    running, seen, out = torch.zeros(1, 1), torch.zeros(1, dtype=torch.long), []
    start = 0
    for n in chunks:
        means, running = causal_frame_mean(frames[:, :, start:start + n], running, seen)
        out += means.flatten().tolist()
        seen, start = seen + n, start + n
    assert out == [1.0, 1.5, 2.0, 2.5]


def test_positional_encoding_oracle() -> None:
    """Ones input, C = 3, scale 1: sin block of the even angles, then the cos block."""
    expected = [[1, 1, 2], [1.841471, 1.0021545, 1.5403023], [1.9092975, 1.0043088, 0.5838531],
                [1.14112, 1.0064633, 0.0100075]]
    got = 1 + positional_encoding(torch.arange(4, dtype=torch.float64), 3)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), atol=1e-6, rtol=0)


def test_state_shapes_match_the_official_a0_stream_buffers() -> None:
    """movinet_specs.json stream_buffer_shape_2plus1d_B1 (B, T, H, W, C) at 172², here (B, C, T, H, W)."""
    state = build_model(load_arch("movinet-a0-stream")).init_state(1)
    official = {"block1_layer0": (1, 2, 22, 22, 80), "block2_layer0": (1, 4, 11, 11, 184),
                "block2_layer1": (1, 2, 11, 11, 112), "block3_layer0": (1, 4, 11, 11, 184),
                "block4_layer0": (1, 4, 6, 6, 384)}
    for layer, (b, t, h, w, c) in official.items():
        assert tuple(state[f"{layer}_stream_buffer"].shape) == (b, c, t, h, w)
    assert "block0_layer0_stream_buffer" not in state and "block4_layer1_stream_buffer" not in state  # 1x5x5
    assert tuple(state["block4_layer0_pool_buffer"].shape) == (1, 384)
    assert tuple(state["head_pool_buffer"].shape) == (1, 480)
    assert state["frames"].dtype == torch.long and all(float(v.abs().sum()) == 0 for v in state.values())


def test_a0_causal_endpoint_shapes_oracle() -> None:
    """movinet.md §5: A0 causal on 8x128²: stem 64², blocks 32², 16², 8², 8², 4² (channels 8..104)."""
    model = build_model(load_arch("movinet-a0-stream")).eval()
    shapes = []
    hooks = [model.stem.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))]
    hooks += [block[-1].register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape))) for block in model.blocks]
    with torch.no_grad():
        model(torch.zeros(1, 3, 8, 128, 128))
    for h in hooks:
        h.remove()
    assert shapes == [(1, 8, 8, 64, 64), (1, 8, 8, 32, 32), (1, 32, 8, 16, 16), (1, 56, 8, 8, 8),
                      (1, 56, 8, 8, 8), (1, 104, 8, 4, 4)]


# -- streaming == whole clip -------------------------------------------------------------------------

@pytest.mark.parametrize("name", STREAM_ARCHS)
def test_streaming_equals_whole_clip_float64(name: str) -> None:
    """Every stream reference at 32², 9 frames: chunks of 1, 2, 3 and 7 frames == one causal forward."""
    torch.manual_seed(0)
    model = _randomise(build_model(load_arch(name)).double().eval())
    x = torch.randn(1, 3, 9, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        whole = model(x)
        assert whole.abs().max() > 1e-3  # the comparison is not between two near-zero vectors
        for chunk in (1, 2, 3, 7):
            torch.testing.assert_close(_stream(model, x, chunk), whole, atol=1e-5, rtol=0)


def test_streaming_equals_whole_clip_float32_batched() -> None:
    torch.manual_seed(1)
    model = _randomise(build_model(load_arch("movinet-a1-stream")).eval(), seed=1)
    x = torch.randn(2, 3, 8, 40, 36)
    with torch.no_grad():
        whole = model(x)
        for chunk in (1, 3):
            torch.testing.assert_close(_stream(model, x, chunk), whole, atol=1e-4, rtol=0)


def test_stream_is_causal_frame_by_frame() -> None:
    """The logits after frame t are the whole-clip logits of frames 0..t: the future never leaks in."""
    torch.manual_seed(2)
    model = _randomise(build_model(load_arch("movinet-a3-stream")).double().eval(), seed=2)
    x = torch.randn(1, 3, 6, 32, 32, dtype=torch.float64)
    state = model.init_state(1, 32, dtype=torch.float64)
    with torch.no_grad():
        for t in range(6):
            logits, state = model.step(x[:, :, t:t + 1], state)
            torch.testing.assert_close(logits, model(x[:, :, :t + 1]), atol=1e-10, rtol=0)
    assert int(state["frames"]) == 6


def test_state_is_explicit_and_portable() -> None:
    """step never mutates its input state; the model holds no stream state (only BN buffers); a saved
    state resumes to the same logits."""
    torch.manual_seed(3)
    model = _randomise(build_model(load_arch("movinet-a0-stream")).eval(), seed=3)
    assert all(name.split(".")[-1] in ("running_mean", "running_var", "num_batches_tracked")
               for name, _ in model.named_buffers())
    x = torch.randn(1, 3, 5, 32, 32)
    state = model.init_state(1, 32)
    before = {k: v.clone() for k, v in state.items()}
    with torch.no_grad():
        _, mid = model.step(x[:, :, :3], state)
        assert all(torch.equal(state[k], before[k]) for k in state)
        blob = io.BytesIO()
        torch.save(mid, blob)
        blob.seek(0)
        restored = torch.load(blob)
        a, _ = model.step(x[:, :, 3:], mid)
        b, _ = model.step(x[:, :, 3:], restored)
    assert torch.equal(a, b)
    torch.testing.assert_close(a, model(x), atol=1e-4, rtol=0)


def test_causal_3d_conv_type_streams_too() -> None:
    """conv_type 3d keeps the buffer before the (strided) 3D conv, at pre-stride resolution."""
    arch = _variant(causal=True, se_type="2plus3d", activation="hard_swish", gating="hard_sigmoid",
                    positional_encoding=True)
    model = _randomise(build_model(arch).double().eval(), seed=4)
    state = model.init_state(1, 32)
    assert tuple(state["block1_layer0_stream_buffer"].shape) == (1, 80, 2, 8, 8)  # before the stride (8² -> 4²)
    x = torch.randn(1, 3, 7, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(_stream(model, x, 2), model(x), atol=1e-5, rtol=0)


def test_streaming_errors() -> None:
    base_like = build_model(_variant(conv_type="2plus1d"))
    with pytest.raises(ValueError, match="causal: got false"):
        base_like.init_state(1)
    model = build_model(load_arch("movinet-a0-stream"))
    with pytest.raises(ValueError, match="state: missing"):
        model.step(torch.zeros(1, 3, 1, 32, 32), {"frames": torch.zeros(1, dtype=torch.long)})
    with pytest.raises(ValueError, match="batch_size: got 0"):
        model.init_state(0)
    with pytest.raises(ValueError, match=r"state\['block1_layer0_stream_buffer'\]: got shape \(1, 80, 2, 2, 2\); "
                                         r"allowed: \(1, 80, 2, 4, 4\) for a batch of 1 and 32x32 frames"):
        model.step(torch.zeros(1, 3, 1, 32, 32), model.init_state(1, 16))


def test_stream_model_trains() -> None:
    """The causal whole-clip forward is differentiable (train causal, then stream)."""
    model = build_model(load_arch("movinet-a0-stream"))
    model(torch.randn(2, 3, 3, 32, 32)).logsumexp(1).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and math.isfinite(float(g.abs().sum())) for g in grads)
