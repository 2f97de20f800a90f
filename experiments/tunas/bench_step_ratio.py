"""Supernet training-step time / stand-alone training-step time of the same sampled child (issue 8).

For ``--archs`` architectures sampled uniformly from the ``movinet`` space at the search clip
(default 8x5x112, trained at 14 px as ``xnas search`` does), times one training step (forward,
backward, and for the supernet the masked L2) of the supernet on that path and of the extracted
stand-alone ``build_model`` network on the same batch; best of ``--reps`` after one warm-up each.
Prints one JSON line per architecture and a summary (median ratio; goal <= 1.3).

    .venv/bin/python experiments/tunas/bench_step_ratio.py --archs 6 --out experiments/tunas/results/step_ratio.json

``--loop N`` measures the ratio as the search loop sees it instead: one supernet trains N steps in a row,
each on a freshly sampled path (a new child every step, as the controller samples them early on), every
step timed, first calls included; then every one of those N children is built stand-alone and its
steady-state step timed (the mean of ``--reps`` steps after one warm-up step, as a whole training runs).
The ratio is total supernet time / total stand-alone time over the same children, per window of
``--window`` steps, so the first window shows the new-shape cost and the later ones how it amortises
(oneDNN caches a primitive per layer shape; ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` sets how many, 1024 by
default).

    .venv/bin/python experiments/tunas/bench_step_ratio.py --loop 300 --out experiments/tunas/results/step_ratio_loop.json

The defaults (batch 4, 26 classes, ``channels_first``) are those of the first measurements; the default
search now trains 16 clips a step on 6 classes in ``channels_last_3d``:
``--batch 16 --classes 6 --layout channels_last_3d`` (both networks and the batch in that layout).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import nas
from nas.dsl import Arch
from nas.drivers.tunas.search import SearchConfig, default_fixed, supernet_backward, supernet_loss
from nas.drivers.tunas.supernet import Path as NetPath, Supernet

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_train import matmul_peak  # noqa: E402


# the search's own training step: cross-entropy (label smoothing 0.1) and the masked L2 (wd 4e-5)
SEARCH = SearchConfig(target_gflops=0.18)


def _setup(args: argparse.Namespace) -> tuple[nas.Space, Supernet, torch.Tensor, torch.Tensor]:
    """The space, a fresh supernet and one random batch at the search clip."""
    space = nas.load_space(args.space)
    torch.manual_seed(args.seed)
    supernet = Supernet(space, classes=args.classes).train().to(memory_format=_format(args))
    x = torch.randn(args.batch, 3, 8, args.pixels, args.pixels).contiguous(memory_format=_format(args))
    y = torch.randint(0, args.classes, (args.batch,))
    return space, supernet, x, y


def _format(args: argparse.Namespace) -> torch.memory_format:
    """The memory format of ``--layout``, for the supernet, the stand-alone child and the batch alike."""
    return torch.channels_last_3d if args.layout == "channels_last_3d" else torch.contiguous_format


def _child(space: nas.Space, seed: int, classes: int) -> tuple[Arch, Arch]:
    """A uniform draw of the space at the search clip, as drawn and with the data's class count."""
    at_clip = space.with_clip((8, 5, 112))
    arch = at_clip.freeze({**at_clip.random(seed), **default_fixed(at_clip)})
    return arch, arch.with_classes(classes)


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
    ap.add_argument("--layout", choices=("channels_first", "channels_last_3d"), default="channels_first",
                    help="memory layout of both networks and the batch (the search's default: channels_last_3d)")
    ap.add_argument("--out")
    ap.add_argument("--loop", type=int, default=0, help="time N consecutive supernet steps on new paths")
    ap.add_argument("--window", type=int, default=50)
    ap.add_argument("--compare-l2", action="store_true",
                    help="time the masked L2 through autograd against the fused gradient, side by side")
    ap.add_argument("--no-mkldnn", action="store_true", help="torch.backends.mkldnn off (native conv kernels)")
    args = ap.parse_args()
    if args.no_mkldnn:
        torch.backends.mkldnn.enabled = False
    if args.compare_l2:
        return compare_l2(args)
    if args.loop:
        return loop(args)
    space, supernet, x, y = _setup(args)
    rows = []
    for i in range(args.archs):
        arch, arch_c = _child(space, args.seed * 1000 + i, args.classes)
        path = NetPath.of(arch_c)
        model = supernet.extract(arch_c).train().to(memory_format=_format(args))

        def sn_step() -> None:
            supernet.zero_grad(set_to_none=True)
            supernet_backward(supernet, path, x, y, SEARCH)

        def sa_step() -> None:
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y, label_smoothing=SEARCH.label_smoothing).backward()

        (c_sn, t_sn), (c_sa, t_sa) = _time(sn_step, args.reps), _time(sa_step, args.reps)
        row = {"arch": arch.hash, "gflops": arch.cost().gflops, "supernet_s": t_sn, "standalone_s": t_sa,
               "ratio": t_sn / t_sa, "supernet_first_s": c_sn, "standalone_first_s": c_sa,
               "ratio_first_call": c_sn / c_sa}
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {"median_ratio": statistics.median(r["ratio"] for r in rows),
               "median_ratio_first_call": statistics.median(r["ratio_first_call"] for r in rows), "archs": len(rows),
               "batch": args.batch, "clip": f"8 frames x {args.pixels}^2", "threads": torch.get_num_threads(),
               "layout": args.layout, "rows": rows, "load_average_after": [round(x, 2) for x in os.getloadavg()],
               "note": "best of reps after one warm-up call each; first call = new shapes, as every search step"}
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=2))


def compare_l2(args: argparse.Namespace) -> None:
    """Supernet step with the masked L2 through autograd vs its gradient added directly, same paths,
    alternating, steady state (each path warmed up once): the saving of ``supernet_backward``."""
    space, supernet, x, y = _setup(args)
    totals = {"autograd": 0.0, "fused": 0.0}

    def step(path: NetPath, how: str) -> float:
        t0 = time.perf_counter()
        supernet.zero_grad(set_to_none=True)
        if how == "autograd":
            supernet_loss(supernet, path, x, y, SEARCH).backward()
        else:
            supernet_backward(supernet, path, x, y, SEARCH)
        return time.perf_counter() - t0

    for i in range(args.archs):
        path = NetPath.of(_child(space, args.seed * 1000 + i, args.classes)[1])
        step(path, "fused")
        for _ in range(args.reps):
            for how in ("autograd", "fused"):
                totals[how] += step(path, how)
    result = {"archs": args.archs, "reps": args.reps, "batch": args.batch,
              "autograd_s": totals["autograd"] / (args.archs * args.reps),
              "fused_s": totals["fused"] / (args.archs * args.reps),
              "fused_over_autograd": totals["fused"] / totals["autograd"]}
    print(json.dumps(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


def loop(args: argparse.Namespace) -> None:
    """The ratio as the search loop sees it: N consecutive supernet steps on new paths, first calls included."""
    rate_before = matmul_peak()
    space, supernet, x, y = _setup(args)
    archs = [_child(space, args.seed * 100000 + i, args.classes)[1] for i in range(args.loop)]
    supernet_s = []
    for arch in archs:
        path = NetPath.of(arch)
        t0 = time.perf_counter()
        supernet.zero_grad(set_to_none=True)
        supernet_backward(supernet, path, x, y, SEARCH)
        supernet_s.append(time.perf_counter() - t0)
    standalone_s = []
    for arch in archs:
        model = supernet.extract(arch).train().to(memory_format=_format(args))

        def sa_step() -> None:
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y, label_smoothing=SEARCH.label_smoothing).backward()

        sa_step()  # warm-up: a stand-alone training meets its shapes once, then trains on them
        times = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            sa_step()
            times.append(time.perf_counter() - t0)
        standalone_s.append(statistics.mean(times))
    windows = []
    for lo in range(0, args.loop, args.window):
        hi = min(args.loop, lo + args.window)
        windows.append({"steps": f"{lo + 1}-{hi}", "supernet_s": sum(supernet_s[lo:hi]) / (hi - lo),
                        "standalone_s": sum(standalone_s[lo:hi]) / (hi - lo),
                        "ratio": sum(supernet_s[lo:hi]) / sum(standalone_s[lo:hi])})
        print(json.dumps(windows[-1]), flush=True)
    summary = {"ratio_all_steps": sum(supernet_s) / sum(standalone_s), "steps": args.loop, "batch": args.batch,
               "layout": args.layout, "classes": args.classes,
               "clip": f"8 frames x {args.pixels}^2", "threads": torch.get_num_threads(),
               "mkldnn": torch.backends.mkldnn.enabled,
               "onednn_primitive_cache_capacity": os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "default (1024)"),
               "matmul_gmacs_before": round(rate_before, 1), "matmul_gmacs_after": round(matmul_peak(), 1),
               "windows": windows, "supernet_step_s": supernet_s, "standalone_step_s": standalone_s,
               "note": "supernet: every step a new path, timed as the search loop runs it (first calls included); "
                       "stand-alone: the same children, steady state (mean of reps after a warm-up call)"}
    print(json.dumps({k: v for k, v in summary.items() if k not in ("windows", "supernet_step_s", "standalone_step_s")}))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
