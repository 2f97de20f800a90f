"""TuNAS vs random search at the same cost target (issue 8).

Random search draws architectures uniformly from the ``movinet`` space at the search clip (the
sampler ``xnas sample --strategy random`` uses: one uniform value per choice). Only candidates
within +-5 % of the target count; the script reports how rare they are (``--draws`` uniform samples,
torch-free) and proxy-trains the first ``--trials`` in-band ones with the same proxy ``xnas search``
retrains with, so their best top-1 can be set against the TuNAS argmax's from a finished run
(``--tunas-run``: reads its results.csv). Random search that trains every draw would spend
1 / (in-band fraction) trainings per in-band candidate; training only in-band draws is therefore
an upper bound for random search at equal training compute.

    .venv/bin/python experiments/tunas/random_vs_tunas.py --target 0.18 --trials 3 \
        --tunas-run runs/default --out experiments/tunas/results/random_vs_tunas.json
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import time
from pathlib import Path

import nas
import nas.train
from nas.commands.search import DEFAULT_PROXY
from nas.tunas.search import default_fixed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", type=float, default=0.18)
    ap.add_argument("--band", type=float, default=0.05)
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tunas-run")
    ap.add_argument("--out")
    args = ap.parse_args()
    space = nas.load_space("movinet")
    fixed = default_fixed(space, (8, 5, 112))
    rng = random.Random(args.seed)
    costs, in_band = [], []
    for _ in range(args.draws):
        arch = space.freeze({**space.random(rng), **fixed})
        c = arch.cost().gflops
        costs.append(c)
        if abs(c / args.target - 1) <= args.band:
            in_band.append(arch)
    frac = len(in_band) / len(costs)
    costs.sort()
    print(json.dumps({"draws": len(costs), "in_band": len(in_band), "fraction": frac,
                      "median_gflops": costs[len(costs) // 2]}), flush=True)
    rows = []
    for arch in in_band[: args.trials]:
        t0 = time.perf_counter()
        res = nas.train.evaluate(arch, "synthetic", DEFAULT_PROXY, seed=args.seed, progress=False)
        rows.append({"hash": arch.hash, "gflops": arch.cost().gflops, "top1": res.top1, "status": res.status,
                     "train_s": time.perf_counter() - t0})
        print(json.dumps(rows[-1]), flush=True)
    tunas = []
    if args.tunas_run:
        for r in csv.DictReader(open(Path(args.tunas_run) / "results.csv")):
            tags = json.loads(r["tags"]) if r["tags"] else {}
            tunas.append({"role": tags.get("role"), "name": r["name"], "gflops": float(r["gflops"]),
                          "top1": float(r["top1"]) if r["top1"] else None,
                          "in_band": abs(float(r["gflops"]) / args.target - 1) <= args.band})
    ok = [r["top1"] for r in rows if r["status"] == "ok"]
    summary = {"target_gflops": args.target, "band": args.band, "uniform_draws": len(costs),
               "uniform_in_band_fraction": frac, "uniform_median_gflops": costs[len(costs) // 2],
               "random_in_band_trained": rows, "random_best_top1": max(ok) if ok else None,
               "tunas": tunas, "proxy": DEFAULT_PROXY.to_dict()}
    print(json.dumps({k: v for k, v in summary.items() if k not in ("random_in_band_trained",)}, default=str))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
