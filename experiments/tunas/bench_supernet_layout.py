"""Supernet search-step time in the two memory layouts, side by side (issue 20).

The stand-alone proxy trainer picks the faster of ``channels_first`` and ``channels_last_3d`` per
architecture (for MoViNets at the retrain's 17 px, channels_last_3d: 1.9x faster at 1 thread); the
supernet always ran ``channels_first``. This times the search's own step (``--batch`` training clips
forward + backward + masked L2, then the held-out forward of ``--val-multiplier`` x the batch) at the
search's shapes on one supernet per layout (same initial weights), for the warm-up path and
``--archs`` draws near the 0.18 GFLOPs target (``bench_supernet_conv._paths``): the first call, then
the mean of ``--reps`` later calls, alternating layouts. Run on an idle machine::

    .venv/bin/python experiments/tunas/bench_supernet_layout.py --out experiments/tunas/results/supernet_layout.json
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

import nas
from nas.drivers.tunas.search import SearchConfig, supernet_backward
from nas.drivers.tunas.supernet import Supernet

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_supernet_conv import _paths  # noqa: E402
from bench_train import matmul_peak  # noqa: E402

FORMATS = {"channels_first": torch.contiguous_format, "channels_last_3d": torch.channels_last_3d}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archs", type=int, default=6)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--val-multiplier", type=int, default=4)
    ap.add_argument("--pixels", type=int, default=14, help="the search's crop (112 x 0.125)")
    ap.add_argument("--classes", type=int, default=6, help="the graded task's classes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    peak = matmul_peak()
    space = nas.load_space("movinet").with_clip((8, 10, 112))
    cfg = SearchConfig(target_gflops=0.18)
    torch.manual_seed(args.seed)
    base = Supernet(space, classes=args.classes).train()
    nets = {name: copy.deepcopy(base).to(memory_format=fmt) for name, fmt in FORMATS.items()}
    x = torch.randn(args.batch, 3, 8, args.pixels, args.pixels)
    y = torch.randint(0, args.classes, (args.batch,))
    xv = torch.randn(args.batch * args.val_multiplier, 3, 8, args.pixels, args.pixels)
    inputs = {name: (x.contiguous(memory_format=fmt), xv.contiguous(memory_format=fmt)) for name, fmt in FORMATS.items()}

    def step(layout: str, path) -> tuple[float, float]:
        net, (xt, xh) = nets[layout], inputs[layout]
        torch.manual_seed(args.seed)  # the same head-dropout mask in both: comparable losses
        t0 = time.perf_counter()
        net.zero_grad(set_to_none=True)
        loss = supernet_backward(net, path, xt, y, cfg)
        with torch.no_grad():
            net(xh, path)
        return time.perf_counter() - t0, loss

    rows = []
    for name, gflops, path in _paths(space, args.archs, args.classes, args.seed):
        row: dict = {"path": name, "gflops_full_size": round(gflops, 4)}
        for layout in FORMATS:
            row[f"{layout}_first_s"], row[f"{layout}_loss"] = step(layout, path)
        times: dict[str, list[float]] = {layout: [] for layout in FORMATS}
        for _ in range(args.reps):
            for layout in FORMATS:
                times[layout].append(step(layout, path)[0])
        for layout in FORMATS:
            row[f"{layout}_s"] = statistics.mean(times[layout])
        row["speedup"] = row["channels_first_s"] / row["channels_last_3d_s"]
        row["speedup_first_call"] = row["channels_first_first_s"] / row["channels_last_3d_first_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    near = rows[1:]
    summary = {"matmul_gmacs": round(peak, 1), "matmul_gmacs_after": round(matmul_peak(), 1),
               "threads": torch.get_num_threads(), "batch": args.batch, "heldout": args.batch * args.val_multiplier,
               "clip": f"8 frames x {args.pixels}^2",
               "warmup_speedup": rows[0]["speedup"], "warmup_speedup_first_call": rows[0]["speedup_first_call"],
               "near_target_median_speedup": statistics.median(r["speedup"] for r in near),
               "near_target_median_speedup_first_call": statistics.median(r["speedup_first_call"] for r in near),
               "max_loss_difference": max(abs(r["channels_first_loss"] - r["channels_last_3d_loss"]) for r in rows),
               "rows": rows, "note": "speedup = channels_first time / channels_last_3d time"}
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
