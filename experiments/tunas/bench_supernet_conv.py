"""Supernet search-step time with and without the conv1d path at 1 x 1 spatial maps, side by side
(issue 20).

The default search spends about 40 % of its wall time in its first 50 steps, the op / filter warm-up,
where each step trains the largest path with every kernel of every layer run and averaged (10-13 s a
step at 92 GMAC/s, against 0.3-0.5 s later). A profile of that step (taken beside other work, so
only its shares are telling) put 81 % of it in convolution backward, the largest items depthwise
Conv3d on (16, 376-896, 8, 1, 1) maps. On a 1 x 1 map only a kernel's spatial centre tap meets data,
so ``nas.drivers.tunas.supernet._conv`` runs a conv1d over time there (exact). This times the search's own step at the search's own shapes, one training step of
``--batch`` clips (cross-entropy + masked L2, as ``supernet_backward``) plus the held-out forward of
``--val-multiplier`` x the batch, with ``_conv`` as now and with the plain Conv3d it replaced, for

- the warm-up path: every numeric choice at its largest value, every kernel mixed;
- ``--archs`` paths drawn near the 0.18 GFLOPs target (tilted draws, as ``xnas fidelity`` draws them).

Since 2026-12-07 ``_conv`` is :func:`nas.models.layers.conv3d_same`, which also drops the taps that
meet only padding on larger maps; the ``conv1d_at_1x1`` arm measures that, the ``conv3d`` arm runs
under :func:`~nas.models.layers.whole_kernels`. Each path is timed both ways alternately on one supernet (the first call, with new shapes, then the
mean of ``--reps`` later calls) and the losses are compared. Run on an idle machine::

    .venv/bin/python experiments/tunas/bench_supernet_conv.py --out experiments/tunas/results/supernet_conv.json
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

import nas
import nas.drivers.tunas.supernet as supernet_module
from nas.drivers.tunas.search import SearchConfig, default_fixed, supernet_backward
from nas.drivers.tunas.supernet import Path as NetPath, Supernet, kernel_positions
from nas.models.layers import whole_kernels

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_train import matmul_peak  # noqa: E402

FAST = supernet_module._conv


def whole_kernel_conv(x: torch.Tensor, weight: torch.Tensor, stride=(1, 1, 1), groups: int = 1,
                      bias=None) -> torch.Tensor:
    """The supernet's conv before the conv1d path: a Conv3d with TF 'same' padding and every tap, at
    every shape."""
    with whole_kernels():
        return FAST(x, weight, stride, groups, bias)


ARMS = {"conv3d": whole_kernel_conv, "conv1d_at_1x1": FAST}


def _paths(space: nas.Space, archs: int, classes: int, seed: int) -> list[tuple[str, float, NetPath]]:
    """(name, full-size GFLOPs, path): the warm-up path first, then draws near the target."""
    fixed = default_fixed(space)
    dims = space.dims()
    largest = {label: (max(c.values, key=lambda v: v if isinstance(v, (int, float)) else 0)
                       if not c.is_continuous else c.high) for label, c in dims.items()}
    warm = space.freeze({**largest, **fixed})
    mixed = [p for ps in kernel_positions(space).values() for p in ps]
    out = [("warm-up (largest, all kernels mixed)", warm.cost().gflops, NetPath.of(warm, mixed, classes=classes))]
    rng = random.Random(seed)
    while len(out) < archs + 1:
        arch = space.freeze({**space.random(rng, tilt=rng.uniform(-8.0, -4.0)), **fixed})
        g = arch.cost().gflops
        if 0.12 <= g <= 0.27:  # within -33 % .. +50 % of the 0.18 target
            out.append((arch.hash[:8], g, NetPath.of(arch, classes=classes)))
    return out


def step_parser(description: str) -> argparse.ArgumentParser:
    """The options of a search-step benchmark (this one and ``bench_supernet_layout.py``)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--archs", type=int, default=6)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--val-multiplier", type=int, default=4)
    ap.add_argument("--pixels", type=int, default=14, help="the search's crop (112 x 0.125)")
    ap.add_argument("--classes", type=int, default=6, help="the graded task's classes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    return ap


def step_inputs(args: argparse.Namespace) -> tuple[nas.Space, SearchConfig, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(space, cfg, x, y, x_heldout)``: the default search's space and configuration, and random
    batches at its shapes."""
    space = nas.load_space("movinet").with_clip((8, 10, 112))
    cfg = SearchConfig(target_gflops=0.18)
    torch.manual_seed(args.seed)
    x = torch.randn(args.batch, 3, 8, args.pixels, args.pixels)
    y = torch.randint(0, args.classes, (args.batch,))
    xv = torch.randn(args.batch * args.val_multiplier, 3, 8, args.pixels, args.pixels)
    return space, cfg, x, y, xv


def timed_step(net: Supernet, path: NetPath, x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor,
               cfg: SearchConfig, seed: int) -> tuple[float, float]:
    """One search step (training batch forward + backward + masked L2, then the held-out forward):
    ``(seconds, loss)``; the seed fixes the head-dropout mask, so two arms' losses compare."""
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    net.zero_grad(set_to_none=True)
    loss = supernet_backward(net, path, x, y, cfg)
    with torch.no_grad():
        net(xv, path)
    return time.perf_counter() - t0, loss


def compare(args: argparse.Namespace, space: nas.Space, step: Callable[[str, NetPath], tuple[float, float]],
            arms: tuple[str, str], peak: float) -> dict:
    """Time ``step(arm, path)`` for both arms on every path (first calls in turn, then ``--reps``
    alternating); speed-up = first arm's time / second's. Prints each row and writes ``--out``."""
    slow, fast = arms
    rows = []
    for name, gflops, path in _paths(space, args.archs, args.classes, args.seed):
        row: dict = {"path": name, "gflops_full_size": round(gflops, 4)}
        for arm in arms:  # first calls, in turn
            row[f"{arm}_first_s"], row[f"{arm}_loss"] = step(arm, path)
        times: dict[str, list[float]] = {arm: [] for arm in arms}
        for _ in range(args.reps):  # steady state, alternating
            for arm in arms:
                times[arm].append(step(arm, path)[0])
        for arm in arms:
            row[f"{arm}_s"] = statistics.mean(times[arm])
        row["speedup"] = row[f"{slow}_s"] / row[f"{fast}_s"]
        row["speedup_first_call"] = row[f"{slow}_first_s"] / row[f"{fast}_first_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    near = rows[1:]
    summary = {"matmul_gmacs": round(peak, 1), "matmul_gmacs_after": round(matmul_peak(), 1),
               "threads": torch.get_num_threads(), "batch": args.batch, "heldout": args.batch * args.val_multiplier,
               "clip": f"8 frames x {args.pixels}^2",
               "warmup_speedup": rows[0]["speedup"], "warmup_speedup_first_call": rows[0]["speedup_first_call"],
               "near_target_median_speedup": statistics.median(r["speedup"] for r in near),
               "near_target_median_speedup_first_call": statistics.median(r["speedup_first_call"] for r in near),
               "max_loss_difference": max(abs(r[f"{slow}_loss"] - r[f"{fast}_loss"]) for r in rows),
               "rows": rows,
               "note": "one step = train batch forward + backward + masked L2, then the held-out forward; "
                       f"speedup = {slow} time / {fast} time"}
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2))
    return summary


def main() -> None:
    args = step_parser(__doc__.split("\n")[0]).parse_args()
    peak = matmul_peak()
    space, cfg, x, y, xv = step_inputs(args)
    net = Supernet(space, classes=args.classes).train()

    def step(arm: str, path: NetPath) -> tuple[float, float]:
        supernet_module._conv = ARMS[arm]
        return timed_step(net, path, x, y, xv, cfg, args.seed)

    try:
        compare(args, space, step, ("conv3d", "conv1d_at_1x1"), peak)
    finally:
        supernet_module._conv = FAST


if __name__ == "__main__":
    main()
