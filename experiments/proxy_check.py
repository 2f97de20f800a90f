"""Does the default proxy measure temporal modelling? (issue 3's acceptance check)

Trains, under the **default** :class:`nas.proxy.Proxy` on the synthetic default task, (1) a temporal
model and (2) the same backbone with every temporal kernel replaced by a frame-wise one, each exactly as
``xnas train ARCH`` does (one :func:`nas.train.evaluate` call, seed 0), and records validation top-1,
wall time (data rendering + training + evaluation) and throughput next to the task's chance level and
frame-order-blind ceiling. The check passes when (1) reaches >= 90 % within 10 minutes and (2) stays
near the ceiling.

    .venv/bin/python experiments/proxy_check.py [--archs x3d-s,experiments/proxy/x3d-s-framewise.yaml] \
        [--out experiments/results/proxy_check.md]

Run it on an idle machine: the wall times are the claim.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from nas.cost import GFLOPS_NOTE
from nas.data.synthetic import ORDERLESS_CEILING, num_classes
from nas.proxy import Proxy
from nas.registry import load_arch
from nas.train import evaluate

DEFAULT_ARCHS = "x3d-s,experiments/proxy/x3d-s-framewise.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archs", default=DEFAULT_ARCHS, help="comma-separated names or document paths")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="experiments/results/proxy_check.md")
    args = parser.parse_args()
    proxy = Proxy()
    rows = []
    load_before = os.getloadavg()[0]
    for ref in args.archs.split(","):
        arch = load_arch(ref)
        t = time.perf_counter()
        result = evaluate(arch, "synthetic", proxy, seed=args.seed, progress=False)
        wall = time.perf_counter() - t
        rows.append((ref, arch, result, wall))
        print(json.dumps({"arch": ref, "top1": result.top1, "wall_s": round(wall, 1), "status": result.status,
                          "clips_per_s": round(result.train_clips_per_s, 1)}), flush=True)
    chance = 100 / num_classes(proxy.task)
    ceiling = 100 * ORDERLESS_CEILING[proxy.task]
    lines = [
        "# Proxy check: temporal model vs its frame-wise ablation under the default proxy (issue 3)",
        "",
        f"`experiments/proxy_check.py`, seed {args.seed}, {torch.get_num_threads()} threads, "
        f"{platform.machine()}, torch {torch.__version__}; load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after.",
        f"Default proxy: {proxy.steps} steps x batch {proxy.batch_size}, {proxy.optimizer} lr {proxy.lr} "
        f"(warm-up {proxy.warmup_steps}, cosine), weight decay {proxy.weight_decay}, label smoothing "
        f"{proxy.label_smoothing}, size-scale {proxy.size_scale}, synthetic `{proxy.task}` "
        f"({proxy.train_clips} train / {proxy.val_clips} val clips; chance {chance:.1f} %, "
        f"frame-order-blind ceiling {ceiling:.1f} %).",
        "Wall time = rendering the data + training + evaluating, as `xnas train` spends it.",
        f"{GFLOPS_NOTE} (of the full-size document; the proxy trains at size-scale x crop).",
        "",
        "| arch | clip trained | GFLOPs | params | layout | train clips/s | wall (s) | val top-1 | val loss |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for ref, arch, r, wall in rows:
        lines.append(f"| `{ref}` | {r.frames}x{r.size}² | {r.gflops:.3f} | {r.params:,} | {r.layout} | "
                     f"{r.train_clips_per_s:.1f} | {wall:.0f} | **{r.top1:.1f} %** | {r.loss:.3f} |")
    lines.append("")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
