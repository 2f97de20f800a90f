"""Measure proxy trials of expansion candidates: wall time, CPU time and top-1 (one thread per trial,
as one Ray trial with --cpus-per-trial 1 gets). CPU time (``cpu_s``) is the better estimate of an idle
machine's wall time when the machine is shared. Usage:

    python experiments/expand_default/time_trials.py --steps 60 --batch-size 8 --size-scale 0.25 \
        --train-clips 256 --val-clips 128 --task shape_direction --archs x2d,x3d-xs,step:6:frames

``--archs`` takes reference names or ``step:N:AXIS`` (the candidate on AXIS at step N of the
formula-driven expansion path from x2d to 4 GFLOPs -- a stand-in for "a candidate of step N").
Prints one JSON line per trial.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from nas import load_arch
from nas.drivers.expand import expand
from nas.formulas import x3d_factors
from nas.evaluator import FormulaEvaluator
from nas.proxy import Proxy
from nas.train import evaluate


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--size-scale", type=float, default=0.25)
    p.add_argument("--train-clips", type=int, default=256)
    p.add_argument("--val-clips", type=int, default=128)
    p.add_argument("--task", default="mixed")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--layout", default="auto")
    p.add_argument("--optimizer", default="adamw")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--archs", default="x2d")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    res = expand(load_arch("x2d"), FormulaEvaluator(x3d_factors, "x3d-factors"), target_gflops=4.0, log=lambda s: None)
    proxy = Proxy(steps=args.steps, batch_size=args.batch_size, size_scale=args.size_scale, lr=args.lr,
                  train_clips=args.train_clips, val_clips=args.val_clips, task=args.task, layout=args.layout,
                  optimizer=args.optimizer, weight_decay=args.weight_decay, label_smoothing=args.label_smoothing,
                  warmup_steps=min(20, args.steps // 5), checkpoint_every=0)
    for ref in args.archs.split(","):
        if ref.startswith("step:"):
            _, n, axis = ref.split(":")
            arch = [c for c in res.rows() if c.step == int(n) and c.axis == axis and c.role == "candidate"][0].arch
        else:
            arch = load_arch(ref)
        t, c = time.perf_counter(), time.process_time()
        r = evaluate(arch, "synthetic", proxy, seed=args.seed, device="cpu", progress=False)
        clip = arch.clip
        print(json.dumps({"arch": ref, "gflops": round(arch.cost().gflops, 4),
                          "clip": f"{clip.frames}x{clip.frame_stride}@{clip.crop}", "trained_at": r.size,
                          "wall_s": round(time.perf_counter() - t, 1), "cpu_s": round(time.process_time() - c, 1),
                          "top1": round(r.top1, 2), "loss": round(r.loss, 3), "layout": r.layout,
                          "proxy": {k: v for k, v in proxy.to_dict().items()
                                    if k in ("steps", "batch_size", "size_scale", "task", "lr", "train_clips", "val_clips",
                                             "optimizer", "weight_decay", "label_smoothing")}}),
              flush=True)


if __name__ == "__main__":
    main()
