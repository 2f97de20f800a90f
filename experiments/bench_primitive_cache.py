"""Benchmark: training-step time against the size of oneDNN's primitive cache, measured side by side.

On CPU every conv of a training step runs through oneDNN *primitives* (the forward, the two backward
passes and the weight reorders around them, about 1400 for one MoViNet-A0 step in
``channels_last_3d``). oneDNN keeps the last ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` of them (1024 by
default) and creates the others anew. When one step needs more distinct primitives than the cache
holds, the LRU cache misses on every one of them on every step: the step pays the creation of all its
primitives each time, as if every step were the first.

This script runs the same work in fresh processes that differ only in that variable (the values of
``--capacities``; ``default`` leaves it unset, so xnas's own capacity applies), alternating the capacities for ``--rounds`` rounds so
both see the same machine noise, and reports per capacity:

* ``standalone_<arch>_<layout>_s``: a steady training step (forward, cross-entropy, backward, AdamW
  step; the mean of ``--steps`` after one warm-up step) of a shipped architecture at a proxy clip;
* ``supernet_new_s``: the TuNAS supernet's step (``supernet_backward``, as the search runs it) on
  ``--paths`` uniformly drawn paths, each new (first calls included, as in ``bench_step_ratio --loop``);
* ``supernet_new_late_s``: the second half of those steps alone (a small cache fills within a few new
  paths; a full cache pays for every miss with a scan of all its entries, oneDNN's LRU eviction
  being linear in the capacity);
* ``supernet_again_s``: the last quarter of those paths once more (a narrowed policy revisits its paths).

It prints one JSON line per process and the ratios (capacity / the first capacity) of the medians. Run::

    .venv/bin/python experiments/bench_primitive_cache.py --out experiments/results/primitive_cache.json

GFLOPs are not reported; the matmul rate (2048² fp32, GMAC/s) is measured before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (shipped architecture, frames, pixels, batch): the TuNAS search's clip (8 x 14², 16 clips) and
# the expansion's X3D proxy (a quarter of X3D-S's 13 x 160² crop, 8 clips)
STANDALONE = (("movinet-a0", 8, 14, 16), ("x3d-s", 13, 40, 8))


def training_step_s(model, x, y, steps: int) -> float:
    """Mean seconds of ``steps`` AdamW training steps after one warm-up step (the first step creates
    its primitives whatever the capacity)."""
    import torch
    import torch.nn.functional as F

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.mean(times)


def _work(paths: int, steps: int) -> dict:
    """Everything timed in one process (its cache capacity is fixed for the process's life)."""
    import torch

    import nas
    from nas.drivers.tunas.search import SearchConfig, default_fixed, supernet_backward
    from nas.drivers.tunas.supernet import Path as NetPath, Supernet
    from nas.models import build_model

    sys.path.insert(0, str(HERE))
    from bench_train import matmul_peak

    out: dict = {"matmul_gmacs_before": round(matmul_peak(), 1)}
    torch.manual_seed(0)
    for name, frames, pixels, batch in STANDALONE:
        arch = nas.load_arch(name).with_classes(6)
        for layout, fmt in (("channels_last_3d", torch.channels_last_3d), ("channels_first", torch.contiguous_format)):
            model = build_model(arch).train().to(memory_format=fmt)
            x = torch.randn(batch, 3, frames, pixels, pixels).contiguous(memory_format=fmt)
            out[f"standalone_{name}_{layout}_s"] = training_step_s(model, x, torch.randint(0, 6, (batch,)), steps)
    space = nas.load_space("movinet")
    at_clip = space.with_clip((8, 5, 112))
    cfg = SearchConfig(target_gflops=0.18)
    archs = [at_clip.freeze({**at_clip.random(i), **default_fixed(at_clip)}).with_classes(6) for i in range(paths)]
    supernet = Supernet(space, classes=6).train().to(memory_format=torch.channels_last_3d)
    x = torch.randn(16, 3, 8, 14, 14).contiguous(memory_format=torch.channels_last_3d)
    y = torch.randint(0, 6, (16,))
    times = []
    for arch in archs + archs[-len(archs) // 4:]:
        t0 = time.perf_counter()
        supernet.zero_grad(set_to_none=True)
        supernet_backward(supernet, NetPath.of(arch), x, y, cfg)
        times.append(time.perf_counter() - t0)
    half = len(archs) // 2
    out["supernet_new_s"] = statistics.mean(times[:len(archs)])
    out["supernet_new_late_s"] = statistics.mean(times[half:len(archs)])
    out["supernet_again_s"] = statistics.mean(times[len(archs):])
    out["matmul_gmacs_after"] = round(matmul_peak(), 1)
    import resource
    out["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--capacities", default="1024,4096,16384", help="comma-separated; the first is the baseline")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--paths", type=int, default=60)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        import torch
        torch.set_num_threads(args.threads)
        print(json.dumps(_work(args.paths, args.steps)))
        return
    capacities = args.capacities.split(",")
    runs: dict[str, list[dict]] = {c: [] for c in capacities}
    for r in range(args.rounds):
        for cap in capacities:
            env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
            if cap != "default":
                env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = cap
            cmd = [sys.executable, __file__, "--child", "--paths", str(args.paths), "--steps", str(args.steps),
                   "--threads", str(args.threads)]
            row = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            row.update(capacity=cap, round=r)
            runs[cap].append(row)
            print(json.dumps(row), flush=True)
    base = capacities[0]
    keys = [k for k in runs[base][0] if k.endswith("_s")]
    medians = {c: {k: statistics.median(row[k] for row in rows) for k in keys} for c, rows in runs.items()}
    ratios = {c: {k: medians[c][k] / medians[base][k] for k in keys} for c in capacities[1:]}
    summary = {"baseline": base, "medians_s": medians, "time_ratio_vs_baseline": ratios, "threads": args.threads,
               "paths": args.paths, "steps": args.steps, "runs": runs,
               "note": "each process one capacity; capacities alternate; ratio < 1: faster than the baseline"}
    print(json.dumps({"time_ratio_vs_baseline": ratios}, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
