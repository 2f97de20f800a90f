"""Measured cost of a built model, the oracle the analytic cost model is tested against (imports torch)."""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

if TYPE_CHECKING:
    from nas.dsl.arch import Arch

__all__ = ["count_params", "measured_macs", "training_activation_bytes", "shortcut_meta_output", "measure_latency"]


def count_params(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def measured_macs(model: torch.nn.Module, frames: int, size: int, *, device: str | None = None) -> int:
    """Multiply-adds of one forward pass on a ``(1, 3, frames, size, size)`` clip.

    ``FlopCounterMode`` counts 2 FLOPs per multiply-add of convolutions and matrix products (and
    nothing for batch norm, activations or pooling), so its total halved is the papers' GFLOPs x 1e9.
    With ``device="meta"`` the model and input live on the meta device: shapes propagate and the
    counter fires, but nothing is computed, so even MoViNet-A5 at 120 x 320² counts in a blink.
    Convolutions count every tap of their kernel (:func:`nas.models.layers.whole_kernels`), as the
    papers do, including the taps that the faster computation skips because they meet only padding.
    """
    from nas.models.layers import whole_kernels

    was_training = model.training
    model.eval()
    if device is not None:
        model = model.to(device)
    param = next(model.parameters(), None)
    dev = param.device if param is not None else torch.device("cpu")
    clip = torch.zeros(1, 3, frames, size, size, device=dev)
    with torch.no_grad(), whole_kernels(), FlopCounterMode(display=False) as counter, _MetaShortcuts():
        model(clip)
    model.train(was_training)
    total = counter.get_total_flops()
    if total % 2:
        raise RuntimeError(f"odd FLOP total {total}: an op counted something other than multiply-adds")
    return total // 2


_ACTIVATIONS = ("relu", "hardswish", "hardsigmoid", "sigmoid", "silu", "gelu")


@functools.cache
def _activation_ops() -> frozenset:
    return frozenset(getattr(torch.ops.aten, name).default for name in _ACTIVATIONS)


def shortcut_meta_output(func: "torch._ops.OpOverload", args: tuple) -> "torch.Tensor | tuple | None":
    """The output ``func(*args)`` would give on meta tensors, made directly for batch norm and the
    activations, or ``None`` for any other op or a tensor that is not on the meta device. The meta
    device runs those ops through Python references, and ``FlopCounterMode`` decomposes them again:
    they took most of a trial's memory estimate (0.75 s of X3D-XS's; 0.15 s with this) and of a meta
    FLOP count. The outputs have the same shapes, strides and dtypes (``tests/test_train.py``); none of
    these ops has a multiply-add to count."""
    if not (args and isinstance(args[0], torch.Tensor) and args[0].is_meta):
        return None
    if func is torch.ops.aten.native_batch_norm.default:  # normalised input, saved mean and inverse std
        x = args[0]
        return torch.empty_like(x), x.new_empty(x.shape[1]), x.new_empty(x.shape[1])
    if func in _activation_ops():
        return torch.empty_like(args[0])
    return None


class _MetaShortcuts(TorchDispatchMode):
    """A dispatch mode that answers :func:`shortcut_meta_output`'s ops directly (entered inside
    ``FlopCounterMode``, those ops never reach it: they count nothing)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's protocol
        out = shortcut_meta_output(func, args)
        return func(*args, **(kwargs or {})) if out is None else out


def training_activation_bytes(model: torch.nn.Module, frames: int, size: int, batch_size: int) -> int:
    """Bytes of the tensors one training forward creates on a ``(batch, 3, frames, size, size)`` clip.

    Counted on the meta device (nothing is computed): every ATen op's output that is not a view of its
    input is summed. Autograd keeps most of these alive until ``backward``, so the sum is an estimate,
    from above, of the activation memory a training step needs; :func:`nas.train.memory_estimate`
    adds the parameters, gradients and optimiser state.
    """
    class _Count(_MetaShortcuts):
        def __init__(self) -> None:
            super().__init__()
            self.bytes = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's protocol
            out = super().__torch_dispatch__(func, types, args, kwargs)
            if not func._schema.is_mutable and not getattr(func, "is_view", False):
                for t in out if isinstance(out, (tuple, list)) else (out,):
                    if isinstance(t, torch.Tensor) and not t._is_view():
                        self.bytes += t.numel() * t.element_size()
            return out

    was_training = model.training
    model.train()
    meta = model.to("meta")
    clip = torch.zeros(batch_size, 3, frames, size, size, device="meta")
    counter = _Count()
    with counter:
        meta(clip)
    model.train(was_training)
    return counter.bytes


def measure_latency(arch: "Arch", *, device: str = "cpu", threads: int = 1, batch: int = 1, mode: str = "clip",
                    warmup: int = 3, min_runs: int = 7, min_seconds: float = 1.0,
                    max_runs: int = 200) -> dict[str, float]:
    """Measured inference latency of ``arch`` (freshly initialised, eval mode, no grad; latency does not
    depend on the weights): ``warmup`` untimed calls, then timed calls until at least ``min_runs`` and
    ``min_seconds`` (at most ``max_runs``). ``clip``: one forward of a ``(batch, 3, T, crop, crop)``
    clip at the architecture's own clip; ``stream``: one ``step`` of a causal MoViNet on one frame.

    Returns:
        ``median_ms``, ``iqr_ms`` (interquartile range), ``runs``. CUDA timings synchronise around each
        call. ``threads`` sets torch's intra-op threads for the measurement (restored afterwards).
    """
    import statistics
    import time

    from nas.models import build_model

    if mode not in ("clip", "stream"):
        raise ValueError(f"mode: got {mode!r}; allowed: clip, stream")
    dev = torch.device(device)
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        model = build_model(arch).to(dev).eval()
        clip = arch.clip
        if mode == "stream":
            if not hasattr(model, "step"):
                raise ValueError(f"mode: got 'stream' for {arch.name}, which is not causal; allowed: clip")
            state = model.init_state(batch, clip.crop)
            state = {k: v.to(dev) for k, v in state.items()}
            frame = torch.randn(batch, 3, 1, clip.crop, clip.crop, device=dev)

            def call() -> None:
                nonlocal state
                _, state = model.step(frame, state)
        else:
            x = torch.randn(batch, 3, clip.frames, clip.crop, clip.crop, device=dev)

            def call() -> None:
                model(x)

        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        times: list[float] = []
        with torch.no_grad():
            for _ in range(warmup):
                call()
            sync()
            start = time.perf_counter()
            while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < min_seconds):
                t0 = time.perf_counter()
                call()
                sync()
                times.append((time.perf_counter() - t0) * 1e3)
    finally:
        torch.set_num_threads(before)
    q = statistics.quantiles(times, n=4) if len(times) >= 2 else [times[0]] * 3
    return {"median_ms": statistics.median(times), "iqr_ms": q[2] - q[0], "runs": float(len(times))}
