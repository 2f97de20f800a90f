"""Benchmark: proxy training throughput against this machine's fp32 matmul peak, measured in one run.

For each architecture at proxy scale (its own frames and stride, the crop scaled by ``--size-scale``)
it times full training steps (forward, cross-entropy, backward, AdamW step; batch ``--batch``) in
both memory layouts, ``channels_first`` and ``channels_last_3d``, interleaving rounds so both see the
same machine noise, and reports

* clips/s (median step time),
* achieved GMAC/s, counting a training step as 3x the forward multiply-adds (forward + backward
  w.r.t. activations + backward w.r.t. weights) -- the exact analytic count at the trained clip,
* that rate as a percentage of the fp32 matmul peak, measured in the same run before and after the
  models (square ``torch.mm``; the better of the two brackets is the peak, the spread shows the noise),
* which layout the proxy trainer's measured ``auto`` choice would pick.

GFLOPs / GMACs here follow the X3D and MoViNet papers: one multiply-add of a conv or linear layer is
one FLOP; BN, activations and pooling count zero. Run::

    .venv/bin/python experiments/bench_train.py [--quick] [--out experiments/results/bench_train.md]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from nas import load_arch
from nas.cost import GFLOPS_NOTE
from nas.dsl.arch import Arch
from nas.models import build_model
from nas.proxy import Proxy

LAYOUTS = {"channels_first": torch.contiguous_format, "channels_last_3d": torch.channels_last_3d}


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """Best fp32 ``torch.mm`` rate of two n x n matrices, in GMAC/s (n^3 multiply-adds per product)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up: thread pool, allocator
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return n ** 3 / best / 1e9


class _Trainer:
    """One model + optimiser + batch in one layout; ``step()`` runs and times a training step."""

    def __init__(self, arch: Arch, crop: int, batch: int, layout: str, classes: int = 26) -> None:
        fmt = LAYOUTS[layout]
        sized = arch.with_classes(classes)
        torch.manual_seed(0)
        self.model = build_model(sized).to(memory_format=fmt).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        frames = arch.clip.frames
        self.x = torch.randn(batch, 3, frames, crop, crop).contiguous(memory_format=fmt)
        self.y = torch.randint(0, classes, (batch,))

    def step(self) -> float:
        t0 = time.perf_counter()
        loss = F.cross_entropy(self.model(self.x), self.y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return time.perf_counter() - t0


def bench_arch(arch: Arch, size_scale: float, batch: int, rounds: int, steps_per_round: int) -> dict:
    """Median training-step time per layout, interleaved round by round."""
    crop = Proxy(size_scale=size_scale).train_crop(arch.clip.crop)
    trainers = {layout: _Trainer(arch, crop, batch, layout) for layout in LAYOUTS}
    for t in trainers.values():  # warm-up: allocator, one-off kernel selection
        t.step()
        t.step()
    times: dict[str, list[float]] = {layout: [] for layout in LAYOUTS}
    for _ in range(rounds):
        for layout, t in trainers.items():
            times[layout].extend(t.step() for _ in range(steps_per_round))
    fwd_macs = arch.cost(size=crop).macs
    out = {"arch": arch.name, "frames": arch.clip.frames, "crop": crop, "batch": batch, "fwd_gmacs": fwd_macs / 1e9}
    for layout, ts in times.items():
        median = statistics.median(ts)
        out[layout] = {"step_s": median, "clips_per_s": batch / median, "gmac_per_s": 3 * fwd_macs * batch / median / 1e9}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archs", default="x3d-xs,movinet-a0")
    parser.add_argument("--size-scale", type=float, default=0.4,
                        help="crop fraction (default 0.4: 64² for x3d-xs, as recorded in results/bench_train.md)")
    parser.add_argument("--batch", type=int, default=None, help="clips per step (default: the default proxy's)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps-per-round", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 steps")
    parser.add_argument("--out", default=None, help="write the markdown table here")
    args = parser.parse_args()
    from nas.proxy import Proxy

    proxy = Proxy()
    size_scale = args.size_scale or proxy.size_scale
    batch = args.batch or proxy.batch_size
    rounds, per_round = (2, 2) if args.quick else (args.rounds, args.steps_per_round)

    peak_before = matmul_peak()
    rows = [bench_arch(load_arch(name), size_scale, batch, rounds, per_round) for name in args.archs.split(",")]
    peak_after = matmul_peak()
    peak = max(peak_before, peak_after)

    lines = [
        "# Proxy training throughput vs fp32 matmul peak",
        "",
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads. Batch {batch}, crop = size_scale {size_scale} x the architecture's, "
        "AdamW, forward + backward + step.",
        f"fp32 matmul peak (2048² `torch.mm`): {peak_before:.1f} GMAC/s before the models, {peak_after:.1f} after; "
        f"percentages use the better, {peak:.1f}.",
        f"Training step = 3 x forward multiply-adds (exact analytic count at the trained clip). {GFLOPS_NOTE}.",
        "",
        "| arch | clip | fwd GMACs/clip | layout | step (s) | clips/s | GMAC/s | % of matmul peak |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        best = max(LAYOUTS, key=lambda lay: r[lay]["clips_per_s"])
        for layout in LAYOUTS:
            m = r[layout]
            mark = " (faster)" if layout == best else ""
            lines.append(f"| {r['arch']} | {r['frames']}x{r['crop']}² | {r['fwd_gmacs']:.4f} | {layout}{mark} | "
                         f"{m['step_s']:.3f} | {m['clips_per_s']:.1f} | {m['gmac_per_s']:.1f} | "
                         f"{100 * m['gmac_per_s'] / peak:.1f} % |")
        other = [lay for lay in LAYOUTS if lay != best][0]
        ratio = r[best]["clips_per_s"] / r[other]["clips_per_s"]
        lines.append(f"| | | | {best} / {other} | | **{ratio:.2f}x** | | |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
