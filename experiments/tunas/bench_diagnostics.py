"""What the search's per-step diagnostics cost, before and after 2026-12-07's change (issue 20).

Every ``log_every`` steps (5 by default) the search logs the policy's expected cost (Monte-Carlo over
``expected_samples`` draws, 32) and the argmax path's held-out top-1 (``heldout_top1``, one batch of 64
clips). In the default run those steps took 0.4 s more than the others (0.71 against 0.30 s late in the
search, matmul 47-62 GMAC/s), about 80 s of a 723 s search. Side by side, on one fresh supernet and
controller at the default search's settings, this times:

* the expected cost as it was (one ``sample_indices`` call, ~130 softmax + multinomial calls, per draw,
  then freezing every draw) against now (``Policy.sample_many``: one call per dimension for all draws,
  and the cost cached by the draw's indices), under the uniform policy and under a narrowed one (each
  dimension's first value at probability 0.97, about the entropy late in a search);
* the held-out top-1 forward as the search runs it (autograd recording; ``heldout_top1``) against the
  same forward under ``torch.no_grad``, tried as a saving: it was not one (0.83x, so it was left as it was).

    .venv/bin/python experiments/tunas/bench_diagnostics.py --reps 20 --out experiments/tunas/results/diagnostics.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

import nas
from nas.drivers.tunas.controller import Controller
from nas.drivers.tunas.search import SearchConfig, SupernetData, default_fixed, heldout_top1
from nas.drivers.tunas.supernet import Path as NetPath, Supernet

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_train import matmul_peak  # noqa: E402


def expected_cost_before(ctrl: Controller, n: int, seed: int) -> float:
    """The expected cost as computed before: one draw at a time, every draw frozen (its cost cached by hash)."""
    g = torch.Generator().manual_seed(seed)
    return sum(ctrl.cost(ctrl.policy.freeze(ctrl.policy.sample_indices(g))) for _ in range(n)) / n


def _median_s(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--out")
    args = ap.parse_args()
    rate_before = matmul_peak()
    space = nas.load_space("movinet").with_clip((8, 10, 112))  # the default search's space, clip and config
    fixed = default_fixed(space)
    cfg = SearchConfig(target_gflops=0.18, fixed=fixed, layout="channels_last_3d")
    ctrl = Controller(space, cfg.target, cfg.steps, fixed=fixed, seed=0)
    result: dict = {"expected_samples": cfg.expected_samples, "reps": args.reps}
    for policy in ("uniform", "narrowed"):
        if policy == "narrowed":
            with torch.no_grad():
                for lg in ctrl.policy.logits:
                    lg.zero_()
                    if len(lg) > 1:  # p(first value) = 0.97
                        lg[0] = float(torch.log(torch.tensor(0.97 * (len(lg) - 1) / 0.03)))
        # seeds change per call, as the search's (seed = step): the uniform policy meets new draws each time
        seeds = iter(range(10**6))
        before = _median_s(lambda: expected_cost_before(ctrl, cfg.expected_samples, next(seeds)), args.reps)
        now = _median_s(lambda: ctrl.expected_cost(cfg.expected_samples, seed=next(seeds)), args.reps)
        result[f"expected_cost_{policy}"] = {"before_s": before, "now_s": now, "speedup": before / now}
        print(json.dumps({policy: result[f"expected_cost_{policy}"]}), flush=True)
    torch.manual_seed(0)
    loaded = SupernetData("synthetic", space, fixed, cfg)
    supernet = Supernet(space, classes=loaded.num_classes).to(memory_format=torch.channels_last_3d).train()
    path = NetPath.of(ctrl.argmax_arch(), classes=loaded.num_classes)
    held = [loaded.batch("held", 0, cfg.batch_size * cfg.val_multiplier)]
    heldout_top1(supernet, path, held)  # warm-up: first call with these shapes

    def with_grad() -> None:
        heldout_top1(supernet, path, held)

    def without_grad() -> None:
        with torch.no_grad():
            heldout_top1(supernet, path, held)

    t_grad, t_none = [], []
    for _ in range(args.reps):  # alternating, so a drifting machine speed hits both alike
        t_grad.append(_median_s(with_grad, 1))
        t_none.append(_median_s(without_grad, 1))
    result["heldout_top1"] = {"with_grad_s": statistics.median(t_grad), "no_grad_s": statistics.median(t_none),
                              "speedup": statistics.median(t_grad) / statistics.median(t_none),
                              "argmax_gflops": ctrl.argmax_arch().cost().gflops}
    print(json.dumps({"heldout_top1": result["heldout_top1"]}), flush=True)
    result.update(threads=torch.get_num_threads(), matmul_gmacs_before=round(rate_before, 1),
                  matmul_gmacs_after=round(matmul_peak(), 1))
    print(json.dumps({k: result[k] for k in ("matmul_gmacs_before", "matmul_gmacs_after", "threads")}))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
