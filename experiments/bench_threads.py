"""Benchmark: threads per trial on this machine: one trial at N threads, or N one-thread trials at once.

Ray runs ``os.cpu_count() / --cpus-per-trial`` trials at once, each training with ``--cpus-per-trial``
torch threads. On a machine with N cores (default: all of them) this script measures, for each
architecture, the training throughput (clips/s, full AdamW steps at proxy scale, channels_last_3d
and channels_first as the proxy's ``auto`` layout would choose: the faster of the two) of

* **one** process training at N threads (``--cpus-per-trial N``: trials one after another), and
* **N** processes side by side, one thread each (``--cpus-per-trial 1``), their clips/s summed,

and prints the ratio. Both configurations run in this one script, one after the other per
architecture, with the fp32 matmul rate measured before and after (the machine's noise band).

Architectures: a run's ``archs/*.yaml`` (``--archs-from RUN_DIR``: its accepted steps) or names /
documents (``--archs``). Run::

    .venv/bin/python experiments/bench_threads.py --archs-from experiments/expand_inherit/default-v3 \
        --out experiments/results/threads_per_trial.md
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from bench_train import LAYOUTS, _Trainer, matmul_peak  # noqa: E402


def _throughput(doc: dict, size_scale: float, batch: int, steps: int) -> float:
    """Clips/s of the faster layout, in this process at its current thread count (median step)."""
    import torch  # noqa: F401  (threads were set by the caller)

    from nas.dsl.arch import Arch
    from nas.proxy import Proxy

    arch = Arch.from_dict(doc)
    crop = Proxy(size_scale=size_scale).train_crop(arch.clip.crop)
    best = 0.0
    for layout in LAYOUTS:
        trainer = _Trainer(arch, crop, batch, layout)
        trainer.step()
        trainer.step()  # warm-up: allocator, kernel selection
        median = statistics.median(trainer.step() for _ in range(steps))
        best = max(best, batch / median)
    return best


def _mmacs_per_conv(proxy, arch) -> float:
    """Mean forward multiply-adds x 1e-6 per conv call of one training step (the work a kernel call
    shares among threads)."""
    cost = arch.cost(size=proxy.train_crop(arch.clip.crop))
    return proxy.batch_size * cost.macs / max(1, cost.profile["convs"]) / 1e6


def _child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    doc = json.loads(Path(args.child).read_text())
    print(json.dumps({"clips_per_s": _throughput(doc, args.size_scale, args.batch, args.steps)}))


def _run_children(doc_path: Path, count: int, threads: int, args: argparse.Namespace) -> float:
    """Start ``count`` processes at ``threads`` threads each on the same architecture; summed clips/s."""
    cmd = [sys.executable, __file__, "--child", str(doc_path), "--threads", str(threads),
           "--size-scale", str(args.size_scale), "--batch", str(args.batch), "--steps", str(args.steps)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(count)]
    total = 0.0
    for p in procs:
        out, _ = p.communicate()
        if p.returncode:
            raise RuntimeError(f"benchmark child failed with exit status {p.returncode}")
        total += json.loads(out.strip().splitlines()[-1])["clips_per_s"]
    return total


def _archs(args: argparse.Namespace) -> list[dict]:
    import yaml

    from nas import load_arch

    if args.archs_from:
        run = Path(args.archs_from)
        with open(run / "trajectory.csv") as f:
            rows = [r for r in csv.DictReader(f) if r["chosen"] == "1" and r["arch_file"]]
        return [yaml.safe_load((run / r["arch_file"]).read_text()) for r in rows]
    return [load_arch(name).to_dict() for name in args.archs.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archs", default="x3d-xs,x3d-s", help="comma-separated names or documents")
    parser.add_argument("--archs-from", metavar="RUN_DIR", help="an expand run: its accepted architectures")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="N (default: this machine's CPUs)")
    parser.add_argument("--size-scale", type=float, default=0.25, help="crop fraction (default: expand's 0.25)")
    parser.add_argument("--batch", type=int, default=8, help="clips per step (default: expand's 8)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per layout (median)")
    parser.add_argument("--out", help="append the markdown table to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    from nas.cost import GFLOPS_NOTE
    from nas.dsl.arch import Arch
    from nas.proxy import Proxy

    proxy = Proxy(size_scale=args.size_scale, batch_size=args.batch)  # the step sizes auto judges by

    docs = _archs(args)
    peak_before = matmul_peak()
    rows = []
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_threads_{os.getpid()}.json"
    try:
        for doc in docs:
            arch = Arch.from_dict(doc)
            tmp.write_text(json.dumps(doc))
            one = _run_children(tmp, 1, args.cores, args)
            many = _run_children(tmp, args.cores, 1, args)
            rows.append((arch, one, many))
            print(f"{arch.name:28s} {arch.cost().gflops:7.3f} GFLOPs  step {proxy.step_gmacs(arch):.3f} GMAC  "
                  f"{_mmacs_per_conv(proxy, arch):.2f} MMAC/conv  1 x {args.cores} threads {one:7.1f} clips/s  "
                  f"{args.cores} x 1 thread {many:7.1f} clips/s  ratio {one / many:.2f}", flush=True)
    finally:
        tmp.unlink(missing_ok=True)
    peak_after = matmul_peak()
    ratios = [one / many for _, one, many in rows]
    lines = [
        f"Machine: {args.cores} cores, fp32 2048² matmul {peak_before:.0f} GMAC/s before, {peak_after:.0f} after "
        f"({time.strftime('%Y-%m-%d')}). Proxy scale {args.size_scale} of the crop, batch {args.batch}, "
        f"median of {args.steps} AdamW steps in the faster layout. {GFLOPS_NOTE}",
        "",
        f"| arch | GFLOPs (full size) | clip | step GMAC | MMAC per conv | 1 trial x {args.cores} threads (clips/s) | "
        f"{args.cores} trials x 1 thread (clips/s, summed) | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arch, one, many in rows:
        clip = arch.clip
        lines.append(f"| {arch.name} | {arch.cost().gflops:.3f} | {clip.frames}x{clip.frame_stride}, "
                     f"{proxy.train_crop(clip.crop)}² | {proxy.step_gmacs(arch):.3f} | "
                     f"{_mmacs_per_conv(proxy, arch):.2f} | {one:.1f} | {many:.1f} | {one / many:.2f} |")
    lines += ["", f"Ratio (one trial at {args.cores} threads / {args.cores} one-thread trials): median "
              f"{statistics.median(ratios):.2f}, range {min(ratios):.2f}-{max(ratios):.2f}."]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
