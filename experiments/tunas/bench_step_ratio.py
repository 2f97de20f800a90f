"""Supernet training-step time / stand-alone training-step time of the same sampled child (issue 8).

For ``--archs`` architectures sampled uniformly from the ``movinet`` space at the search clip
(default 8x5x112, trained at 14 px as ``xnas search`` does), times one training step (forward,
backward, and for the supernet the masked L2) of the supernet on that path and of the extracted
stand-alone ``build_model`` network on the same batch; best of ``--reps`` after one warm-up each.
Prints one JSON line per architecture and a summary (median ratio; goal <= 1.3).

    .venv/bin/python experiments/tunas/bench_step_ratio.py --archs 6 --out experiments/tunas/results/step_ratio.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import nas
from nas.dsl import Arch
from nas.families.movinet import resolve
from nas.drivers.tunas.search import default_fixed
from nas.drivers.tunas.supernet import Path as NetPath, Supernet


def _time(fn, reps: int) -> tuple[float, float]:
    """(first call, best of ``reps`` later calls): a search meets every path once, with new shapes."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return first, best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", type=int, default=6)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--pixels", type=int, default=14)
    ap.add_argument("--classes", type=int, default=26)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--space", default="movinet")
    ap.add_argument("--out")
    args = ap.parse_args()
    space = nas.load_space(args.space)
    fixed = default_fixed(space, (8, 5, 112))
    torch.manual_seed(args.seed)
    supernet = Supernet(space, classes=args.classes).train()
    x = torch.randn(args.batch, 3, 8, args.pixels, args.pixels)
    y = torch.randint(0, args.classes, (args.batch,))
    rows = []
    for i in range(args.archs):
        arch = space.freeze({**space.random(args.seed * 1000 + i), **fixed})
        arch_c = Arch.from_dict({**arch.to_dict(), "classes": args.classes})
        path = NetPath(dataclasses.replace(resolve(arch_c.doc)))
        model = supernet.extract(arch_c).train()

        def sn_step() -> None:
            supernet.zero_grad(set_to_none=True)
            loss = F.cross_entropy(supernet(x, path), y) + 2e-5 * supernet.l2(path)
            loss.backward()

        def sa_step() -> None:
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()

        (c_sn, t_sn), (c_sa, t_sa) = _time(sn_step, args.reps), _time(sa_step, args.reps)
        row = {"arch": arch.hash, "gflops": arch.cost().gflops, "supernet_s": t_sn, "standalone_s": t_sa,
               "ratio": t_sn / t_sa, "supernet_first_s": c_sn, "standalone_first_s": c_sa,
               "ratio_first_call": c_sn / c_sa}
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {"median_ratio": statistics.median(r["ratio"] for r in rows),
               "median_ratio_first_call": statistics.median(r["ratio_first_call"] for r in rows), "archs": len(rows),
               "batch": args.batch, "clip": f"8 frames x {args.pixels}^2", "threads": torch.get_num_threads(),
               "rows": rows, "load_average_after": [round(x, 2) for x in os.getloadavg()],
               "note": "best of reps after one warm-up call each; first call = new shapes, as every search step"}
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
