"""``xnas export``: TorchScript and ONNX files of the whole-clip forward and of the stream step function
(state as explicit inputs and outputs), run back and compared with PyTorch."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from nas import load_arch
from nas.commands import export as export_cmd
from nas.errors import UsageError
from nas.models import build_model

torch.set_num_threads(1)  # tiny inputs; OpenMP spinning on a busy 2-core box costs more than it gains


def _run(argv: list[str]) -> int:
    """Run ``xnas export`` through its own parser (the CLI lists it once ``export`` is in COMMAND_MODULES)."""
    parser = argparse.ArgumentParser(prog="xnas")
    export_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["export", *argv])
    return args.func(args)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """A movinet-a0-stream with non-trivial BN statistics and scalars, saved as a state_dict."""
    torch.manual_seed(0)
    model = build_model(load_arch("movinet-a0-stream")).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 0:
                p.fill_(0.7)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.2, 0.2, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
    path = tmp_path_factory.mktemp("export") / "weights.pt"
    torch.save(model.state_dict(), path)
    return path, model


def _reference_steps(model: torch.nn.Module, chunks: list[torch.Tensor]) -> list[torch.Tensor]:
    state, out = model.init_state(1, 32), []
    with torch.no_grad():
        for chunk in chunks:
            logits, state = model.step(chunk, state)
            out.append(logits)
    return out


def test_torchscript_stream_export_round_trips(weights, tmp_path: Path) -> None:
    path, model = weights
    out = tmp_path / "a0.pt"
    assert _run(["movinet-a0-stream", "--format", "torchscript", "--stream", "--size", "32",
                 "--checkpoint", str(path), "--out", str(out)]) == 0
    info = json.loads(out.with_suffix(".pt.json").read_text())
    names = [i["name"] for i in info["inputs"][1:]]
    assert names == sorted(model.init_state(1, 32)) and info["outputs"][0]["name"] == "logits"
    loaded = torch.jit.load(str(out))
    torch.manual_seed(1)
    chunks = [torch.randn(1, 3, 1, 32, 32) for _ in range(4)]
    state = model.init_state(1, 32)
    tensors = [state[n] for n in names]
    for chunk, expected in zip(chunks, _reference_steps(model, chunks)):
        logits, *tensors = loaded(chunk, *tensors)
        torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)


def test_onnx_stream_export_runs_in_onnxruntime(weights, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    path, model = weights
    out = tmp_path / "a0.onnx"
    assert _run(["movinet-a0-stream", "--format", "onnx", "--stream", "--size", "32",
                 "--checkpoint", str(path), "--out", str(out)]) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()][1:]
    assert names == sorted(model.init_state(1, 32))
    assert [o.name for o in session.get_outputs()][1:] == [f"next_{n}" for n in names]
    torch.manual_seed(2)
    chunks = [torch.randn(1, 3, 1, 32, 32) for _ in range(5)]
    state = {n: t.numpy() for n, t in model.init_state(1, 32).items()}
    for chunk, expected in zip(chunks, _reference_steps(model, chunks)):
        logits, *new = session.run(None, {"chunk": chunk.numpy(), **state})
        state = dict(zip(names, new))
        torch.testing.assert_close(torch.from_numpy(logits), expected, atol=1e-4, rtol=0)
    assert int(state["frames"][0]) == 5


def test_whole_clip_torchscript_export(tmp_path: Path) -> None:
    out = tmp_path / "a0.pt"
    assert _run(["movinet-a0", "--format", "torchscript", "--frames", "2", "--size", "32", "--out", str(out)]) == 0
    torch.manual_seed(0)
    model = build_model(load_arch("movinet-a0")).eval()
    x = torch.randn(1, 3, 2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(out))(x), model(x), atol=1e-5, rtol=0)


def test_export_errors() -> None:
    with pytest.raises(UsageError, match="--stream: got architecture 'movinet-a0'"):
        _run(["movinet-a0", "--format", "onnx", "--stream"])
    with pytest.raises(UsageError, match="--checkpoint: got"):
        _run(["movinet-a0-stream", "--format", "torchscript", "--stream", "--checkpoint", "/nonexistent.pt"])
