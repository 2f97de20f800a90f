"""Benchmark (issue 6): what Ray Tune dispatch costs per trial, and what 2 workers buy on this machine.

Three measurements, side by side in one run:

1. **Ray start**: ``ray.init`` of a local Ray sized to the machine.
2. **Overhead per trial**: a batch of trials whose body costs nothing (``--evaluator formula``: the
   score is a formula of the cost, no training), timed after a warm-up batch. Wall time / trials is
   what Tune adds around every trial (scheduling, worker start, result transport).
3. **2-worker speed-up**: the same real proxy trials (a small MoViNet space, synthetic data) run
   (a) in this process one after another on 1 thread, (b) on Ray one at a time with 2 CPUs each, and
   (c) on Ray two at a time with 1 CPU each. Speed-up = (b) / (c) and (a) / (c). Top-1 must be equal
   across the three (same seeds): dispatch does not change results.

    .venv/bin/python experiments/bench_ray.py [--trivial 16] [--real 4] [--steps 30] \
        [--out experiments/results/bench_ray.md]

Run it on an idle machine: ``os.getloadavg()`` before and after is recorded with the numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import tempfile
import time
from pathlib import Path

SPACE = """
xnas: 1
kind: space
name: bench-tiny
family: movinet
classes: 5
clip: {frames: 8, frame_stride: {choice: [1, 2]}, crop: 64}
activation: swish
gating: sigmoid
stem: {width: {choice: [8, 16], label: narrow}, kernel: 1x3x3, stride: [1, 2, 2]}
blocks:
  - width: {choice: [16, 24]}
    stride: [1, 2, 2]
    layers:
      repeat: {choice: [2, 3]}
      each: {kernel: {choice: [1x3x3, 3x3x3]}, expand: {range: [32, 64], step: 16}}
head: {project: 64, width: 128, dropout: 0.0}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trivial", type=int, default=16, help="trials in the overhead batch")
    parser.add_argument("--real", type=int, default=4, help="real proxy trials in the speed-up comparison")
    parser.add_argument("--steps", type=int, default=30, help="proxy steps of each real trial")
    parser.add_argument("--out", default="experiments/results/bench_ray.md")
    args = parser.parse_args()

    import ray
    import torch

    from nas import load_space
    from nas.dsl import Space
    from nas.integrations.ray_tune import RayEvaluator, run_trial
    from nas.proxy import Proxy

    tmp = Path(tempfile.mkdtemp(prefix="xnas-bench-ray-", dir="/tmp"))
    out: dict = {"cpus": os.cpu_count(), "load_before": [round(x, 2) for x in os.getloadavg()]}
    t = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="error",
             object_store_memory=200 * 1024**2, _temp_dir=str(tmp / "r"))
    out["ray_init_s"] = time.perf_counter() - t

    movinet = load_space("movinet")
    rng = random.Random(0)
    trivial = [movinet.freeze(movinet.random(rng)) for _ in range(args.trivial + 2)]
    proxy = Proxy(steps=args.steps, batch_size=8, train_clips=128, val_clips=64, warmup_steps=2,
                  checkpoint_every=10, layout="channels_first", task="event_order", size_scale=1.0)
    formula = RayEvaluator("synthetic", proxy, 0, log_dir=tmp / "formula", progress=False,
                           evaluator_spec={"kind": "formula", "name": "saturating"})
    formula.evaluate(trivial[:2])  # warm-up: worker start, imports
    t = time.perf_counter()
    formula.evaluate(trivial[2:])
    out["trivial_batch_s"] = time.perf_counter() - t
    out["overhead_per_trial_s"] = out["trivial_batch_s"] / args.trivial

    space = Space.from_yaml(SPACE)
    rng = random.Random(1)
    real: list = []
    while len(real) < args.real:
        arch = space.freeze(space.random(rng))
        if arch not in real:
            real.append(arch)
    jobs = [{"arch": a.to_dict(), "proxy": proxy.to_dict(), "seed": 0, "data": "synthetic", "threads": 1}
            for a in real]
    run_trial(jobs[0])  # warm this process's data cache and imports, as a Ray worker's first trial does
    torch.set_num_threads(1)
    t = time.perf_counter()
    in_process = [run_trial(j) for j in jobs]
    out["in_process_1thread_s"] = time.perf_counter() - t
    top1 = {"in_process": [round(r.top1, 2) for r in in_process]}
    for cpus, key in ((2, "ray_1_at_a_time_2cpus_s"), (1, "ray_2_at_a_time_1cpu_s")):
        evaluator = RayEvaluator("synthetic", proxy, 0, log_dir=tmp / f"real{cpus}", progress=False,
                                 cpus_per_trial=cpus)
        t = time.perf_counter()
        results = evaluator.evaluate(real)
        out[key] = time.perf_counter() - t
        bad = [r.reason for r in results if r.status != "ok"]
        if bad:
            raise RuntimeError(f"{key}: trials failed: {bad}")
        top1[key] = [round(r.top1, 2) for r in results]
    out["top1"] = top1
    out["speedup_2workers_vs_1worker"] = out["ray_1_at_a_time_2cpus_s"] / out["ray_2_at_a_time_1cpu_s"]
    out["speedup_2workers_vs_in_process"] = out["in_process_1thread_s"] / out["ray_2_at_a_time_1cpu_s"]
    out["load_after"] = [round(x, 2) for x in os.getloadavg()]
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out, indent=1))
    _write(Path(args.out), out, args)


def _write(path: Path, out: dict, args: argparse.Namespace) -> None:
    same = len({tuple(v) for v in out["top1"].values()}) == 1
    lines = [
        "# Ray Tune dispatch: overhead per trial and 2-worker speed-up (issue 6)",
        "",
        f"`experiments/bench_ray.py --trivial {args.trivial} --real {args.real} --steps {args.steps}`, "
        f"{out['cpus']} CPUs, {platform.processor() or platform.machine()}, "
        f"load average {out['load_before'][0]} before / {out['load_after'][0]} after.",
        "",
        "| measurement | value |",
        "|---|---|",
        f"| local `ray.init` | {out['ray_init_s']:.2f} s |",
        f"| {args.trivial} no-work trials (formula evaluator), after a warm-up batch | "
        f"{out['trivial_batch_s']:.2f} s |",
        f"| **Ray overhead per trial** | **{out['overhead_per_trial_s']:.2f} s** |",
        f"| {args.real} proxy trials ({args.steps} steps) in-process, 1 thread, one after another | "
        f"{out['in_process_1thread_s']:.1f} s |",
        f"| same on Ray, one at a time, 2 CPUs (2 threads) each | {out['ray_1_at_a_time_2cpus_s']:.1f} s |",
        f"| same on Ray, two at a time, 1 CPU each | {out['ray_2_at_a_time_1cpu_s']:.1f} s |",
        f"| **2-worker speed-up** vs 1 worker × 2 threads | **{out['speedup_2workers_vs_1worker']:.2f}×** |",
        f"| 2-worker speed-up vs in-process, 1 thread | {out['speedup_2workers_vs_in_process']:.2f}× |",
        f"| top-1 identical across the three ways | {'yes' if same else 'NO: ' + json.dumps(out['top1'])} |",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
