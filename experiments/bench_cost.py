"""Benchmark: analytic cost model vs torch FlopCounterMode on the same architectures, in one run.

For every reference architecture (and a few random ones per space) it times

* ``analytic``: ``arch.cost()`` (the torch-free closed-form walk), best of many repeats;
* ``flopcounter``: what users otherwise do -- build the model and run one eager forward on a real
  CPU clip under ``FlopCounterMode`` (batch 1, eval, no grad, at the architecture's own clip);
* ``flopcounter-meta``: the fastest fair variant of the counter -- model and clip on the meta
  device, so only shapes propagate (no arithmetic);

checks the three agree exactly, and prints / records the speed-up ratios. Run::

    .venv/bin/python experiments/bench_cost.py [--quick] [--out experiments/results/bench_cost.md]

``--quick`` skips the real-tensor count for the big MoViNets (A3-A5 full clips take minutes).
"""
from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
from pathlib import Path

import torch

from nas import arch_names, load_arch, load_space
from nas.measure import count_params, measured_macs
from nas.models import build_model

HEAVY = {"movinet-a3", "movinet-a4", "movinet-a5"}


def _best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench(arch, real: bool) -> dict:
    """Time the three counts of one architecture and check they agree."""
    cost = arch.cost()
    analytic_s = _best_time(arch.cost, 200)

    def count_meta() -> int:
        with torch.device("meta"):
            model = build_model(arch)
        return measured_macs(model, cost.frames, cost.size)

    meta_macs = count_meta()
    meta_s = statistics.median(_time_once(count_meta) for _ in range(3))
    row = {"name": arch.name, "gflops": cost.gflops, "params": cost.params, "analytic_s": analytic_s,
           "meta_s": meta_s, "meta_ok": meta_macs == cost.macs, "real_s": None, "real_ok": None}
    if real:
        def count_real() -> int:
            model = build_model(arch)
            if count_params(model) != cost.params:
                raise RuntimeError(f"{arch.name}: params {count_params(model)} != analytic {cost.params}")
            return measured_macs(model, cost.frames, cost.size)

        t0 = time.perf_counter()
        real_macs = count_real()
        row["real_s"] = time.perf_counter() - t0
        row["real_ok"] = real_macs == cost.macs
    return row


def _time_once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip real-tensor counts of MoViNet A3-A5")
    parser.add_argument("--random", type=int, default=3, help="random architectures per space")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_cost.md"))
    args = parser.parse_args()
    torch.set_num_threads(2)

    archs = [load_arch(n) for n in arch_names()]
    rng = random.Random(0)
    for space_name in ("x3d", "movinet"):
        space = load_space(space_name)
        for _ in range(args.random):
            # random points at a moderate clip so the real-tensor count stays affordable
            arch = space.freeze(space.random(rng))
            archs.append(arch)
    rows = []
    for arch in archs:
        real = not (args.quick and arch.name in HEAVY) and arch.cost().gflops < 60
        row = bench(arch, real)
        rows.append(row)
        real_text = "skipped" if row["real_s"] is None else f"{row['real_s']:.2f} s ({row['real_s'] / row['analytic_s']:,.0f}x)"
        print(f"{row['name']:<22} {row['gflops']:>9.3f} GF  analytic {row['analytic_s'] * 1e6:7.1f} us  "
              f"meta {row['meta_s'] * 1e3:7.1f} ms ({row['meta_s'] / row['analytic_s']:,.0f}x)  real {real_text}  "
              f"exact={row['meta_ok'] and row['real_ok'] is not False}", flush=True)

    real_ratios = [r["real_s"] / r["analytic_s"] for r in rows if r["real_s"] is not None]
    meta_ratios = [r["meta_s"] / r["analytic_s"] for r in rows]
    lines = [
        "# Analytic cost vs FlopCounterMode (recorded by experiments/bench_cost.py)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads. GFLOPs = multiply-adds x 1e-9.",
        "Times: analytic = best of 200 `arch.cost()` calls; meta = median of 3 (build on meta device + counted forward);",
        "real = one build + counted eager forward on a zero clip of the architecture's own size (what users usually do).",
        "",
        "| architecture | GFLOPs | params | analytic (µs) | meta count (ms) | meta / analytic | real count (s) | real / analytic | all equal |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        real_s = "–" if r["real_s"] is None else f"{r['real_s']:.2f}"
        real_x = "–" if r["real_s"] is None else f"{r['real_s'] / r['analytic_s']:,.0f}×"
        ok = r["meta_ok"] and r["real_ok"] is not False
        lines.append(f"| {r['name']} | {r['gflops']:.4f} | {r['params']:,} | {r['analytic_s'] * 1e6:.1f} | "
                     f"{r['meta_s'] * 1e3:.1f} | {r['meta_s'] / r['analytic_s']:,.0f}× | {real_s} | {real_x} | {'yes' if ok else 'NO'} |")
    lines += [
        "",
        f"Median speed-up of the analytic count: {statistics.median(real_ratios):,.0f}× over the real-tensor "
        f"FlopCounterMode count (min {min(real_ratios):,.0f}×), {statistics.median(meta_ratios):,.0f}× over the "
        f"meta-device count (min {min(meta_ratios):,.0f}×). Goal: >= 1000×.",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-1:]))
    print(f"recorded in {args.out}")


if __name__ == "__main__":
    main()
