"""``xnas export ARCH --format torchscript|onnx [--stream]``: write a model file.

Without ``--stream`` the graph is the whole-clip forward ``(1, 3, T, S, S) -> (1, classes)``. With
``--stream`` (causal architectures) it is the step function with the state as explicit inputs and
outputs: ``(chunk, *state) -> (logits, *new_state)``, state tensors in sorted-name order (the names of
``model.init_state``; ONNX inputs carry those names and outputs ``next_<name>``). Graphs are traced,
so they are specialised to the shapes they were exported at: batch 1, ``--frames`` frames per call
(default: the clip for whole-clip graphs, 1 for stream graphs) and ``--size``² frames. A JSON file
next to the model lists the inputs, outputs and state shapes.
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any

from nas.commands.checkpoints import load_checkpoint
from nas.errors import UsageError
from nas.commands.argtypes import positive_int as _positive

__all__ = ["register", "cmd_export", "export_model"]

FORMATS = ("torchscript", "onnx")


def register(subparsers: Any) -> None:
    """Add ``xnas export`` to the CLI."""
    p = subparsers.add_parser("export", help="write a TorchScript or ONNX model file (--stream: the step function)")
    p.add_argument("arch", help="a reference architecture name or a document path")
    p.add_argument("--format", required=True, choices=FORMATS, help="torchscript (.pt) or onnx (.onnx)")
    p.add_argument("--stream", action="store_true",
                   help="export the causal step function with the state as explicit inputs and outputs")
    p.add_argument("--frames", type=_positive, help="frames per call (default: the clip; 1 with --stream)")
    p.add_argument("--size", type=_positive, help="frame size (default: the architecture's crop)")
    p.add_argument("--checkpoint", help="weights: a checkpoint.pt from `xnas train` or a state_dict file "
                                        "(default: a fresh init seeded by --seed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output file (default <arch>[-stream].pt|.onnx)")
    p.set_defaults(func=cmd_export)


def export_model(model: Any, path: str | Path, fmt: str, *, stream: bool, frames: int, size: int) -> dict:
    """Trace ``model`` (eval mode) and write it; return the description written next to it.

    Args:
        model: a built model (causal :class:`~nas.models.streaming.MovinetStream` when ``stream``).
        path: the output file.
        fmt: ``torchscript`` or ``onnx``.
        stream: export the step function instead of the whole-clip forward.
        frames: frames per call.
        size: frame size.

    Returns:
        ``{"format", "stream", "inputs": [{name, shape, dtype}], "outputs": [...]}``.
    """
    import torch

    from nas.models.layers import whole_kernels
    from nas.models.streaming import StreamStep

    model = model.eval()
    chunk = torch.zeros(1, 3, frames, size, size)
    if stream:
        module: torch.nn.Module = StreamStep(model, size).eval()
        state = model.init_state(1, size)
        names = module.state_names
        args = (chunk, *(state[n] for n in names))
        input_names = ["chunk", *names]
        output_names = ["logits", *(f"next_{n}" for n in names)]
    else:
        module, args = model, (chunk,)
        input_names, output_names = ["clip"], ["logits"]
    with torch.no_grad():
        outputs = module(*args)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # every conv exported with its whole kernel: the same outputs as the trimmed taps of training
    # (nas.models.layers.conv3d_same), and plain Conv nodes, which the ONNX exporter turns every
    # shape of into (the trimmed path's conv1d on 1 x 1 maps failed to export for streaming)
    with warnings.catch_warnings(), whole_kernels():
        # tracing warns that shape-derived Python ints (TF-'same' padding amounts) become constants:
        # intended, the graph is specialised to the exported shapes
        warnings.simplefilter("ignore")
        if fmt == "torchscript":
            with torch.no_grad():
                traced = torch.jit.trace(module, args, check_trace=False)
            traced.save(str(path))
        else:
            torch.onnx.export(module, args, str(path), dynamo=False, opset_version=17,
                              input_names=input_names, output_names=output_names)
    # the exporter may flip the wrapper back to its pre-export mode; keep the model in eval
    model.eval()

    def describe(names: list[str], tensors: tuple) -> list[dict]:
        return [{"name": n, "shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")}
                for n, t in zip(names, tensors)]

    info = {"format": fmt, "stream": stream, "inputs": describe(input_names, args),
            "outputs": describe(output_names, outputs)}
    path.with_suffix(path.suffix + ".json").write_text(json.dumps(info, indent=2))
    return info


def cmd_export(args: argparse.Namespace) -> int:
    """Export one architecture."""
    import torch

    from nas.models import build_model
    from nas.registry import load_arch

    arch = load_arch(args.arch)
    if args.stream and not (arch.family == "movinet" and arch.doc.get("causal", False)):
        raise UsageError(f"--stream: got architecture {arch.name!r}; allowed: a causal MoViNet (causal: true), "
                         "e.g. movinet-a0-stream")
    if args.format == "onnx":
        import importlib.util

        if importlib.util.find_spec("onnx") is None:
            raise UsageError("--format: got 'onnx'; allowed: 'torchscript', or install the onnx package first")
    torch.manual_seed(args.seed)
    model = build_model(arch)
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint, arch.name)
    frames = args.frames or (1 if args.stream else arch.clip.frames)
    size = args.size or arch.clip.crop
    suffix = ".pt" if args.format == "torchscript" else ".onnx"
    out = Path(args.out or f"{arch.name}{'-stream' if args.stream else ''}{suffix}")
    info = export_model(model, out, args.format, stream=args.stream, frames=frames, size=size)
    kind = f"step function, {len(info['inputs']) - 1} state tensors" if args.stream else "whole-clip forward"
    print(f"wrote {out} ({args.format}, {kind}, input {frames} x {size}²) and {out}.json")
    return 0
