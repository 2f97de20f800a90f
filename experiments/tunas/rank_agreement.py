"""Rank agreement between the trained supernet and stand-alone proxy training (issue 8).

Loads a finished search's checkpoint (``runs/<name>/search-<target>/checkpoint.pt``), draws
``--archs`` distinct architectures from its final policy, measures each one's top-1 *in the
supernet* (shared weights, batch-statistics BN) on ``--eval-clips`` held-out clips, and trains each
from scratch with the proxy (``nas.train.evaluate``, the same budget ``xnas search`` retrains with
by default). Reports Kendall's tau-b between the two accuracy lists.

    .venv/bin/python experiments/tunas/rank_agreement.py runs/default/search-0.18 --archs 12 \
        --out experiments/tunas/results/rank_agreement.json
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from pathlib import Path

import torch

import nas
from nas.commands.search import DEFAULT_PROXY
from nas.families.movinet import resolve
from nas.tunas.controller import Controller
from nas.tunas.search import SearchConfig, _Data
from nas.tunas.supernet import Path as NetPath, Supernet


def kendall_tau_b(a: list[float], b: list[float]) -> float:
    """Kendall's tau-b (ties in either list handled)."""
    concordant = discordant = ties_a = ties_b = 0
    for i, j in itertools.combinations(range(len(a)), 2):
        da, db = a[i] - a[j], b[i] - b[j]
        if da == 0 and db == 0:
            continue
        if da == 0:
            ties_a += 1
        elif db == 0:
            ties_b += 1
        elif (da > 0) == (db > 0):
            concordant += 1
        else:
            discordant += 1
    denom = ((concordant + discordant + ties_a) * (concordant + discordant + ties_b)) ** 0.5
    return (concordant - discordant) / denom if denom else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("search_dir")
    ap.add_argument("--space", default="movinet")
    ap.add_argument("--archs", type=int, default=12)
    ap.add_argument("--eval-clips", type=int, default=128)
    ap.add_argument("--proxy-steps", type=int, default=DEFAULT_PROXY.steps)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out")
    args = ap.parse_args()
    space = nas.load_space(args.space)
    state = torch.load(Path(args.search_dir) / "checkpoint.pt", weights_only=False)
    raw = dict(state["config"])
    cfg = SearchConfig(**raw)
    data = _Data("synthetic", space, cfg.fixed, cfg)
    supernet = Supernet(space, classes=data.num_classes)
    supernet.load_state_dict(state["supernet"])
    supernet.eval()  # no dropout; BN keeps using batch statistics
    ctrl = Controller(space, cfg.target_gflops, cfg.steps, fixed=cfg.fixed, seed=cfg.seed)
    ctrl.load_state_dict(state["controller"])
    g = torch.Generator().manual_seed(args.seed)
    archs: dict[str, nas.dsl.Arch] = {}
    for _ in range(50 * args.archs):
        arch = ctrl.policy.freeze(ctrl.policy.sample_indices(g))
        archs.setdefault(arch.hash, arch)
        if len(archs) == args.archs:
            break
    proxy = dataclasses.replace(DEFAULT_PROXY, steps=args.proxy_steps)
    rows = []
    for arch in archs.values():
        net = dataclasses.replace(resolve(arch.doc), classes=data.num_classes)
        correct = 0
        with torch.no_grad():
            for start in range(0, args.eval_clips, 32):
                x, y = data.batch("held", 10_000 + start // 32, 32)
                correct += int((supernet(x, NetPath(net)).argmax(-1) == y).sum())
        sup = 100.0 * correct / (32 * ((args.eval_clips + 31) // 32))
        t0 = time.perf_counter()
        res = nas.train.evaluate(arch, "synthetic", proxy, seed=args.seed, progress=False)
        row = {"hash": arch.hash, "gflops": arch.cost().gflops, "supernet_top1": sup, "standalone_top1": res.top1,
               "status": res.status, "train_s": time.perf_counter() - t0}
        rows.append(row)
        print(json.dumps(row), flush=True)
    ok = [r for r in rows if r["status"] == "ok"]
    tau = kendall_tau_b([r["supernet_top1"] for r in ok], [r["standalone_top1"] for r in ok])
    tau_cost = kendall_tau_b([r["gflops"] for r in ok], [r["standalone_top1"] for r in ok])
    summary = {"kendall_tau_supernet_vs_standalone": tau, "kendall_tau_gflops_vs_standalone": tau_cost,
               "archs": len(ok), "search_dir": str(args.search_dir), "proxy": proxy.to_dict(),
               "eval_clips": args.eval_clips, "rows": rows}
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
