"""Measure the properties of the ``graded`` synthetic task (issue 14) under the reference proxy.

The reference proxy is the default ``Proxy`` (1500 steps x 16 clips at 0.15 of each crop, AdamW)
on ``graded``, with 2560 validation clips (binomial standard error <= 1 point at any accuracy). What
it measures, each a property the issue asks for:

* **order-blind stays at chance**: X3D-S and its frame-wise ablation (every temporal kernel 1, so its
  logits ignore frame order: ``experiments/proxy/x3d-s-framewise.yaml``);
* **graded, not binary**: 16 architectures drawn from the ``x3d`` space, one per equal step of
  log-GFLOPs between 0.02 and 5 (full-size cost; each the first random draw that lands in its stratum,
  so the draws are random but cover the cost range instead of piling up where the space is dense):
  the spread of their top-1 and how many score above 95 %;
* **signal above noise**: 3 seeds (trial seed: model init, batch order and data) of 4 of them (the
  strata 4, 8, 12 and 16, fixed before any result), their seed-to-seed standard deviation against
  the spread;
* **every X3D axis can pay off**: X3D-XS and its six one-axis expansions at ~2x its cost
  (``nas.drivers.expand.build_candidates``, the candidates ``xnas expand`` builds), each at 3 seeds.

Trials run through the project's own run machinery (``Run`` + the Ray evaluator, 1 CPU per trial, so
2 at a time on 2 cores), in ``experiments/graded/run-v2/`` (its ``results.csv``, ``archs/`` and study are
committed, so a later session continues it): killed and rerun, no finished trial is redone. Trials
run as one batch per seed. Then ``report`` writes ``experiments/results/graded_task.md`` and ``.json``::

    .venv/bin/python experiments/graded_task.py run        # hours on 2 cores; resumable
    .venv/bin/python experiments/graded_task.py report

``run --only NAMES`` (comma-separated: order, random, seeds, axes) does those groups, ``--seeds 0,1``
those trial seeds; ``--local`` trains one trial at a time in this process (1 thread, the same result as a
Ray trial, mid-trial checkpoints in the run's ``checkpoints/``), leaving the other core free.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas import load_arch  # noqa: E402
from nas.dsl.arch import Arch  # noqa: E402
from nas.proxy import Proxy  # noqa: E402
from nas.registry import load_space  # noqa: E402

REFERENCE = Proxy()  # the default budget; its 2560 validation clips keep a top-1's SE <= 1 point
LOW, HIGH, STRATA = 0.02, 5.0, 16
SEEDED_STRATA = (3, 7, 11, 15)  # 0-based: strata 4, 8, 12, 16
SEEDS = (0, 1, 2)
# The runs of the current proxy recipe (residual branches at scale 1, precise BN). ``run`` and ``run-cuda``
# hold the old recipe's trials, reported in graded_task_zero_init.md; rows of another proxy are never read.
RUN_NAME = "run-v2"
RUN_ROOT = ROOT / "experiments" / "graded"
OUT = ROOT / "experiments" / "results"
GROUPS = ("order", "random", "seeds", "axes")


def stratified_draws(seed: int = 0) -> list[Arch]:
    """One random ``x3d`` architecture per equal log-GFLOPs stratum of [LOW, HIGH]."""
    space = load_space("x3d")
    rng = random.Random(seed)
    edges = [LOW * (HIGH / LOW) ** (i / STRATA) for i in range(STRATA + 1)]
    found: dict[int, Arch] = {}
    while len(found) < STRATA:
        arch = space.freeze(space.random(rng))
        g = arch.cost().gflops
        for i in range(STRATA):
            if edges[i] <= g < edges[i + 1] and i not in found:
                found[i] = space.freeze(space.sample_of(arch), name=f"graded-s{i + 1:02d}")
    return [found[i] for i in range(STRATA)]


def axis_pairs() -> list[tuple[str, Arch]]:
    """X3D-XS and its one-axis expansions at ~2x its cost: ``[("parent", xs), (axis, child), ...]``."""
    from nas.drivers.expand import build_candidates

    parent = load_arch("x3d-xs")
    cands, _ = build_candidates(parent, step=1, rate=2.0)
    return [("parent", parent)] + [(c.axis, c.arch) for c in cands]


def framewise() -> list[Arch]:
    return [load_arch("x3d-s"), Arch.load(ROOT / "experiments" / "proxy" / "x3d-s-framewise.yaml")]


def _open_run(name: str = RUN_NAME, device: str = "cpu"):
    from nas.runs import Run

    config = {"purpose": "graded task properties (issue 14)", "proxy": REFERENCE.to_dict(), "data": "synthetic",
              "device": device}
    return Run.open(name, driver="measure", config=config, root=RUN_ROOT)


def _train_one(arch: Arch, proxy: Proxy, seed: int, device: str, checkpoint_dir: str) -> object:
    """One reference trial in a pool worker process (1 CPU thread)."""
    import torch

    from nas.evaluator import LocalEvaluator

    torch.set_num_threads(1)
    return LocalEvaluator("synthetic", proxy, seed, device, checkpoint_dir=checkpoint_dir).evaluate([arch])[0]


class PoolEvaluator:
    """Reference trials in parallel worker processes on this machine, without Ray (the device machine
    has no Ray): each trial is :class:`~nas.evaluator.LocalEvaluator` in a worker process of ``pool``,
    reported as it finishes (under ``lock``, so evaluators of several seeds can share one pool from
    threads), so the recording run loses no finished trial when the process is killed."""

    def __init__(self, seed: int, device: str, pool, lock, checkpoint_dir: Path, proxy: Proxy = REFERENCE) -> None:
        self.seed, self.device, self.pool, self.lock, self.checkpoint_dir = seed, device, pool, lock, checkpoint_dir
        self.proxy = proxy

    @property
    def cache_key(self) -> str:
        from nas.evaluator import proxy_cache_key

        return proxy_cache_key(self.proxy, "synthetic", self.seed)

    def evaluate(self, archs, tags=None, on_result=None):
        from concurrent.futures import as_completed

        from nas.evaluator import check_tags

        check_tags(archs, tags)
        results: list = [None] * len(archs)
        futures = {self.pool.submit(_train_one, a, self.proxy, self.seed, self.device, str(self.checkpoint_dir)): i
                   for i, a in enumerate(archs)}
        for future in as_completed(futures):
            i = futures[future]
            results[i] = future.result()
            with self.lock:
                print(f"  {archs[i].name} seed {self.seed}: {results[i].top1:.1f} % ({results[i].wall_s:.0f} s)",
                      flush=True)
                if on_result is not None:
                    on_result(i, results[i])
        return results


def cmd_run(args: argparse.Namespace) -> None:
    groups = args.only.split(",") if args.only else list(GROUPS)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else list(SEEDS)
    strata = [int(s) - 1 for s in args.strata.split(",")] if args.strata else list(range(STRATA))
    run = _open_run(args.run_name, args.device)
    mode = f"{args.workers} worker processes" if args.workers else "in process" if args.local else "2 Ray trials"
    _log_matmul(run.dir, "start", mode)
    randoms = stratified_draws()
    pairs = axis_pairs()
    # one batch per seed, so Ray keeps both workers busy to the end of it (a batch is a wave); within
    # a batch the order-blind pair, then the random strata cheapest first, then the axis pairs
    jobs: list[tuple[int, list[Arch], list[dict]]] = []
    for seed in seeds:
        archs, tags = [], []
        if "order" in groups and seed == 0:
            archs += framewise()
            tags += [{"group": "order"}] * 2
        if "random" in groups and seed == 0:
            archs += [randoms[i] for i in strata]
            tags += [{"group": "random", "stratum": i + 1} for i in strata]
        if "seeds" in groups and seed != 0:
            archs += [randoms[i] for i in SEEDED_STRATA]
            tags += [{"group": "seeds", "stratum": i + 1} for i in SEEDED_STRATA]
        if "axes" in groups:
            archs += [a for _, a in pairs]
            tags += [{"group": "axes", "axis": n} for n, _ in pairs]
        if archs:
            jobs.append((seed, archs, tags))
    try:
        if args.workers:
            _run_pooled(run, jobs, args)
        for seed, archs, tags in ([] if args.workers else jobs):
            if args.local:
                import torch

                from nas.evaluator import LocalEvaluator

                torch.set_num_threads(1)
                inner = LocalEvaluator("synthetic", REFERENCE, seed, args.device, checkpoint_dir=run.dir / "checkpoints")
            else:
                from nas.integrations.ray_tune import RayEvaluator

                inner = RayEvaluator("synthetic", REFERENCE, seed, cpus_per_trial=1, log_dir=run.dir / "ray",
                                     progress=False)
                run.on_close(inner.shutdown)
            t0 = time.perf_counter()
            results = run.evaluator(inner).evaluate(archs, [{**t, "seed": seed} for t in tags])
            done = ", ".join(f"{a.name} {r.top1:.1f}" for a, r in zip(archs, results))
            print(f"seed {seed}: {done} ({time.perf_counter() - t0:.0f} s)", flush=True)
            if not args.local:
                inner.shutdown()
    finally:
        _log_matmul(run.dir, "end", mode)
        run.close()


def _log_matmul(run_dir: Path, phase: str, mode: str) -> None:
    """Append the machine's fp32 matmul rate to the run's ``matmul.jsonl`` (the report quotes it)."""
    sys.path.insert(0, str(ROOT / "experiments"))
    from bench_train import matmul_peak

    row = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "phase": phase, "mode": mode,
           "gmacs": round(matmul_peak(), 1)}
    with open(run_dir / "matmul.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def _matmul_range(run_name: str) -> str:
    path = RUN_ROOT / run_name / "matmul.jsonl"
    rates = [json.loads(line)["gmacs"] for line in path.read_text().splitlines()] if path.is_file() else []
    return f"{min(rates):.0f}–{max(rates):.0f} GMAC/s" if rates else "not recorded"


def _run_pooled(run, jobs, args) -> None:
    """Every seed's batch at once on one process pool (a thread per seed feeds it), so the pool stays
    full to the end instead of waiting for each seed's slowest trial."""
    import multiprocessing
    import threading
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    lock = threading.Lock()
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool, \
            ThreadPoolExecutor(len(jobs) or 1) as threads:
        def one(job):
            seed, archs, tags = job
            inner = PoolEvaluator(seed, args.device, pool, lock, run.dir / "checkpoints")
            return run.evaluator(inner).evaluate(archs, [{**t, "seed": seed} for t in tags])

        for (seed, archs, _), results in zip(jobs, threads.map(one, jobs)):
            print(f"seed {seed}: " + ", ".join(f"{a.name} {r.top1:.1f}" for a, r in zip(archs, results)), flush=True)


RUNS = {"cpu": RUN_NAME, "cuda": "run-cuda-v2"}  # device -> run under experiments/graded/


def _results(run_name: str = RUN_NAME) -> dict[tuple[str, int], dict]:
    """(arch hash, seed) -> result row, read without opening the run (a ``run`` may be writing it)."""
    import csv

    path = RUN_ROOT / run_name / "results.csv"
    out = {}
    rows = list(csv.DictReader(open(path, newline=""))) if path.is_file() else []
    for row in rows:
        if row["status"] == "ok" and row["proxy_hash"] == REFERENCE.hash:
            out[(row["hash"], int(row["seed"]))] = row
    return out


def _top1(res: dict, arch: Arch, seed: int = 0) -> float | None:
    row = res.get((arch.hash, seed))
    return float(row["top1"]) if row else None


def _pooled_sd(groups: list[list[float]]) -> tuple[float | None, int]:
    """Pooled within-group standard deviation (each group: one architecture's top-1 over seeds) and its
    degrees of freedom."""
    ss = sum(sum((v - statistics.mean(g)) ** 2 for v in g) for g in groups if len(g) >= 2)
    df = sum(len(g) - 1 for g in groups if len(g) >= 2)
    return (math.sqrt(ss / df), df) if df else (None, 0)


def _seed_device(cpu: dict, cuda: dict) -> tuple[str, dict]:
    """The device whose trials hold more seeds >= 1 (seed statistics never mix devices)."""
    n_cpu = sum(1 for _, seed in cpu if seed > 0)
    n_cuda = sum(1 for _, seed in cuda if seed > 0)
    return ("CPU", cpu) if n_cpu >= n_cuda else ("CUDA", cuda)


def cmd_report(args: argparse.Namespace) -> None:
    cpu, cuda = _results(RUNS["cpu"]), _results(RUNS["cuda"])
    n_val = REFERENCE.val_clips
    planned = 2 + STRATA + 2 * len(SEEDED_STRATA) + 3 * len(axis_pairs())
    seed_dev, by_seed = _seed_device(cpu, cuda)
    lines = ["# The `graded` synthetic task under the reference proxy (issue 14)", "",
             "Reproduce: `.venv/bin/python experiments/graded_task.py run --workers 2` (CPU, two 1-thread trials at "
             f"a time), or on a GPU machine `... run --workers 12 --device cuda --run-name {RUNS['cuda']}`; then "
             f"`... report`. Trials are in `experiments/graded/{RUNS['cpu']}/` (CPU) and "
             f"`experiments/graded/{RUNS['cuda']}/` (CUDA), resumable. The same measurement under the old proxy "
             "recipe (zero-initialised residual branches, no precise BN) is kept in "
             "[graded_task_zero_init.md](graded_task_zero_init.md).", "",
             f"Reference proxy: the default `Proxy` on `graded` with {n_val} validation clips: "
             f"{REFERENCE.steps} steps x {REFERENCE.batch_size} clips at {REFERENCE.size_scale} of each crop, "
             f"{REFERENCE.optimizer} lr {REFERENCE.lr}, {REFERENCE.train_clips} training clips, residual branches "
             f"{'zero-initialised' if REFERENCE.zero_init_residual else 'at scale 1'}, precise BN on "
             f"{REFERENCE.precise_bn_batches} batches. Chance is 16.7 % (6 classes). Binomial standard error of one "
             f"top-1 on {n_val} clips: sqrt(p(1-p)/{n_val}), at most {100 * math.sqrt(0.25 / n_val):.2f} points.", "",
             f"- **CPU** ({len(cpu)} trials, fp32, 1 thread each, two at a time on a 2-core machine; fp32 2048² "
             f"matmul {_matmul_range(RUNS['cpu'])} at the start and end of each `run`).",
             f"- **CUDA** ({len(cuda)} trials, bf16 autocast).",
             f"Seed statistics use one device ({seed_dev}, the one with more seeds). GFLOPs: one multiply-add of a "
             "conv or linear layer = 1 FLOP, full-size cost.",
             f"Status: {len(cpu) + len(cuda)} trials on file ({planned} planned for one device).", ""]
    summary: dict = {"reference_proxy": REFERENCE.to_dict(), "val_clips": n_val,
                     "trials": {"cpu": len(cpu), "cuda": len(cuda)}, "seed_device": seed_dev}

    def first(arch: Arch, seed: int = 0) -> float | None:
        a = _top1(cpu, arch, seed)
        return a if a is not None else _top1(cuda, arch, seed)

    # 1. order-blind
    s, fw = framewise()
    lines += ["## 1. A frame-order-blind network stays at chance", "", "| architecture | top-1 % | ± SE |",
              "|---|---|---|"]
    for arch in (s, fw):
        t = first(arch)
        lines.append(f"| {arch.name} | {_fmt(t)} | {_se(t, n_val)} |")
    t_fw = first(fw)
    verdict = "not measured" if t_fw is None else (
        "within 3 SE of chance: met" if t_fw < 100 / 6 + 3 * 100 * math.sqrt(5 / 36 / n_val)
        else "more than 3 SE above chance: **not met**")
    lines += ["", f"The frame-wise X3D-S: {_fmt(t_fw)} % against a chance of 16.7 % ({verdict}).", ""]
    summary["order"] = {a.name: first(a) for a in (s, fw)}

    # 2. graded
    randoms = stratified_draws()
    rows = []
    lines += ["## 2. Graded, not binary: 16 `x3d` architectures, one per log-GFLOPs stratum of [0.02, 5]", "",
              "Seed 0; the CPU value where it exists, else the CUDA one.", "",
              "| stratum | frames x stride, crop | GFLOPs | top-1 % | ± SE |", "|---|---|---|---|---|"]
    for i, arch in enumerate(randoms):
        t = first(arch)
        rows.append(t)
        c = arch.clip
        lines.append(f"| {i + 1} | {c.frames}x{c.frame_stride}, {c.crop}² | {arch.cost().gflops:.3f} | {_fmt(t)} | "
                     f"{_se(t, n_val)} |")
    done = [t for t in rows if t is not None]
    spread = max(done) - min(done) if len(done) >= 2 else None
    above = sum(t > 95 for t in done)
    frames_of = [a.clip.frames for a in randoms]
    few = [t for t, f in zip(rows, frames_of) if t is not None and f <= 2]
    many = [t for t, f in zip(rows, frames_of) if t is not None and f >= 3]
    lines += ["", f"Measured {len(done)} of {STRATA}. Spread (max - min top-1): **{_fmt(spread)} points** (goal >= 30: "
              f"{_verdict(spread is not None and spread >= 30)}); above 95 %: **{above} of {len(done)}** (goal <= a "
              f"quarter: {_verdict(above <= len(done) / 4)}).",
              f"The draws see {min(frames_of)} to {max(frames_of)} frames ({sum(f <= 2 for f in frames_of)} of 16 see "
              "1 or 2: the `x3d` space's frame factor is log-uniform, and within 5 GFLOPs few frames leave room for "
              f"the other axes). Top-1 of the draws with 1-2 frames: {_fmt(min(few) if few else None)}–"
              f"{_fmt(max(few) if few else None)} %; with 3 or more: {_fmt(min(many) if many else None)}–"
              f"{_fmt(max(many) if many else None)} %.", ""]
    summary["graded"] = {"top1": rows, "spread": spread, "above_95": above, "measured": len(done),
                         "frames": frames_of}

    # 3. seed noise (within one device)
    pairs = axis_pairs()
    lines += ["## 3. Signal above noise: seed-to-seed standard deviation", "",
              f"{seed_dev} trials (seeds 0, 1, 2: model init, batch order and data). Strata 4, 8, 12, 16 were fixed "
              "for this before any result; the X3D-XS pairs below add seven architectures with three seeds each.", "",
              "| architecture | seed 0 | seed 1 | seed 2 | SD |", "|---|---|---|---|---|"]
    groups = []
    for name, arch in [(f"stratum {i + 1}", randoms[i]) for i in SEEDED_STRATA] + [(n, a) for n, a in pairs]:
        vals = [_top1(by_seed, arch, seed) for seed in SEEDS]
        got = [v for v in vals if v is not None]
        if len(got) >= 2:
            groups.append(got)
        sd = statistics.stdev(got) if len(got) >= 2 else None
        lines.append(f"| {name} | " + " | ".join(_fmt(v) for v in vals) + f" | {_fmt(sd)} |")
    pooled, df = _pooled_sd(groups)
    ratio = pooled / spread if pooled is not None and spread else None
    lines += ["", f"Pooled seed-to-seed SD over every architecture with >= 2 seeds: **{_fmt(pooled, 2)} points** ({df} "
              f"degrees of freedom). SD / spread = **{_fmt(ratio, 2)}** (goal <= 0.25: "
              f"{_verdict(ratio is not None and ratio <= 0.25)}). The validation split's own standard error is under "
              "1 point, so what remains is the noise of one training.", ""]
    summary["seeds"] = {"pooled_sd": pooled, "df": df, "sd_over_spread": ratio}

    # 4. axes
    lines += ["## 4. Every X3D axis can pay off: X3D-XS and its one-axis expansions (~2x cost)", "",
              f"{seed_dev} seeds 0 / 1 / 2.", "",
              "| axis | clip | GFLOPs | top-1 % by seed | gain over parent | its SE | gain / SE | verdict |",
              "|---|---|---|---|---|---|---|---|"]
    parent_vals = [_top1(by_seed, pairs[0][1], seed) for seed in SEEDS]
    summary["axes"] = {}
    for name, arch in pairs:
        vals = [_top1(by_seed, arch, seed) for seed in SEEDS]
        gain = se_gain = None
        paired = [(v, p) for v, p in zip(vals, parent_vals) if v is not None and p is not None]
        if name != "parent" and paired:
            diffs = [v - p for v, p in paired]
            gain = statistics.mean(diffs)
            if len(diffs) >= 2:
                se_gain = statistics.stdev(diffs) / math.sqrt(len(diffs))
        z = gain / se_gain if gain is not None and se_gain else None
        verdict = "" if name == "parent" else "not measured" if gain is None else (
            "one seed: undecided" if se_gain is None else "pays off" if z > 2
            else "below the parent (loses by > 2 SE)" if z < -2 else "tie (inside the noise)")
        c = arch.clip
        lines.append(f"| {name} | {c.frames}x{c.frame_stride}, {c.crop}² | {arch.cost().gflops:.3f} | "
                     + " / ".join(_fmt(v) for v in vals) + f" | {_fmt(gain)} | {_fmt(se_gain)} | {_fmt(z)} | {verdict} |")
        summary["axes"][name] = {"top1": vals, "gain": gain, "gain_se": se_gain, "verdict": verdict}
    lines += ["", "Gain: mean over seeds of (child - parent) with the same seed; its SE from the spread of those "
              "differences (2 degrees of freedom with 3 seeds, so only a large gain clears 2 SE). An axis pays off "
              "when the gain exceeds 2 SE.", ""]

    # device agreement
    both = sorted(set(cpu) & set(cuda))
    if both:
        diffs = [float(cuda[k]["top1"]) - float(cpu[k]["top1"]) for k in both]
        lines += ["## CPU (fp32) against CUDA (bf16): the same trial on both devices", "",
                  f"{len(both)} (architecture, seed) trials ran on both. CUDA - CPU top-1: mean {statistics.mean(diffs):+.1f}, "
                  f"mean absolute {statistics.mean(abs(d) for d in diffs):.1f}, largest {max(diffs, key=abs):+.1f} points.",
                  "", "| architecture | CPU | CUDA |", "|---|---|---|"]
        for k in both:
            lines.append(f"| {cpu[k]['name']} | {float(cpu[k]['top1']):.1f} | {float(cuda[k]['top1']):.1f} |")
        lines.append("")
        summary["device_agreement"] = {"n": len(both), "mean_diff": statistics.mean(diffs),
                                       "mean_abs_diff": statistics.mean(abs(d) for d in diffs)}
    (OUT / "graded_task.md").write_text("\n".join(lines) + "\n")
    (OUT / "graded_task.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n".join(lines))


def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _fmt(v: float | None, digits: int = 1) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _se(t: float | None, n: int) -> str:
    return "-" if t is None else f"{100 * math.sqrt(t / 100 * (1 - t / 100) / n):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="phase", required=True)
    p = sub.add_parser("run")
    p.add_argument("--only", help="comma-separated groups: " + ", ".join(GROUPS))
    p.add_argument("--seeds", help="comma-separated trial seeds (default: " + ",".join(map(str, SEEDS)) + ")")
    p.add_argument("--strata", help="comma-separated strata (1-16) of the random group (default: all)")
    p.add_argument("--local", action="store_true", help="one trial at a time in this process, 1 thread")
    p.add_argument("--workers", type=int, default=0,
                   help="N trials at a time in worker processes, without Ray (the GPU machine's path)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (CUDA trains in bf16 autocast)")
    p.add_argument("--run-name", default=RUN_NAME, help=f"the run under experiments/graded/ (default {RUN_NAME})")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("report")
    p.set_defaults(func=cmd_report)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
