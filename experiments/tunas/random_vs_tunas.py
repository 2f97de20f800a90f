"""TuNAS vs ``xnas sample`` at the same cost target and comparable compute (issue 8).

Protocol (each search gets about the same wall time on the same idle machine, then the architecture
each one *chooses* is trained from scratch with one common proxy that learns the task):

1. ``xnas search --space movinet`` (TuNAS; the default run, target 0.18 GFLOPs at 8x5x112) chooses
   its argmax.
2. ``xnas sample --space movinet --clip 8x5x112 --strategy random|tpe --target-gflops 0.18 --trials N``
   with N sized so the run's wall time matches the TuNAS search's; the sampler's choice is the trial
   with the best absolute reward ``top1 - 7 |GFLOPs/G - 1|`` (what it optimises).
3. This script trains every choice with ``Proxy(steps=--proxy-steps)`` (same seed, data and budget)
   and reports top-1, GFLOPs and whether each lies within +-5 % of the target.

    .venv/bin/python experiments/tunas/random_vs_tunas.py --tunas runs/default \
        --sample runs/random runs/tpe --out experiments/tunas/results/random_vs_tunas.json

``--draws`` also reports how rare in-band architectures are under uniform sampling (torch-free).
"""
from __future__ import annotations

import argparse
import calendar
import csv
import dataclasses
import json
import math
import random
import time
from pathlib import Path

import nas
import nas.train
from nas.dsl import Arch
from nas.integrations.optuna_study import abs_reward
from nas.proxy import Proxy
from nas.drivers.tunas.search import default_fixed


def _rows(run: Path) -> list[dict]:
    return list(csv.DictReader(open(run / "results.csv")))


def _run_wall_s(run: Path) -> float:
    """Seconds between the first and the last timestamped line of ``run.log``."""
    stamps = []
    for line in open(run / "run.log"):
        try:
            stamps.append(calendar.timegm(time.strptime(line[:20], "%Y-%m-%dT%H:%M:%SZ")))
        except ValueError:
            continue
    return stamps[-1] - stamps[0] if len(stamps) > 1 else math.nan


def _sample_choice(run: Path, target: float) -> dict:
    rows = _rows(run)
    ok = [r for r in rows if r["status"] == "ok" and json.loads(r["tags"] or "{}").get("role") != "baseline"]
    best = max(ok, key=lambda r: abs_reward(float(r["top1"]), float(r["gflops"]), target)) if ok else None
    gflops = [float(r["gflops"]) for r in rows if r["gflops"]]
    return {"run": str(run), "strategy": json.loads((run / "config.json").read_text())["config"].get("strategy"),
            "trials": len(rows), "trained": len(ok), "wall_s": _run_wall_s(run),
            "in_band_trials": sum(abs(g / target - 1) <= 0.05 for g in gflops),
            "chosen": None if best is None else {"hash": best["hash"], "gflops": float(best["gflops"]),
                                                 "search_top1": float(best["top1"]),
                                                 "arch_path": str(run / best["arch_path"])}}


def _tunas_choice(run: Path) -> dict:
    (search_dir,) = sorted(run.glob("search-*"))
    summary = json.loads((search_dir / "summary.json").read_text())
    arch = Arch.load(search_dir / "argmax.yaml")
    return {"run": str(run), "strategy": "tunas", "wall_s": _run_wall_s(run), "search_s": summary.get("search_wall_s"),
            "chosen": {"hash": arch.hash, "gflops": arch.cost().gflops, "arch_path": str(search_dir / "argmax.yaml")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tunas", required=True, help="an xnas search run directory (one target)")
    ap.add_argument("--sample", nargs="+", default=[], help="xnas sample run directories")
    ap.add_argument("--target", type=float, default=0.18)
    ap.add_argument("--proxy-steps", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=0, help="uniform draws for the in-band fraction (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out")
    args = ap.parse_args()
    proxy = dataclasses.replace(Proxy(), steps=args.proxy_steps)
    entries = [_tunas_choice(Path(args.tunas))] + [_sample_choice(Path(r), args.target) for r in args.sample]
    trained: dict[str, dict] = {}
    for e in entries:
        c = e["chosen"]
        if c is None:
            continue
        c["in_band"] = abs(c["gflops"] / args.target - 1) <= 0.05
        c["off_target"] = c["gflops"] / args.target - 1
        if c["hash"] not in trained:
            t0 = time.perf_counter()
            res = nas.train.evaluate(Arch.load(c["arch_path"]), "synthetic", proxy, seed=args.seed, progress=False)
            trained[c["hash"]] = {"top1": res.top1, "status": res.status, "train_s": time.perf_counter() - t0}
        c["proxy_top1"] = trained[c["hash"]]["top1"]
        c["proxy_train_s"] = trained[c["hash"]]["train_s"]
        print(json.dumps({k: e[k] for k in ("strategy", "wall_s")} | {"chosen": c}), flush=True)
    summary: dict = {"target_gflops": args.target, "band": 0.05, "proxy": proxy.to_dict(), "seed": args.seed,
                     "entries": entries}
    if args.draws:
        space = nas.load_space("movinet").with_clip((8, 5, 112))
        fixed = default_fixed(space)
        rng = random.Random(args.seed)
        costs = sorted(space.freeze({**space.random(rng), **fixed}).cost().gflops for _ in range(args.draws))
        summary["uniform"] = {"draws": args.draws, "median_gflops": costs[len(costs) // 2],
                              "in_band": sum(abs(c / args.target - 1) <= 0.05 for c in costs),
                              "under_2x_target": sum(c <= 2 * args.target for c in costs)}
        print(json.dumps(summary["uniform"]), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
